"""`nasname login`: one step stores address, certificate and token (0600) for every client command;
TLS names are configurable so stations on other machines can verify the server."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server import client_config
from server.app import create_server
from server.auth import Role
from server.cli import main
from server.config import ServerConfig
from server.tls import certificate_names, ensure_self_signed, server_credentials
from tests.unit.server.conftest import Running
from tests.unit.server.fakes import FakeEngine, FakeTokens


def test_login_stores_settings_0600_and_every_command_uses_them(
        fresh: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NASNAME_TOKEN", raising=False)
    monkeypatch.delenv("NASNAME_ADDRESS", raising=False)
    assert main(["login", "--address", fresh.address, "--plaintext",
                 "--token", fresh.secrets[Role.INVESTIGATOR]]) == 0
    assert "LOGGED IN" in capsys.readouterr().out
    path = client_config.config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = client_config.load()
    assert stored.address == fresh.address and stored.token == fresh.secrets[Role.INVESTIGATOR]
    # no address, token or --plaintext given: the stored ones
    assert main(["stats"]) == 0
    assert "record(s) in the gallery" in capsys.readouterr().out


def test_login_refuses_a_bad_token_and_stores_nothing(fresh: Running,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["login", "--address", fresh.address, "--plaintext", "--token", "nsk_wrong"]) == 1
    err = capsys.readouterr().err
    assert "UNAUTHENTICATED" in err and "nothing stored" in err
    assert not client_config.config_path().exists()


def test_options_and_environment_win_over_stored_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from server.cli_client import resolve

    client_config.save(client_config.ClientSettings(address="stored:1", token="nsk_stored"))
    monkeypatch.setenv("NASNAME_TOKEN", "nsk_env")
    monkeypatch.delenv("NASNAME_ADDRESS", raising=False)
    args = argparse.Namespace(address=None, token=None, ca=None, plaintext=True, tls_server_name=None)
    assert (resolve(args).address, args.token) == ("stored:1", "nsk_env")
    args = argparse.Namespace(address="opt:2", token="nsk_opt", ca=None, plaintext=True, tls_server_name=None)
    assert (resolve(args).address, args.token) == ("opt:2", "nsk_opt")


def test_certificate_names_include_tls_hosts_and_a_new_name_makes_a_new_certificate(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path, "0.0.0.0")
    names = certificate_names(cert.read_bytes())
    assert {"localhost", "127.0.0.1"} <= names and "0.0.0.0" not in names
    first = cert.read_bytes()
    ensure_self_signed(tmp_path, "0.0.0.0")
    assert cert.read_bytes() == first  # nothing new asked: kept
    ensure_self_signed(tmp_path, "0.0.0.0", ("nasname.camp-a", "10.1.2.3"))
    assert {"nasname.camp-a", "10.1.2.3"} <= certificate_names(cert.read_bytes())


def test_tls_login_with_ca_and_server_name_then_plain_commands(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        fresh: Running) -> None:
    monkeypatch.delenv("NASNAME_TOKEN", raising=False)
    monkeypatch.delenv("NASNAME_ADDRESS", raising=False)
    monkeypatch.setenv("NASNAME_DATA_DIR", str(tmp_path / "elsewhere"))  # no local auto certificate
    config = ServerConfig(address="127.0.0.1:0", tls_hosts=("nasname.camp-a",))
    credentials = server_credentials(config, tmp_path / "data")
    tokens = FakeTokens()
    secret = tokens.create_token("inv", Role.INVESTIGATOR.value)[1]
    server, port = create_server("127.0.0.1:0", FakeEngine(), tokens=tokens, config=config,  # type: ignore[arg-type]
                                 credentials=credentials)
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        assert main(["stats", "--address", address, "--token", secret]) == 1  # untrusted certificate
        assert "--ca" in capsys.readouterr().err
        assert main(["stats", "--address", address, "--token", secret, "--plaintext"]) == 1
        assert "leave out --plaintext" in capsys.readouterr().err
        ca = tmp_path / "data" / "tls" / "server.crt"
        # TLS to `fresh`, a plaintext server: the message says to add --plaintext
        assert main(["health", "--address", fresh.address, "--ca", str(ca)]) == 1
        assert "add --plaintext" in capsys.readouterr().err
        assert main(["login", "--address", address, "--ca", str(ca), "--token", secret,
                     "--tls-server-name", "nasname.camp-a"]) == 0
        capsys.readouterr()
        assert main(["stats"]) == 0
        assert "record(s) in the gallery" in capsys.readouterr().out
    finally:
        server.stop(0)
