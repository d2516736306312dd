"""KeyRing: round trip, tamper / swap / wrong key detection, key file creation and permissions."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from engine.crypto import KEY_ENV, KeyRing, associated_data
from engine.errors import ConfigurationError, IntegrityError


def test_round_trip_and_fresh_nonce() -> None:
    ring = KeyRing.generate()
    aad = associated_data("template", 7, "face")
    a, b = ring.encrypt(b"secret template", aad), ring.encrypt(b"secret template", aad)
    assert a != b  # random nonce per encryption
    assert b"secret template" not in a
    assert ring.decrypt(a, aad) == ring.decrypt(b, aad) == b"secret template"
    assert KeyRing.blob_key_id(a) == ring.key_id


def test_tampered_blob_fails() -> None:
    ring = KeyRing.generate()
    aad = associated_data("template", 1, "face")
    blob = bytearray(ring.encrypt(b"x" * 64, aad))
    for pos in (3, 12, len(blob) // 2, len(blob) - 1):  # key id, nonce, body, tag
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            ring.decrypt(bytes(bad), aad)
    with pytest.raises(IntegrityError):
        ring.decrypt(bytes(blob[:20]), aad)


def test_blob_swapped_between_rows_fails() -> None:
    ring = KeyRing.generate()
    blob = ring.encrypt(b"person one", associated_data("template", 1, "face"))
    for aad in (associated_data("template", 2, "face"), associated_data("template", 1, "iris_left"),
                associated_data("image", 1, "face")):
        with pytest.raises(IntegrityError):
            ring.decrypt(blob, aad)


def test_wrong_key_fails_and_old_keys_still_decrypt() -> None:
    old, new = KeyRing.generate(), KeyRing.generate()
    aad = associated_data("template", 1, "face")
    blob = old.encrypt(b"payload", aad)
    with pytest.raises(IntegrityError) as info:
        new.decrypt(blob, aad)
    assert info.value.reason == "UNKNOWN_KEY"
    raw_old, raw_new = os.urandom(32), os.urandom(32)
    ring = KeyRing(raw_new, old=[raw_old])
    assert ring.decrypt(KeyRing(raw_old).encrypt(b"p", aad), aad) == b"p"
    assert KeyRing.blob_key_id(ring.encrypt(b"p", aad)) == KeyRing(raw_new).key_id


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "nasname.key"
    ring = KeyRing.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing.from_file(path).key_id == ring.key_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "nasname.key"
    KeyRing.from_file(path)
    path.chmod(mode)
    with pytest.raises(ConfigurationError) as info:
        KeyRing.from_file(path)
    assert info.value.reason == "KEY_FILE_PERMISSIONS"


def test_bad_key_material_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.key"
    path.write_text(base64.b64encode(b"k" * 16).decode())
    path.chmod(0o600)
    with pytest.raises(ConfigurationError):
        KeyRing.from_file(path)
    with pytest.raises(ConfigurationError):
        KeyRing.from_file(tmp_path / "missing.key", create=False)
    with pytest.raises(ConfigurationError):
        KeyRing.load(None, env={KEY_ENV: "not base64!"})
    with pytest.raises(ConfigurationError):
        KeyRing.load(None, env={})


def test_environment_key_wins_over_file(tmp_path: Path) -> None:
    raw = os.urandom(32)
    ring = KeyRing.load(tmp_path / "nasname.key", env={KEY_ENV: base64.b64encode(raw).decode()})
    assert ring.key_id == KeyRing(raw).key_id
    assert not (tmp_path / "nasname.key").exists()
