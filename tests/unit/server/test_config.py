from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigurationError
from server.config import ServerConfig, is_loopback, split_address


def test_defaults_bind_loopback_with_tls() -> None:
    c = ServerConfig()
    assert c.host == "127.0.0.1"
    assert c.plaintext is False  # auto_tls: a self-signed certificate, not plaintext
    assert c.effective_workers >= 4
    assert c.effective_max_concurrent_rpcs == 16 * c.effective_workers


def test_plaintext_only_on_loopback() -> None:
    assert ServerConfig(address="127.0.0.1:1", allow_plaintext=True).plaintext
    assert ServerConfig(address="[::1]:1", allow_plaintext=True).plaintext
    assert ServerConfig(address="localhost:1", allow_plaintext=True).plaintext
    with pytest.raises(ConfigurationError, match="loopback"):
        _ = ServerConfig(address="0.0.0.0:1", allow_plaintext=True).plaintext
    with pytest.raises(ConfigurationError, match="loopback"):
        _ = ServerConfig(address="10.1.2.3:1", allow_plaintext=True).plaintext


def test_configured_certificate_wins_over_plaintext(tmp_path: Path) -> None:
    c = ServerConfig(address="127.0.0.1:1", allow_plaintext=True, tls_cert=tmp_path / "c",
                     tls_key=tmp_path / "k")
    assert c.plaintext is False


def test_no_tls_no_plaintext_refused() -> None:
    with pytest.raises(ConfigurationError, match="auto_tls"):
        _ = ServerConfig(auto_tls=False).plaintext


def test_toml_then_environment_then_overrides() -> None:
    toml = {"server": {"address": "127.0.0.1:6000", "workers": 3, "rate_limit": 5}}
    env = {"NASNAME_SERVER_WORKERS": "7", "NASNAME_SERVER_ALLOW_PLAINTEXT": "yes"}
    c = ServerConfig.load(toml, env, rate_limit=None, reflection=False)
    assert (c.address, c.workers, c.rate_limit, c.allow_plaintext, c.reflection) == (
        "127.0.0.1:6000", 7, 5.0, True, False)
    assert c.effective_rate_burst == 10


@pytest.mark.parametrize("values", [
    {"address": "nohost"}, {"address": "h:notaport"}, {"address": "h:70000"}, {"workers": -1},
    {"tls_cert": "/a"}, {"max_message_bytes": 10}, {"log_format": "xml"}, {"unknown": 1},
    {"allow_plaintext": "maybe"}, {"workers": True},
])
def test_bad_values_are_configuration_errors(values: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        ServerConfig.load({"server": values}, {})


def test_address_helpers() -> None:
    assert split_address("[::1]:50051") == ("::1", 50051)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert not is_loopback("example.org")
