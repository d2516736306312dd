"""Issue 18, item 4: index snapshots hold no template in clear, and an altered snapshot is refused
(rebuilt from the store) instead of answering with the wrong reference id."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from engine.crypto import KeyRing
from engine.gallery import Gallery, default_index_factory, load_index
from engine.store import sealed
from engine.store import snapshots as snap
from engine.types import Modality
from tests.unit.gallery.conftest import QUIET, face, iris

F, IR = Modality.FACE, Modality.IRIS_RIGHT


def _open(directory: Path, ring: KeyRing) -> Gallery:
    return Gallery(directory, ring, default_index_factory("exact", "exact"), load_index, config=QUIET)


def _every_file(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def test_no_file_under_the_data_directory_holds_a_template_in_clear(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    directory = tmp_path / "data"
    known_face, known_iris = face(7), iris(7)
    g = _open(directory, ring)
    for i in range(40):
        g.insert({F: face(i), IR: iris(i)}, ref_id=f"R{i}")
    g.snapshot()
    needles = {"face float32": known_face.vector.astype("<f4").tobytes(),
               "face float32 (first half)": known_face.vector.astype("<f4").tobytes()[:256],
               "iris code": known_iris.code.tobytes(), "iris mask": known_iris.mask.tobytes()}

    def scan() -> None:
        files = _every_file(directory)
        assert any(p.suffix == ".idx" for p in files) and any(p.name == "nasname.db" for p in files)
        for path in files:
            data = path.read_bytes()
            for what, needle in needles.items():
                assert needle not in data, f"{what} of a known template found in clear in {path.name}"

    scan()  # open: database, WAL, snapshot files
    g.close()
    scan()  # closed: checkpointed database and the snapshot written at close
    with _open(directory, ring) as again:  # the sealed snapshot is what loads
        assert again.stats()["snapshot_seq"] == again.stats()["applied_seq"]
        assert again.search(F, known_face, 1)[0].ref_id == "R7"
        assert again.search(IR, known_iris, 1)[0].ref_id == "R7"


def _cipher_offset(plain_offset: int) -> int:
    header = 4 + 8 + 16 + 4
    chunk, within = divmod(plain_offset, sealed.CHUNK_SIZE)
    return header + chunk * (12 + sealed.CHUNK_SIZE + 16) + 12 + within


def test_a_snapshot_with_two_rows_swapped_is_refused_and_rebuilt(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    ring = KeyRing.generate()
    directory = tmp_path / "data"
    with _open(directory, ring) as g:
        for i in range(30):
            g.insert({F: face(i)}, ref_id=f"R{i}")
    found = snap.read_sidecar(directory / "snapshots", ring)
    assert found is not None
    path = found.files[F]
    plain = sealed.open_sealed(path, ring, snap.index_identity(F, found.seq)).read()
    a, b = (plain.index(face(i).vector.astype("<f4").tobytes()) for i in (3, 4))
    n = face(3).vector.nbytes
    assert abs(a - b) >= n and a // sealed.CHUNK_SIZE == (a + n - 1) // sealed.CHUNK_SIZE
    blob = bytearray(path.read_bytes())
    ca, cb = _cipher_offset(a), _cipher_offset(b)
    blob[ca:ca + n], blob[cb:cb + n] = blob[cb:cb + n], blob[ca:ca + n]
    path.write_bytes(bytes(blob))

    with caplog.at_level(logging.INFO), _open(directory, ring) as g:
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "failed authentication" in logged and "rebuilt" in logged
        assert g.search(F, face(3), 1)[0].ref_id == "R3"
        assert g.search(F, face(4), 1)[0].ref_id == "R4"


def test_an_edited_sidecar_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ring = KeyRing.generate()
    directory = tmp_path / "data"
    with _open(directory, ring) as g:
        for i in range(5):
            g.insert({F: face(i)}, ref_id=f"R{i}")
    side = directory / "snapshots" / snap.SIDECAR
    meta = json.loads(side.read_text())
    meta["quarantined"] = [{"label": 1, "unreadable": {"face": "DECRYPTION_FAILED"}, "modalities": ["face"]}]
    side.write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO), _open(directory, ring) as g:
        assert "sidecar" in caplog.text and "rebuilt" in caplog.text
        assert g.quarantined() == [] and g.count() == 5


def test_an_unencrypted_snapshot_of_an_older_nasname_is_removed_and_rebuilt(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    directory = tmp_path / "data"
    with _open(directory, ring) as g:
        for i in range(5):
            g.insert({F: face(i)}, ref_id=f"R{i}")
        index = g._indexes[F]
    snaps = directory / "snapshots"
    for p in snaps.iterdir():
        p.unlink()
    index.save(snaps / "face-5.idx")  # format 1: the index file in clear, a plain sidecar
    (snaps / snap.SIDECAR).write_text(json.dumps({"format": 1, "seq": 5, "created": 0, "indexes": {
        "face": {"file": "face-5.idx", "model_id": index.model.model_id,
                 "model_version": index.model.version}}}))
    assert face(2).vector.tobytes() in (snaps / "face-5.idx").read_bytes()
    with _open(directory, ring) as g:
        assert not (snaps / "face-5.idx").exists()
        assert g.search(F, face(2), 1)[0].ref_id == "R2" and g.stats()["snapshot_seq"] == -1
    assert all(face(2).vector.tobytes() not in p.read_bytes() for p in _every_file(directory))
