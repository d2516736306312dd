"""The data directory's owner (engine.datadir): a key is created only for a brand-new directory, a
gallery holding data refuses a missing or wrong key (file or environment), and the directory is
private (0700, files 0600)."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from engine.crypto import KEY_ENV, KeyRing
from engine.datadir import DataDir
from engine.errors import ConfigurationError, NotFound, Unavailable
from engine.types import FaceTemplate, Modality, ModelRef

MODEL = ModelRef("face_test", "1")


def _face(seed: int) -> FaceTemplate:
    v = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return FaceTemplate(v / np.linalg.norm(v), MODEL)


def _filled(root: Path) -> Path:
    """A data directory holding one record, with its key in the default place; returns the key file."""
    with DataDir.open(root, env={}) as d:
        d.store.insert({Modality.FACE: _face(1)}, ref_id="R1")
    return root / "nasname.key"


def test_a_new_directory_gets_a_key_and_is_private(tmp_path: Path) -> None:
    root = tmp_path / "g"
    with DataDir.open(root, env={}) as d:
        assert d.key_source == f"key file {root / 'nasname.key'}"
        assert d.store.get_meta("key_check") == d.keyring.key_id
        assert d.jobs_dir("dedup") == root / "jobs" / "dedup"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for name in ("nasname.db", "nasname.key", "LOCK"):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o600, name


def test_missing_key_file_is_refused_and_never_replaced(tmp_path: Path) -> None:
    root = tmp_path / "g"
    key = _filled(root)
    key.rename(tmp_path / "moved.key")
    with pytest.raises(ConfigurationError, match="missing") as err:
        DataDir.open(root, env={})
    assert err.value.reason == "KEY_MISSING" and "Put the original key file back" in str(err.value)
    assert not key.exists()  # no new key was made
    (tmp_path / "moved.key").rename(key)
    with DataDir.open(root, env={}) as d:  # the original key opens it again
        face = d.store.get("R1").templates[Modality.FACE]
        assert isinstance(face, FaceTemplate) and np.array_equal(face.vector, _face(1).vector)


def test_wrong_key_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "g"
    _filled(root)
    other = tmp_path / "other.key"
    KeyRing.from_file(other)  # creates another valid key
    with pytest.raises(ConfigurationError, match="is not the key of the gallery") as err:
        DataDir.open(root, key_file=other, env={})
    assert err.value.reason == "KEY_MISMATCH"


def test_wrong_environment_key_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "g"
    _filled(root)
    wrong = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(ConfigurationError, match=f"\\${KEY_ENV}") as err:
        DataDir.open(root, env={KEY_ENV: wrong})
    assert err.value.reason == "KEY_MISMATCH"
    right = (root / "nasname.key").read_text().strip()
    with DataDir.open(root, env={KEY_ENV: right}) as d:
        assert d.key_source == f"${KEY_ENV}"


def test_a_gallery_from_before_key_checks_is_checked_by_its_templates(tmp_path: Path) -> None:
    root = tmp_path / "g"
    _filled(root)
    with sqlite3.connect(root / "nasname.db") as conn:
        conn.execute("DELETE FROM meta WHERE key = 'key_check'")
    with pytest.raises(ConfigurationError) as err:
        DataDir.open(root, keyring=KeyRing.generate())
    assert err.value.reason == "KEY_MISMATCH"
    with DataDir.open(root, env={}) as d:  # the right key: the check value is recorded again
        assert d.store.get_meta("key_check") == d.keyring.key_id


def test_shared_open_needs_a_gallery_and_exclusive_open_is_locked(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        DataDir.open(tmp_path / "none", exclusive=False, env={})
    assert not (tmp_path / "none").exists()
    root = tmp_path / "g"
    _filled(root)
    with DataDir.open(root, env={}):
        with pytest.raises(Unavailable):
            DataDir.open(root, env={})
        with DataDir.open(root, exclusive=False, env={}) as shared:  # readers while it is held
            assert shared.store.count() == 1


def test_an_older_loose_directory_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "g"
    _filled(root)
    os.chmod(root, 0o755)
    os.chmod(root / "nasname.db", 0o644)
    with DataDir.open(root, env={}):
        pass
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "nasname.db").stat().st_mode) == 0o600
