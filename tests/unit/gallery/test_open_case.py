"""Opening an adjudication case on an existing ACTIVE record (what N:N de-duplication pushes):
``Store.open_case`` through ``Gallery.open_case``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.crypto import KeyRing
from engine.errors import Conflict, InvalidInput, NotFound
from engine.gallery import Gallery, default_index_factory
from engine.store import RecordStatus
from engine.types import Modality
from tests.unit.store.conftest import face

CANDS = [{"ref_id": "A", "fused": 21.5, "scores": {"face": 0.91}, "llrs": {"face": 21.5}}]


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[Gallery]:
    g = Gallery(tmp_path / "g", KeyRing.generate(), default_index_factory())
    for i, ref in enumerate(("A", "B", "C")):
        g.insert({Modality.FACE: face(i)}, ref_id=ref, partition="p1")
    yield g
    g.close()


def _found(g: Gallery, seed: int) -> list[str]:
    return [h.ref_id for h in g.search(Modality.FACE, face(seed), 3)]


def test_open_case_moves_record_to_pending_and_distinct_brings_it_back(gallery: Gallery) -> None:
    assert "B" in _found(gallery, 1)
    seq_before = gallery.store.last_seq()
    result = gallery.open_case("B", CANDS, actor="investigator-1")
    assert result.seq == seq_before + 1  # exactly one change row
    assert gallery.get("B").status is RecordStatus.PENDING
    assert "B" not in _found(gallery, 1) and gallery.stats()["indexes"]["face"] == 2
    [case] = gallery.pending()
    assert case.ref_id == "B" and case.candidates == CANDS and case.outcome is None
    last = gallery.store.audit_entries(limit=1000)[-1]
    assert (last["action"], last["actor"], last["ref_id"]) == ("open_case", "investigator-1", "B")
    assert gallery.store.verify_audit().ok
    gallery.decide("B", "distinct", actor="adjudicator-1")
    assert gallery.get("B").status is RecordStatus.ACTIVE and _found(gallery, 1)[0] == "B"
    assert gallery.store.verify_audit().ok


def test_open_case_refusals_change_nothing(gallery: Gallery) -> None:
    seq, n_audit = gallery.store.last_seq(), len(gallery.store.audit_entries(limit=1000))
    with pytest.raises(InvalidInput):  # not JSON: the whole transaction rolls back
        gallery.open_case("B", [{"ref_id": "A", "fused": float("nan")}], actor="x")
    with pytest.raises(NotFound):
        gallery.open_case("nobody", CANDS, actor="x")
    assert gallery.store.last_seq() == seq and len(gallery.store.audit_entries(limit=1000)) == n_audit
    assert gallery.get("B").status is RecordStatus.ACTIVE and gallery.store.case("B") is None
    assert "B" in _found(gallery, 1)
    gallery.open_case("B", CANDS, actor="x")
    with pytest.raises(Conflict) as again:
        gallery.open_case("B", CANDS, actor="x")
    assert again.value.reason == "CASE_OPEN"
    gallery.decide("B", "distinct", actor="y")
    with pytest.raises(Conflict) as decided:  # one case per record (schema)
        gallery.open_case("B", CANDS, actor="x")
    assert decided.value.reason == "ALREADY_ADJUDICATED"
    gallery.set_status("C", RecordStatus.PENDING)
    with pytest.raises(Conflict) as pending:
        gallery.open_case("C", CANDS, actor="x")
    assert pending.value.reason == "NOT_ACTIVE"
    gallery.delete("A")
    with pytest.raises(NotFound):
        gallery.open_case("A", CANDS, actor="x")


def test_pending_case_survives_reopen(tmp_path: Path) -> None:
    keyring = KeyRing.generate()
    with Gallery(tmp_path / "g", keyring, default_index_factory()) as g:
        g.insert({Modality.FACE: face(0)}, ref_id="A")
        g.insert({Modality.FACE: face(1)}, ref_id="B")
        g.open_case("B", CANDS, actor="x")
    with Gallery(tmp_path / "g", keyring, default_index_factory()) as g:
        assert [h.ref_id for h in g.search(Modality.FACE, face(1), 2)] == ["A"]
        assert [c.ref_id for c in g.pending()] == ["B"]
