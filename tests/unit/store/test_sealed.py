"""Sealed files (chunked AES-GCM under a key derived from the data key): what was written reads back;
anything else (edited, reordered, cut, appended, renamed, other key) is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.crypto import KeyRing
from engine.errors import IntegrityError, NotFound
from engine.store.sealed import open_sealed, write_sealed

CHUNK = 64
HEADER = 4 + 8 + 16 + 4
BLOCK = 12 + CHUNK + 16


def _write(path: Path, ring: KeyRing, data: bytes, identity: str = "snapshot|face|7") -> None:
    write_sealed(path, ring, identity, lambda f: f.write(data), chunk_size=CHUNK)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 7])
def test_round_trip(tmp_path: Path, size: int) -> None:
    ring = KeyRing.generate()
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    _write(tmp_path / "f", ring, data)
    assert open_sealed(tmp_path / "f", ring, "snapshot|face|7").read() == data
    assert data[:16] not in (tmp_path / "f").read_bytes()[HEADER:] or size < 16


def _refused(path: Path, ring: KeyRing, identity: str = "snapshot|face|7") -> str:
    with pytest.raises(IntegrityError) as err:
        open_sealed(path, ring, identity)
    assert err.value.reason == "BAD_SNAPSHOT"
    return str(err.value)


def test_tampering_is_refused(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    data = bytes(range(256)) * 2  # 8 chunks of 64
    path = tmp_path / "f"
    _write(path, ring, data)
    good = path.read_bytes()
    assert len(good) == HEADER + 8 * BLOCK

    def variant(blob: bytes) -> Path:
        path.write_bytes(blob)
        return path

    body = bytearray(good)
    body[HEADER + 12 + 3] ^= 1
    assert "chunk 0" in _refused(variant(bytes(body)), ring)  # one flipped bit
    swapped = bytearray(good)  # two "rows" (8-byte spans) of one chunk swapped in the ciphertext
    a, b = HEADER + 12, HEADER + 12 + 8
    swapped[a:a + 8], swapped[b:b + 8] = good[b:b + 8], good[a:a + 8]
    _refused(variant(bytes(swapped)), ring)
    c1, c2 = HEADER + BLOCK, HEADER + 2 * BLOCK  # whole chunks reordered
    _refused(variant(good[:c1] + good[c2:c2 + BLOCK] + good[c1:c2] + good[c2 + BLOCK:]), ring)
    _refused(variant(good[:HEADER + 3 * BLOCK]), ring)  # cut at a chunk boundary
    _refused(variant(good[:-5]), ring)  # cut inside the last chunk
    _refused(variant(good + good[-BLOCK:]), ring)  # a chunk appended
    _refused(variant(good[:HEADER]), ring)  # no chunk at all
    _refused(variant(good), ring, "snapshot|face|8")  # another snapshot's file under this name
    _refused(variant(good), ring, "snapshot|iris_left|7")
    _refused(variant(good), KeyRing.generate())  # another data key
    other = tmp_path / "g"  # a chunk moved in from another file of the same key and identity
    _write(other, ring, data)
    moved = other.read_bytes()[HEADER + BLOCK:HEADER + 2 * BLOCK]
    mixed = good[:HEADER + BLOCK] + moved + good[HEADER + 2 * BLOCK:]
    _refused(variant(mixed), ring)
    assert open_sealed(variant(good), ring, "snapshot|face|7").read() == data


def test_an_old_key_in_the_ring_still_opens_and_a_missing_file_is_not_found(tmp_path: Path) -> None:
    old = KeyRing.generate()
    _write(tmp_path / "f", old, b"x" * 100)
    rotated = KeyRing(os.urandom(32), [old._keys[bytes.fromhex(old.key_id)]])
    assert open_sealed(tmp_path / "f", rotated, "snapshot|face|7").read() == b"x" * 100
    with pytest.raises(NotFound):
        open_sealed(tmp_path / "missing", old, "snapshot|face|7")


def test_derived_keys_differ_by_purpose_and_key() -> None:
    ring = KeyRing.generate()
    kid, snap = ring.derive("snapshot")
    assert kid == ring.key_id and len(snap) == 32
    assert ring.derive("snapshot") == (kid, snap)
    assert ring.derive("audit")[1] != snap
    assert KeyRing.generate().derive("snapshot")[1] != snap
    with pytest.raises(IntegrityError):
        ring.derive("snapshot", "00" * 8)
