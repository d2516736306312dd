"""Console sessions, the failed-login limiter (fake clocks) and the [web] settings."""

from __future__ import annotations

import pytest

from engine.errors import ConfigurationError
from server.auth import Role
from server.web.access import PAGE_RPC, allowed, may_view_case_images
from server.web.config import WebConfig
from server.web.sessions import LoginLimiter, SessionStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_sessions_idle_out_and_login_replaces_the_id() -> None:
    clock = Clock()
    store = SessionStore(60.0, clock)
    anon = store.anonymous()
    s = store.login(anon, "usr_1")
    assert s.sid != anon.sid and store.get(anon.sid) is None and store.get(s.sid) is s
    clock.t += 59
    assert store.get(s.sid) is s  # used: the idle clock restarts
    clock.t += 61
    assert store.get(s.sid) is None
    other = store.login(None, "usr_2")
    store.end_user("usr_2")
    assert store.get(other.sid) is None


def test_login_limiter_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, 300.0, clock)
    for _ in range(3):
        assert limiter.blocked("user:a", "addr:x") == 0
        limiter.failed("user:a", "addr:x")
    assert limiter.blocked("user:a") == pytest.approx(300.0)
    assert limiter.blocked("user:b", "addr:x") > 0  # the address is over too
    clock.t += 301
    assert limiter.blocked("user:a", "addr:x") == 0


def test_web_config(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = WebConfig.load({"web": {"address": "0.0.0.0:9443", "two_person_same": True}},
                         environ={"NASNAME_WEB_IDLE_TIMEOUT_S": "120"})
    assert (cfg.host, cfg.port, cfg.two_person_same, cfg.idle_timeout_s) == ("0.0.0.0", 9443, True, 120.0)
    assert WebConfig.load({}, environ={}, address="127.0.0.1:0").port == 0
    with pytest.raises(ConfigurationError, match="unknown web setting"):
        WebConfig.load({"web": {"colour": "blue"}}, environ={})
    with pytest.raises(ConfigurationError):
        WebConfig(address="nonsense")


def test_pages_follow_the_rpc_table() -> None:
    assert set(PAGE_RPC) >= {"queue", "case", "decide", "record", "dedup", "health"}
    assert not any(allowed(Role.STATION, page) for page in PAGE_RPC)
    assert allowed(Role.ADJUDICATOR, "decide") and not allowed(Role.INVESTIGATOR, "decide")
    assert may_view_case_images(Role.ADJUDICATOR) and may_view_case_images(Role.INVESTIGATOR)
    assert not may_view_case_images(Role.STATION)
    assert allowed(Role.ADMIN, "metrics") and not allowed(Role.INVESTIGATOR, "metrics")
