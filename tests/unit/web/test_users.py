"""Console accounts: the store's users table (argon2 hashes) and `nasname user add|list|disable|reset`."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import AlreadyExists, InvalidInput, NotFound
from server.app import bootstrap_admin_user
from server.cli import main
from tests.web_support import PASSWORD, open_engine


def test_store_accounts(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "data")
    try:
        users = engine.gallery.store
        info = users.create_user("amira", "adjudicator", PASSWORD, actor="test")
        with pytest.raises(AlreadyExists):
            users.create_user("amira", "admin", PASSWORD, actor="test")
        with pytest.raises(InvalidInput, match="12 characters"):
            users.create_user("bob", "admin", "short", actor="test")
        with pytest.raises(InvalidInput):
            users.create_user("Bad Name!", "admin", PASSWORD, actor="test")
        assert users.login("amira", "wrong password here") is None
        assert users.login("nobody", PASSWORD) is None
        ok = users.login("amira", PASSWORD)
        assert ok is not None and ok.user_id == info.user_id and ok.last_login is not None
        users.disable_user("amira", actor="test")
        assert users.login("amira", PASSWORD) is None
        users.reset_password("amira", "another long password", actor="test")
        assert users.login("amira", PASSWORD) is None
        assert users.login("amira", "another long password") is not None
        with pytest.raises(NotFound):
            users.disable_user("nobody", actor="test")
        actions = [e["action"] for e in users.audit_entries()]
        assert actions == ["create_user", "login", "disable_user", "reset_password", "login"]
        assert all("amira" not in json.dumps(e) for e in users.audit_entries())  # ids, never names
    finally:
        engine.close()
    # only an argon2id hash is stored, never the password
    [(digest,)] = sqlite3.connect(tmp_path / "data" / "nasname.db").execute("SELECT hash FROM users")
    assert digest.startswith("$argon2id$") and "another" not in digest


def test_bootstrap_admin_user(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "data")
    try:
        out = io.StringIO()
        password = bootstrap_admin_user(engine.gallery.store, out)
        assert password and password in out.getvalue()
        assert engine.gallery.store.login("admin", password) is not None
        assert bootstrap_admin_user(engine.gallery.store, io.StringIO()) is None
    finally:
        engine.close()


def test_user_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("NASNAME_MODALITIES", "face")
    monkeypatch.setenv("NASNAME_DATA_DIR", str(data))
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "add", "amira", "--role", "adjudicator", "--data-dir", str(data)]) == 0
    assert "created amira (adjudicator)" in capsys.readouterr().out
    assert main(["user", "list", "--json", "--data-dir", str(data)]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["username"], row["role"], row["disabled"]) == ("amira", "adjudicator", None)
    assert main(["user", "disable", "amira", "--data-dir", str(data)]) == 0
    assert main(["user", "list", "--data-dir", str(data)]) == 0
    assert "disabled" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    assert main(["user", "reset", "amira", "--data-dir", str(data)]) == 1
    assert "WEAK_PASSWORD" in capsys.readouterr().err
    engine = Engine.open(EngineConfig.load(None))  # holds the data directory, as a running server does
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert main(["user", "reset", "amira", "--data-dir", str(data)]) == 1
        assert "stop `nasname serve`" in capsys.readouterr().err
    finally:
        engine.close()
