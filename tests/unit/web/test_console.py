"""The console's pages, sessions and checks through Starlette's test client (HTTPS scheme, so the
Secure cookie is sent) over a real engine and store. The browser test covers the same flow in Chromium."""

from __future__ import annotations

import re
import time

from starlette.testclient import TestClient

from engine.engine import Engine
from server.auth import Role
from server.web.app import SECURITY_HEADERS, create_app
from server.web.config import WebConfig
from tests.web_support import PASSWORD


def client(engine: Engine, **config: object) -> TestClient:
    return TestClient(create_app(engine, WebConfig(**config)), base_url="https://testserver")  # type: ignore[arg-type]


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(c: TestClient, username: str, password: str = PASSWORD) -> None:
    page = c.get("/login")
    r = c.post("/login", data={"csrf": csrf(page.text), "username": username, "password": password,
                               "next": ""}, follow_redirects=False)
    assert r.status_code == 303, r.text


def test_logged_out_is_redirected_and_headers_are_strict(engine: Engine) -> None:
    c = client(engine)
    r = c.get("/case/R-2", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fcase%2FR-2"
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value
    page = c.get("/login")
    assert "no-store" in page.headers["cache-control"]
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie


def test_login_decide_same_and_audit(engine: Engine) -> None:
    c = client(engine)
    login(c, "adjudicator")
    queue = c.get("/queue?sort=score")
    assert queue.status_code == 200
    assert queue.text.index("R-4") < queue.text.index("R-2")  # fused 21 before 14.5
    assert "R-4" not in c.get("/queue?partition=camp-a").text
    page = c.get("/case/R-2")
    assert page.status_code == 200
    assert '/image/R-2/face' in page.text and '/image/R-1/iris_left/unwrapped' in page.text
    assert re.search(r"Threshold for a suspected duplicate</dt><dd>-?\d+\.\d\d</dd>", page.text)
    assert "Fused score (sum of LLRs)</dt><dd>14.50</dd>" in page.text
    img = c.get("/image/R-1/face")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.headers["cache-control"] == "no-store"
    strip = c.get("/image/R-1/iris_left/unwrapped")
    assert strip.status_code == 200 and strip.content[:4] == b"\x89PNG"
    token = csrf(page.text)
    # no reason: refused with a message, nothing recorded
    r = c.post("/case/R-2/decide", data={"csrf": token, "decision": "same", "mate": "R-1", "reason": ""})
    assert "Give a reason" in r.text and engine.get("R-2").status.value == "pending"
    # first POST only shows the confirmation
    r = c.post("/case/R-2/decide", data={"csrf": token, "decision": "same", "mate": "R-1",
                                         "reason": "same face and irises"})
    assert "Confirm your decision" in r.text and engine.get("R-2").status.value == "pending"
    r = c.post("/case/R-2/decide", data={"csrf": token, "decision": "same", "mate": "R-1",
                                         "reason": "same face and irises", "confirm": "yes"})
    assert r.status_code == 200 and "is the same person as R-1" in r.text
    assert engine.get("R-2").status.value == "deleted"
    user_id = {u.username: u.user_id for u in engine.gallery.store.list_users()}["adjudicator"]
    rows = engine.gallery.store.audit_of("R-2")
    assert any(e["action"] == "decide" and e["actor"] == user_id for e in rows)
    views = [e for e in engine.gallery.store.audit_of("R-1") if e["action"] == "view_image"]
    seen = {(e["actor"], e["details"]["image"]) for e in views}
    assert seen == {(user_id, "sample"), (user_id, "unwrapped")}
    assert "adjudicated" in r.text  # the case page's history shows the decision
    assert "/image/R-2/face" not in r.text and "no face held (none captured, or erased)" in r.text


def test_csrf_and_roles(engine: Engine) -> None:
    c = client(engine)
    login(c, "adjudicator")
    r = c.post("/case/R-2/decide", data={"decision": "distinct", "reason": "different people",
                                         "confirm": "yes"})
    assert r.status_code == 403 and engine.get("R-2").status.value == "pending"
    s = client(engine)
    login(s, "station")
    for url in ("/queue", "/case/R-2", "/image/R-1/face", "/record?ref=R-1"):
        assert s.get(url).status_code == 403, url
    assert s.get("/metrics").status_code == 403  # not loopback, not admin


def test_two_person_rule(engine: Engine) -> None:
    first, second = client(engine, two_person_same=True), client(engine, two_person_same=True)
    engine.gallery.store.create_user("adj2", Role.ADJUDICATOR.value, PASSWORD, actor="test")
    login(first, "adjudicator")
    login(second, "adj2")
    form = {"decision": "same", "mate": "R-1", "reason": "same person clearly", "confirm": "yes"}
    first.post("/case/R-2/decide", data={**form, "csrf": csrf(first.get("/case/R-2").text)})
    assert engine.get("R-2").status.value == "pending"
    again = first.post("/case/R-2/decide", data={**form, "csrf": csrf(first.get("/case/R-2").text)})
    assert "second adjudicator" in again.text and engine.get("R-2").status.value == "pending"
    second.post("/case/R-2/decide", data={**form, "csrf": csrf(second.get("/case/R-2").text)})
    assert engine.get("R-2").status.value == "deleted"


def test_failed_logins_are_limited_and_disabled_users_lose_sessions(engine: Engine) -> None:
    c = client(engine, login_failures=2)
    for _ in range(2):
        page = c.get("/login")
        r = c.post("/login", data={"csrf": csrf(page.text), "username": "admin", "password": "wrong"})
        assert r.status_code == 401
    page = c.get("/login")
    r = c.post("/login", data={"csrf": csrf(page.text), "username": "admin", "password": PASSWORD})
    assert r.status_code == 429 and "Too many failed logins" in r.text
    other = client(engine)
    login(other, "investigator")
    record = other.get("/record?ref=R-1")
    assert record.status_code == 200
    named = re.search(r'<dd id="named-in">(.*?)</dd>', record.text)
    assert named and "R-2</a> (open)" in named.group(1) and "R-4</a> (open)" in named.group(1)
    engine.gallery.store.disable_user("investigator", actor="test")
    assert other.get("/record?ref=R-1", follow_redirects=False).status_code == 303


def test_logout_idle_timeout_and_metrics(engine: Engine) -> None:
    c = client(engine)
    login(c, "admin")
    metrics = c.get("/metrics")
    assert metrics.status_code == 200
    assert 'nasname_gallery_templates{modality="face"} 2.0' in metrics.text
    assert "nasname_adjudication_pending 2.0" in metrics.text
    health = c.get("/health")
    assert "Open adjudication cases" in health.text
    r = c.post("/logout", data={"csrf": csrf(health.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert c.get("/queue", follow_redirects=False).status_code == 303
    short = client(engine, idle_timeout_s=1.0)
    login(short, "admin")
    time.sleep(1.2)
    assert short.get("/queue", follow_redirects=False).status_code == 303


def test_admin_manages_accounts(engine: Engine) -> None:
    admin, victim = client(engine), client(engine)
    login(admin, "admin")
    login(victim, "investigator")
    page = admin.get("/users")
    assert page.status_code == 200 and "adjudicator" in page.text
    token = csrf(page.text)
    r = admin.post("/users", data={"csrf": token, "action": "add", "username": "layla",
                                   "role": "adjudicator", "password": PASSWORD})
    assert "Created layla (adjudicator)" in r.text
    weak = admin.post("/users", data={"csrf": token, "action": "add", "username": "omar",
                                      "role": "admin", "password": "short"})
    assert weak.status_code == 400 and "12 characters" in weak.text
    assert victim.get("/record?ref=R-1").status_code == 200
    admin.post("/users", data={"csrf": token, "action": "disable", "username": "investigator"})
    assert victim.get("/record?ref=R-1", follow_redirects=False).status_code == 303  # session ended
    assert admin.post("/users", data={"csrf": token, "action": "disable", "username": "admin"}
                      ).status_code == 400
    assert client(engine).get("/users", follow_redirects=False).status_code == 303
    other = client(engine)
    login(other, "layla")
    assert other.get("/users").status_code == 403
