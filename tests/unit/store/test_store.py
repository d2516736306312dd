"""Store: records CRUD, errors, model pinning, encryption at rest, real deletion, change log, scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.crypto import KeyRing
from engine.errors import AlreadyExists, Conflict, IntegrityError, InvalidInput, ModelMismatch, NotFound
from engine.store import RecordStatus, Store
from engine.types import FaceTemplate, Modality, ModelRef
from tests.unit.store.conftest import FACE_MODEL, IRIS_MODEL, face, iris


def test_insert_get_round_trip(store: Store) -> None:
    f, left = face(1), iris(2)
    w = store.insert({Modality.FACE: f, Modality.IRIS_LEFT: left}, ref_id="R-1", partition="camp-a",
                     attributes={"site": "north", "age_band": 3})
    assert (w.ref_id, w.label) == ("R-1", 1) and w.seq == 1
    rec = store.get("R-1")
    assert rec.status is RecordStatus.ACTIVE and rec.partition == "camp-a"
    assert rec.attributes == {"site": "north", "age_band": 3}
    assert set(rec.modalities) == {Modality.FACE, Modality.IRIS_LEFT}
    got_face, got_iris = rec.templates[Modality.FACE], rec.templates[Modality.IRIS_LEFT]
    assert isinstance(got_face, FaceTemplate) and got_face.model == FACE_MODEL
    np.testing.assert_array_equal(got_face.vector, f.vector)
    assert got_iris.to_bytes() == left.to_bytes()
    assert store.get("R-1", with_templates=False).templates == {}


def test_generated_ref_id_and_labels_never_reused(store: Store) -> None:
    a = store.insert({Modality.FACE: face(1)})
    assert len(a.ref_id) == 32
    store.delete(a.ref_id)
    b = store.insert({Modality.FACE: face(2)})
    assert b.label > a.label


def test_errors(store: Store) -> None:
    store.insert({Modality.FACE: face(1)}, ref_id="R-1")
    with pytest.raises(AlreadyExists):
        store.insert({Modality.FACE: face(2)}, ref_id="R-1")
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.delete("nope")
    with pytest.raises(NotFound):
        store.set_status("nope", RecordStatus.PENDING)
    with pytest.raises(InvalidInput):
        store.insert({}, ref_id="R-2")
    with pytest.raises(InvalidInput):
        store.insert({Modality.FACE: face(3)}, ref_id="bad id with spaces")
    with pytest.raises(InvalidInput):  # an iris template in the face slot
        store.insert({Modality.FACE: iris(3)}, ref_id="R-3")
    with pytest.raises(InvalidInput):  # nested attributes are refused
        store.insert({Modality.FACE: face(3)}, ref_id="R-3", attributes={"a": {"b": 1}})  # type: ignore[dict-item]
    store.delete("R-1")
    with pytest.raises(NotFound):
        store.delete("R-1")
    with pytest.raises(AlreadyExists):  # ids of deleted records are not reused
        store.insert({Modality.FACE: face(2)}, ref_id="R-1")
    assert store.count() == 0 and store.count(None) == 1


def test_model_mismatch_and_shape(store: Store) -> None:
    store.insert({Modality.FACE: face(1)}, ref_id="R-1")
    with pytest.raises(ModelMismatch):
        store.insert({Modality.FACE: face(2, model=ModelRef("other", "1"))}, ref_id="R-2")
    with pytest.raises(ModelMismatch):
        store.insert({Modality.FACE: face(2, model=ModelRef("test-face", "2"))}, ref_id="R-2")
    with pytest.raises(InvalidInput):
        store.insert({Modality.FACE: face(2, d=64)}, ref_id="R-2")
    with pytest.raises(ModelMismatch):  # re-pinning a used modality
        store.set_model(Modality.FACE, ModelRef("other", "1"))
    assert store.models() == {Modality.FACE: FACE_MODEL}
    # nothing of the refused writes was stored
    assert store.count(None) == 1 and store.last_seq() == 1


def test_pinned_model_may_change_while_unused(store: Store) -> None:
    store.set_model(Modality.IRIS_LEFT, ModelRef("a", "1"))
    store.set_model(Modality.IRIS_LEFT, ModelRef("b", "1"))
    assert store.models()[Modality.IRIS_LEFT] == ModelRef("b", "1")
    with pytest.raises(ModelMismatch):
        store.insert({Modality.IRIS_LEFT: iris(1)}, ref_id="R-1")


def test_database_holds_no_template_bytes(tmp_path: Path, keyring: KeyRing) -> None:
    store = Store(tmp_path / "nasname.db", keyring)
    templates = [face(i) for i in range(20)]
    irises = [iris(100 + i) for i in range(20)]
    for i, (f, r) in enumerate(zip(templates, irises, strict=True)):
        store.insert({Modality.FACE: f, Modality.IRIS_RIGHT: r}, ref_id=f"R-{i}")
    files = [tmp_path / "nasname.db", tmp_path / "nasname.db-wal"]
    data = b"".join(p.read_bytes() for p in files if p.exists())
    assert len(data) > 20 * 512  # the test reads real content
    for f, r in zip(templates, irises, strict=True):
        raw = f.vector.astype("<f4").tobytes()
        assert raw not in data and raw[:16] not in data and raw[-16:] not in data
        assert r.code.tobytes()[:16] not in data and r.mask.tobytes()[:16] not in data
    store.close()


def test_delete_erases_ciphertext_from_the_file(tmp_path: Path, keyring: KeyRing) -> None:
    store = Store(tmp_path / "nasname.db", keyring)
    store.insert({Modality.FACE: face(1)}, ref_id="R-1", attributes={"name_hint": "zzqq-marker"})
    store.insert({Modality.FACE: face(2)}, ref_id="R-2")
    with store.db.read() as conn:
        blob = bytes(conn.execute("SELECT blob FROM templates WHERE record_id = 1").fetchone()[0])
    store.delete("R-1")
    rec = store.get("R-1")
    assert rec.status is RecordStatus.DELETED and rec.templates == {} and rec.attributes == {}
    store.close()  # checkpoints and truncates the WAL
    data = (tmp_path / "nasname.db").read_bytes()
    assert blob[-32:] not in data  # secure_delete zeroed the freed cells
    assert b"zzqq-marker" not in data


def test_tampered_ciphertext_is_an_integrity_error(tmp_path: Path, keyring: KeyRing) -> None:
    store = Store(tmp_path / "nasname.db", keyring)
    store.insert({Modality.FACE: face(1)}, ref_id="R-1")
    store.insert({Modality.FACE: face(2)}, ref_id="R-2")
    with store.db.write() as conn:  # swap the two rows' blobs (as an attacker with file access could)
        b1, b2 = (conn.execute("SELECT blob FROM templates WHERE record_id = ?", (i,)).fetchone()[0]
                  for i in (1, 2))
        conn.execute("UPDATE templates SET blob = ? WHERE record_id = 1", (b2,))
        conn.execute("UPDATE templates SET blob = ? WHERE record_id = 2", (b1,))
    with pytest.raises(IntegrityError):
        store.get("R-1")
    store.close()
    with pytest.raises(IntegrityError):  # another key cannot read this gallery
        other = Store(tmp_path / "nasname.db", KeyRing.generate())
        try:
            other.get("R-1")
        finally:
            other.close()


def test_status_changes_and_change_log(store: Store) -> None:
    a = store.insert({Modality.FACE: face(1)}, ref_id="A")
    b = store.insert({Modality.FACE: face(2)}, ref_id="B", partition="p2")
    s = store.set_status("A", RecordStatus.PENDING)
    with pytest.raises(Conflict):
        store.set_status("A", RecordStatus.PENDING)
    with pytest.raises(InvalidInput):
        store.set_status("A", RecordStatus.DELETED)
    d = store.delete("B")
    assert [a.seq, b.seq, s.seq, d.seq] == [1, 2, 3, 4] and store.last_seq() == 4
    states, seq = store.scan(0, 10)
    assert seq == 4 and [(x.label, x.status) for x in states] == [
        (a.label, RecordStatus.PENDING), (b.label, RecordStatus.DELETED)]
    assert all(x.templates == {} for x in states)  # only active records carry templates
    changed, _ = store.scan(0, 10, since_seq=3)
    assert [x.label for x in changed] == [b.label]
    store.set_status("A", RecordStatus.ACTIVE)
    (state,), _ = store.scan(0, 10, since_seq=4)
    np.testing.assert_allclose(state.templates[Modality.FACE].vector, face(1).vector)  # type: ignore[union-attr]


def test_scan_pages_and_lookups(store: Store) -> None:
    for i in range(25):
        store.insert({Modality.FACE: face(i)}, ref_id=f"R-{i}", partition="even" if i % 2 == 0 else "odd")
    seen, after = [], 0
    while True:
        page, _ = store.scan(after, 7)
        if not page:
            break
        seen += [s.label for s in page]
        after = page[-1].label
    assert seen == list(range(1, 26))
    assert store.labels_of(["R-0", "R-3", "missing"]) == {"R-0": 1, "R-3": 4}
    assert store.ref_ids_of([1, 4, 999]) == {1: "R-0", 4: "R-3"}
    parts = store.active_labels_by_partition()
    assert parts["even"].tolist() == list(range(1, 26, 2)) and parts["odd"].tolist() == list(range(2, 26, 2))
    assert store.count(partition="odd") == 12 and store.count_templates(Modality.FACE) == 25


def test_images_are_kept_only_when_configured(tmp_path: Path, keyring: KeyRing) -> None:
    off = Store(tmp_path / "a.db", keyring)
    off.insert({Modality.FACE: face(1)}, ref_id="R-1", images={Modality.FACE: b"\xff\xd8jpeg-bytes"})
    assert off.get_image("R-1", Modality.FACE) is None
    off.close()
    on = Store(tmp_path / "b.db", keyring, keep_images=True)
    on.insert({Modality.FACE: face(1)}, ref_id="R-1", images={Modality.FACE: b"\xff\xd8jpeg-bytes"})
    assert on.get_image("R-1", Modality.FACE) == b"\xff\xd8jpeg-bytes"
    on.delete("R-1")
    assert on.get_image("R-1", Modality.FACE) is None
    on.close()
    assert b"jpeg-bytes" not in (tmp_path / "b.db").read_bytes()


def test_closed_store_is_unavailable(tmp_path: Path, keyring: KeyRing) -> None:
    from engine.errors import Unavailable

    store = Store(tmp_path / "nasname.db", keyring)
    store.close()
    with pytest.raises(Unavailable):
        store.count()


def test_not_a_database_is_an_integrity_error(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "nasname.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IntegrityError):
        Store(path, keyring)


def test_sqlite_pragmas(store: Store) -> None:
    with store.db.read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(IntegrityError), store.db.read() as conn:  # sqlite3 errors are translated
        conn.execute("INSERT INTO changes (record_id, op, time) VALUES (999, 'upsert', 0)")


def test_nested_reads_share_one_snapshot(store: Store) -> None:
    store.insert({Modality.FACE: face(1)}, ref_id="R-1")
    with store.db.read() as outer:
        assert store.count() == 1  # a nested read inside an open one works
        assert outer.in_transaction
    assert store.get("R-1", with_templates=False).label == 1


def test_model_is_released_with_the_last_template_of_its_modality(tmp_path: Path, keyring: KeyRing) -> None:
    bogus, real = ModelRef("bogus", "0"), ModelRef("test-iris", "1")
    store = Store(tmp_path / "nasname.db", keyring)
    try:
        store.insert({Modality.IRIS_RIGHT: iris(1, model=bogus)}, ref_id="R-1")
        store.insert({Modality.FACE: face(2), Modality.IRIS_RIGHT: iris(2, model=bogus)}, ref_id="R-2")
        store.delete("R-1")
        assert store.models()[Modality.IRIS_RIGHT] == bogus  # R-2 still holds a bogus iris template
        with pytest.raises(ModelMismatch):
            store.insert({Modality.IRIS_RIGHT: iris(3, model=real)}, ref_id="R-3")
        store.delete("R-2")
        assert store.models() == {}  # R-2's face was the last face template too
        released = [e for e in store.audit_entries() if e["action"] == "release_model"]
        assert sorted(e["details"]["modality"] for e in released) == ["face", "iris_right"]
    finally:
        store.close()
    store = Store(tmp_path / "nasname.db", keyring)  # the release is durable: after a restart too
    try:
        assert store.models() == {}
        store.insert({Modality.IRIS_RIGHT: iris(3, nbytes=128, model=real)}, ref_id="R-3")  # new shape too
        assert store.models() == {Modality.IRIS_RIGHT: real}
    finally:
        store.close()


def test_pending_records_keep_their_modality_model(store: Store) -> None:
    store.insert({Modality.IRIS_LEFT: iris(1)}, ref_id="R-1")
    store.insert({Modality.IRIS_LEFT: iris(2)}, ref_id="R-2", status=RecordStatus.PENDING,
                 candidates=[{"ref_id": "R-1"}])
    store.delete("R-1")
    assert store.models() == {Modality.IRIS_LEFT: IRIS_MODEL}
