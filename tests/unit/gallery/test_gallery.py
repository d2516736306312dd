"""Gallery behaviour: write path, restrictions, status changes, adjudication, snapshots, locking."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import AlreadyExists, InvalidInput, ModelMismatch, NotFound, Unavailable
from engine.gallery import GalleryConfig
from engine.store import RecordStatus
from engine.types import Modality, ModelRef
from tests.unit.gallery.conftest import (
    FACE_MODEL,
    BruteForceIndex,
    OpenGallery,
    brute_factory,
    brute_loader,
    face,
    iris,
)

F = Modality.FACE


def test_insert_search_get_score(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    assert g.search(F, face(0), 5) == [] and g.models() == {}
    for i in range(20):
        g.insert({F: face(i), Modality.IRIS_LEFT: iris(i)}, ref_id=f"R-{i}")
    assert g.models() == {F: FACE_MODEL, Modality.IRIS_LEFT: iris(0).model}
    for i in (0, 7, 19):
        for modality, probe in ((F, face(i)), (Modality.IRIS_LEFT, iris(i))):
            hits = g.search(modality, probe, 3)
            assert len(hits) == 3 and hits[0].ref_id == f"R-{i}"
            assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
            assert hits[0].similarity >= hits[1].similarity >= hits[2].similarity
    rec = g.get("R-7")
    np.testing.assert_allclose(rec.templates[F].vector, face(7).vector, rtol=1e-6)  # type: ignore[union-attr]
    s = g.score(F, face(7), np.array([rec.label, g.get("R-8").label, 999]))
    assert s[0] == pytest.approx(1.0, abs=1e-5) and abs(s[1]) < 0.5 and np.isnan(s[2])
    many = g.search_many(F, [face(1), face(2)], 1)
    assert [h[0].ref_id for h in many] == ["R-1", "R-2"]
    assert g.count() == 20 and g.stats()["indexes"] == {"face": 20, "iris_left": 20}


def test_restriction_to_partition_and_ids(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    for i in range(30):
        g.insert({F: face(i)}, ref_id=f"R-{i}", partition=f"p{i % 3}")
    in_p1 = {f"R-{i}" for i in range(30) if i % 3 == 1}
    hits = g.search(F, face(0), 30, partition="p1")
    assert {h.ref_id for h in hits} == in_p1
    hits = g.search(F, face(0), 30, ref_ids=["R-0", "R-4", "R-5", "missing"])
    assert {h.ref_id for h in hits} == {"R-0", "R-4", "R-5"} and hits[0].ref_id == "R-0"
    hits = g.search(F, face(0), 30, partition="p1", ref_ids=["R-0", "R-4", "R-5"])
    assert {h.ref_id for h in hits} == {"R-4"}
    assert g.search(F, face(0), 5, partition="nowhere") == []
    assert g.search(F, face(0), 5, ref_ids=[]) == []
    assert g.count(partition="p2") == 10


def test_delete_and_status_take_effect_before_returning(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    for i in range(5):
        g.insert({F: face(i)}, ref_id=f"R-{i}", partition="a")
    g.delete("R-2")
    assert "R-2" not in {h.ref_id for h in g.search(F, face(2), 5)}
    assert "R-2" not in {h.ref_id for h in g.search(F, face(2), 5, partition="a")}
    g.set_status("R-3", RecordStatus.PENDING)
    assert "R-3" not in {h.ref_id for h in g.search(F, face(3), 5, partition="a")}
    assert np.isnan(g.score(F, face(3), np.array([g.get("R-3").label]))[0])
    g.set_status("R-3", RecordStatus.ACTIVE)
    assert g.search(F, face(3), 1, partition="a")[0].ref_id == "R-3"
    with pytest.raises(NotFound):
        g.delete("R-2")
    assert g.count() == 4 and len(g.search(F, face(0), 10)) == 4


def test_pending_then_adjudicated(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    g.insert({F: face(1)}, ref_id="MATE")
    cands = [{"ref_id": "MATE", "fused": 9.0, "scores": {"face": 0.9}}]
    g.insert({F: face(2)}, ref_id="P", status=RecordStatus.PENDING, candidates=cands)
    g.insert({F: face(3)}, ref_id="Q", status=RecordStatus.PENDING, candidates=cands)
    assert [h.ref_id for h in g.search(F, face(2), 5)] == ["MATE"]
    assert [c.ref_id for c in g.pending()] == ["P", "Q"]
    assert g.decide("P", "distinct", actor="op1", final=False) is None
    assert "P" not in {h.ref_id for h in g.search(F, face(2), 5)}
    g.decide("P", "distinct", actor="op2")
    assert g.search(F, face(2), 1)[0].ref_id == "P"
    g.decide("Q", "same", actor="op1")
    assert g.get("Q").status is RecordStatus.DELETED and g.pending() == []
    assert g.stats()["by_status"] == {"active": 2, "pending": 0, "deleted": 1}


def test_refused_writes_store_nothing(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    g.insert({F: face(1)}, ref_id="R-1")
    with pytest.raises(ModelMismatch):
        g.insert({F: face(2, model=ModelRef("other", "9"))}, ref_id="R-2")
    with pytest.raises((ModelMismatch, InvalidInput)):  # the FaceIndex refuses 64-d before the commit
        g.insert({F: face(2, d=64)}, ref_id="R-2")
    with pytest.raises(InvalidInput):
        g.insert({F: iris(2)}, ref_id="R-2")
    with pytest.raises(AlreadyExists):
        g.insert({F: face(2)}, ref_id="R-1")
    assert g.count(None) == 1 and g.store.last_seq() == 1 and g.stats()["indexes"]["face"] == 1
    g.insert({F: face(2)}, ref_id="R-2")  # the gallery still works
    assert g.search(F, face(2), 1)[0].ref_id == "R-2"


def test_pinned_models_conflict_on_reopen(open_gallery: OpenGallery, tmp_path: Path) -> None:
    g = open_gallery(models={F: FACE_MODEL})
    g.insert({F: face(1)}, ref_id="R-1")
    g.close()
    with pytest.raises(ModelMismatch):
        open_gallery(models={F: ModelRef("other", "1")})
    g = open_gallery(models={F: FACE_MODEL})
    assert g.search(F, face(1), 1)[0].ref_id == "R-1"


def test_snapshot_then_replay_of_later_changes(open_gallery: OpenGallery, tmp_path: Path) -> None:
    g = open_gallery(config=GalleryConfig(snapshot_every=0, snapshot_interval_s=0, snapshot_on_close=False))
    for i in range(10):
        g.insert({F: face(i)}, ref_id=f"R-{i}", partition="even" if i % 2 == 0 else "odd")
    seq = g.snapshot()
    assert seq == 10 and g.snapshot() == 10  # nothing new: no second write
    g.delete("R-0")
    g.insert({F: face(10)}, ref_id="R-10", partition="even")
    g.set_status("R-4", RecordStatus.PENDING)
    g.close()  # no snapshot at close: the reopen must replay 3 changes
    g = open_gallery()
    st = g.stats()
    assert st["snapshot_seq"] == 10 and st["applied_seq"] == 13 and st["indexes"]["face"] == 9
    assert {h.ref_id for h in g.search(F, face(0), 20, partition="even")} == {"R-2", "R-6", "R-8", "R-10"}
    assert g.search(F, face(10), 1)[0].ref_id == "R-10"


def test_unusable_snapshot_falls_back_to_rebuild(open_gallery: OpenGallery, tmp_path: Path) -> None:
    g = open_gallery()
    for i in range(6):
        g.insert({F: face(i)}, ref_id=f"R-{i}")
    g.close()  # snapshot at close
    sidecar = tmp_path / "g" / "snapshots" / "snapshot.json"
    meta = json.loads(sidecar.read_text())
    assert meta["seq"] == 6
    (tmp_path / "g" / "snapshots" / meta["indexes"]["face"]["file"]).write_bytes(b"garbage")
    g = open_gallery()
    assert g.stats()["snapshot_seq"] == -1 and g.search(F, face(5), 1)[0].ref_id == "R-5"
    g.close()
    sidecar.write_text("{not json")
    g = open_gallery()
    assert g.stats()["snapshot_seq"] == -1 and g.count() == 6 and g.stats()["indexes"]["face"] == 6


def test_snapshot_not_loaded_without_loader_or_when_ahead_of_store(
        open_gallery: OpenGallery, tmp_path: Path) -> None:
    g = open_gallery(factory=brute_factory, loader=brute_loader)
    g.insert({F: face(1)}, ref_id="R-1")
    g.close()
    g = open_gallery(factory=brute_factory, loader=None)
    assert g.stats()["snapshot_seq"] == -1 and g.search(F, face(1), 1)[0].ref_id == "R-1"
    g.close()
    sidecar = tmp_path / "g" / "snapshots" / "snapshot.json"
    meta = json.loads(sidecar.read_text())
    meta["seq"] = 99  # a snapshot newer than the store (store restored from an older backup)
    sidecar.write_text(json.dumps(meta))
    g = open_gallery(factory=brute_factory, loader=brute_loader)
    assert g.stats()["snapshot_seq"] == -1 and g.count() == 1


def test_background_snapshot_every_n_changes(open_gallery: OpenGallery) -> None:
    g = open_gallery(factory=brute_factory, loader=brute_loader,
                     config=GalleryConfig(snapshot_every=5, snapshot_interval_s=0))
    for i in range(5):
        g.insert({F: face(i)}, ref_id=f"R-{i}")
    deadline = time.monotonic() + 20  # generous: the machine is shared; this is not a timing test
    while g.stats()["snapshot_seq"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert g.stats()["snapshot_seq"] == 5


def test_directory_is_locked_and_closed_gallery_refuses(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    with pytest.raises(Unavailable):
        open_gallery()
    g.close()
    with pytest.raises(Unavailable):
        g.search(F, face(1), 1)
    open_gallery().close()  # the lock was released


def test_brute_force_reference_agrees_with_face_index(open_gallery: OpenGallery, tmp_path: Path) -> None:
    a = open_gallery(directory=tmp_path / "a")
    b = open_gallery(factory=brute_factory, loader=brute_loader, directory=tmp_path / "b")
    for i in range(40):
        for g in (a, b):
            g.insert({F: face(i)}, ref_id=f"R-{i}", partition=str(i % 4))
    for q in range(40, 45):
        ha, hb = a.search(F, face(q), 5, partition="1"), b.search(F, face(q), 5, partition="1")
        assert [h.ref_id for h in ha] == [h.ref_id for h in hb]
        np.testing.assert_allclose([h.similarity for h in ha], [h.similarity for h in hb], atol=1e-5)
    assert isinstance(b._indexes[F], BruteForceIndex)


def test_refused_first_template_does_not_fix_the_model(open_gallery: OpenGallery) -> None:
    g = open_gallery()
    g.insert({F: face(1)}, ref_id="R-1")
    with pytest.raises(AlreadyExists):  # the iris slot is new, but the insert fails
        g.insert({F: face(2), Modality.IRIS_LEFT: iris(2, model=ModelRef("wrong", "1"))}, ref_id="R-1")
    assert Modality.IRIS_LEFT not in g.models()
    g.insert({F: face(2), Modality.IRIS_LEFT: iris(2)}, ref_id="R-2")
    assert g.models()[Modality.IRIS_LEFT] == iris(2).model
    assert g.search(Modality.IRIS_LEFT, iris(2), 1)[0].ref_id == "R-2"


def test_deleting_the_last_template_releases_the_modality_model(open_gallery: OpenGallery) -> None:
    bogus, other = ModelRef("bogus", "0"), ModelRef("another-iris", "2")
    g = open_gallery()
    g.insert({F: face(1)}, ref_id="R-1")
    g.insert({Modality.IRIS_RIGHT: iris(2, model=bogus)}, ref_id="R-2")
    with pytest.raises(ModelMismatch):
        g.insert({Modality.IRIS_RIGHT: iris(3, model=other)}, ref_id="R-3")
    g.delete("R-2")
    assert g.models() == {F: FACE_MODEL}
    g.insert({Modality.IRIS_RIGHT: iris(3, model=other)}, ref_id="R-3")  # a new model and index
    assert g.search(Modality.IRIS_RIGHT, iris(3, model=other), 1)[0].ref_id == "R-3"
    g.delete("R-3")
    g.close()  # the snapshot written at close has no iris_right index any more
    g = open_gallery()
    assert g.models() == {F: FACE_MODEL}
    g.insert({Modality.IRIS_RIGHT: iris(4, model=bogus)}, ref_id="R-4")
    assert g.models()[Modality.IRIS_RIGHT] == bogus
