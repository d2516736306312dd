"""Engine operations end to end on a real gallery (SQLite + FAISS face index) with face templates.

Templates are synthetic: random unit vectors in 128-d (impostor cosine ~ N(0, 0.09)) and mates made
by adding noise (cosine ~0.8); the calibration handed to the engine describes exactly that, so the
FPIR thresholds are meaningful. The MOSIP ABIS conformance cases of DOMAIN.md are covered here at the
engine level (the service tests repeat them over gRPC).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import AlreadyExists, Conflict, InvalidInput, ModelMismatch, NotFound
from engine.fusion import Fusion
from engine.multisample import MAX_FRAMES
from engine.records import AdjudicationDecision, EnrollOutcome, RecordStatus, Sample
from engine.types import Modality, ModelRef
from tests.unit.core.conftest import MODEL, face, mate, unit


def test_insert_echoes_id_and_refuses_existing(engine: Engine, people: dict[str, np.ndarray]) -> None:
    assert engine.count() == 200
    with pytest.raises(AlreadyExists):
        engine.insert("P000", face(people["P001"]))
    generated = engine.insert(None, face(unit(np.random.default_rng(99))))
    assert generated.reference_id and generated.reference_id not in people


def test_unique_person_has_no_candidates(engine: Engine, people: dict[str, np.ndarray]) -> None:
    result = engine.identify(face(unit(np.random.default_rng(1234))))
    assert result.candidates == []
    assert result.threshold.gallery_size == 200


def test_duplicate_returns_exactly_its_mate(engine: Engine, people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(8)
    for ref in ("P007", "P100", "P199"):
        result = engine.identify(face(mate(people[ref], rng)))
        assert [c.reference_id for c in result.candidates] == [ref]
        cand = result.candidates[0]
        assert cand.scores[Modality.FACE] > 0.6
        assert cand.fused >= result.threshold.fused_threshold


def test_restrictions_and_max_results(engine: Engine, people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(9)
    probe = face(mate(people["P010"], rng))
    only_other = engine.identify(probe, reference_ids=["P011"])
    assert only_other.candidates == []
    only_mate = engine.identify(probe, reference_ids=["P010"])
    assert [c.reference_id for c in only_mate.candidates] == ["P010"]
    assert engine.identify(probe, partition="camp-a").candidates == []  # P010 is in camp-b
    assert [c.reference_id for c in engine.identify(probe, partition="camp-b").candidates] == ["P010"]
    # two enrolled copies of the same person: max_results=1 returns only the better one
    engine.insert("P010-copy", face(mate(people["P010"], rng, noise=0.08)))
    both = engine.identify(probe, max_results=5)
    assert {c.reference_id for c in both.candidates} == {"P010", "P010-copy"}
    best = engine.identify(probe, max_results=1)
    assert [c.reference_id for c in best.candidates] == [both.candidates[0].reference_id]
    with pytest.raises(InvalidInput):
        engine.identify(probe, max_results=0)


def test_delete_then_identify_and_unknown_delete(engine: Engine, people: dict[str, np.ndarray]) -> None:
    probe = face(mate(people["P020"], np.random.default_rng(3)))
    assert [c.reference_id for c in engine.identify(probe).candidates] == ["P020"]
    engine.delete("P020")
    assert engine.identify(probe).candidates == []
    assert engine.get("P020").status is RecordStatus.DELETED
    with pytest.raises(NotFound):
        engine.delete("nobody")
    with pytest.raises(NotFound):
        engine.get("nobody")


def test_enroll_holds_duplicates_for_adjudication(engine: Engine, people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(4)
    fresh = engine.enroll("N001", face(unit(rng)))
    assert fresh.outcome is EnrollOutcome.ENROLLED and fresh.candidates == []
    dup = engine.enroll("N002", face(mate(people["P030"], rng)))
    assert dup.outcome is EnrollOutcome.PENDING_ADJUDICATION
    assert [c.reference_id for c in dup.candidates] == ["P030"]
    assert engine.get("N002").status is RecordStatus.PENDING
    # pending records are not searchable as enrolled
    assert [c.reference_id for c in engine.identify(face(people["P030"])).candidates] == ["P030"]
    pending = engine.list_pending()
    assert [p.reference_id for p in pending] == ["N002"]
    assert pending[0].candidates[0].reference_id == "P030"

    dup2 = engine.enroll("N003", face(mate(people["P031"], rng)))
    assert dup2.outcome is EnrollOutcome.PENDING_ADJUDICATION
    view = engine.adjudicate("N002", AdjudicationDecision.SAME, actor="adj-1", mate_reference_id="P030")
    assert view.status is RecordStatus.DELETED
    view = engine.adjudicate("N003", AdjudicationDecision.DISTINCT, actor="adj-1", comment="twins")
    assert view.status is RecordStatus.ACTIVE
    with pytest.raises(Conflict):
        engine.adjudicate("N003", AdjudicationDecision.SAME, actor="adj-1", mate_reference_id="P031")
    assert engine.list_pending() == []


def test_identify_by_reference_id_excludes_itself(engine: Engine, people: dict[str, np.ndarray]) -> None:
    engine.insert("P040-dup", face(mate(people["P040"], np.random.default_rng(6))))
    result = engine.identify(reference_id="P040")
    assert [c.reference_id for c in result.candidates] == ["P040-dup"]


def test_verify(engine: Engine, people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(12)
    genuine = engine.verify("P050", face(mate(people["P050"], rng)))
    assert genuine.match and genuine.scores[Modality.FACE] > 0.6
    impostor = engine.verify("P050", face(people["P051"]))
    assert not impostor.match
    assert impostor.fused < impostor.threshold.fused_threshold <= genuine.fused


def test_model_mismatch_and_bad_requests(engine: Engine, people: dict[str, np.ndarray]) -> None:
    other = ModelRef("another-face-model", "2")
    with pytest.raises(ModelMismatch):
        engine.identify(face(people["P001"], other))
    with pytest.raises(InvalidInput):
        engine.identify([])
    with pytest.raises(InvalidInput):  # several frames of a modality are fine (test_multisample), not 6
        engine.identify(face(people["P001"]) * (MAX_FRAMES + 1))
    assert engine.identify(face(people["P001"]) * 2).candidates[0].reference_id == "P001"
    with pytest.raises(InvalidInput):
        engine.identify([Sample(Modality.IRIS_LEFT, image=b"x")])  # modality not enabled here


def _opened_with(tmp_path: Path, fusion: Fusion, n: int, seed: int
                 ) -> tuple[EngineConfig, Engine, list[np.ndarray]]:
    """An engine on tmp_path/data holding R0..R<n-1> (random unit faces)."""
    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face",), snapshot_every=0)
    rng = np.random.default_rng(seed)
    vectors = [unit(rng) for _ in range(n)]
    eng = Engine.open(cfg, fusion=fusion)
    for i, v in enumerate(vectors):
        eng.insert(f"R{i}", face(v))
    return cfg, eng, vectors


def test_reopen_keeps_everything(tmp_path: Path, fusion: Fusion) -> None:
    cfg, eng, vectors = _opened_with(tmp_path, fusion, 50, 21)
    rng = np.random.default_rng(121)
    eng.delete("R3")
    eng.close()
    eng = Engine.open(cfg, fusion=fusion)
    try:
        assert eng.count() == 49
        assert [c.reference_id for c in eng.identify(face(mate(vectors[7], rng))).candidates] == ["R7"]
        assert eng.identify(face(mate(vectors[3], rng))).candidates == []
        stats = eng.stats()
        assert stats.by_status == {"active": 49, "pending": 0, "deleted": 1}
        assert stats.total == 50 and stats.by_modality == {"face": 49}
        assert stats.models == {"face": str(MODEL)}
    finally:
        eng.close()


@pytest.mark.parametrize("fpir", [1e-300, 5e-324, 0.0, 0.9, float("nan")])
def test_target_fpir_outside_the_sane_range_is_refused(engine: Engine, people: dict[str, np.ndarray],
                                                        fpir: float) -> None:
    v = people["P001"]
    with pytest.raises(InvalidInput) as exc:
        engine.identify(face(v), target_fpir=fpir)
    assert exc.value.reason == "INVALID_THRESHOLD"
    with pytest.raises(InvalidInput):
        engine.enroll(None, face(v), target_fpir=fpir)
    assert engine.count() == len(people)
    assert engine.identify(face(v), target_fpir=1e-6).candidates[0].reference_id == "P001"


def test_enroll_repeated_with_a_request_id_returns_the_first_result(
        engine: Engine, people: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(9)
    probe = face(mate(people["P002"], rng))  # a suspected duplicate: candidates, threshold, outcome
    first = engine.enroll(None, probe, actor="tok_s", request_id="st-1:42")
    assert first.outcome is EnrollOutcome.PENDING_ADJUDICATION and first.candidates
    again = engine.enroll(None, probe, actor="tok_s", request_id="st-1:42")
    assert again == first  # every field, floats exactly
    assert engine.stats().total == len(people) + 1
    other = engine.enroll(None, probe, actor="tok_other", request_id="st-1:42")  # another caller
    assert other.reference_id != first.reference_id and engine.stats().total == len(people) + 2
    with pytest.raises(Conflict) as exc:  # the same id for another operation: the caller's mistake
        engine.insert(None, probe, actor="tok_s", request_id="st-1:42")
    assert exc.value.reason == "REQUEST_ID_REUSED"
    view = engine.adjudicate(first.reference_id, AdjudicationDecision.DISTINCT, actor="tok_j",
                             request_id="a1")
    assert engine.adjudicate(first.reference_id, AdjudicationDecision.DISTINCT, actor="tok_j",
                             request_id="a1").status is view.status is RecordStatus.ACTIVE


def test_a_request_id_reused_for_other_content_is_refused_not_answered(
        engine: Engine, people: dict[str, np.ndarray]) -> None:
    """A station that reuses a request id for the next person must not get the previous person's
    answer (and the next person silently not enrolled): same id, other content -> Conflict."""
    rng = np.random.default_rng(11)
    first = engine.enroll(None, face(mate(people["P002"], rng)), actor="tok_s", request_id="st-1:43")
    stranger = face(unit(rng))
    for call in (lambda: engine.enroll(None, stranger, actor="tok_s", request_id="st-1:43"),
                 lambda: engine.enroll("R-other", face(people["P002"]), actor="tok_s", request_id="st-1:43")):
        with pytest.raises(Conflict) as exc:
            call()
        assert exc.value.reason == "REQUEST_ID_REUSED" and "different enroll" in str(exc.value)
    assert engine.stats().total == len(people) + 1
    engine.delete(first.reference_id, actor="tok_s", request_id="st-1:44")
    engine.delete(first.reference_id, actor="tok_s", request_id="st-1:44")  # a retry: fine
    with pytest.raises(Conflict):
        engine.delete("P001", actor="tok_s", request_id="st-1:44")
    assert engine.get("P001").status is RecordStatus.ACTIVE


def test_restart_with_an_unreadable_record_quarantines_it(tmp_path: Path, fusion: Fusion) -> None:
    """Issue 18 item 1 through Engine.open: a flipped bit in one stored template (snapshot gone) does
    not stop the restart; the record is quarantined, counted in stats, and can be erased."""
    import shutil
    import sqlite3

    cfg, eng, vectors = _opened_with(tmp_path, fusion, 10, 22)
    eng.close()
    conn = sqlite3.connect(cfg.data_dir / "nasname.db", isolation_level=None)
    label, blob = conn.execute("SELECT t.record_id, t.blob FROM templates t JOIN records r "
                               "ON r.id = t.record_id WHERE r.ref_id = 'R4'").fetchone()
    conn.execute("UPDATE templates SET blob = ? WHERE record_id = ?",
                 (bytes(blob[:40]) + bytes([blob[40] ^ 4]) + bytes(blob[41:]), label))
    conn.close()
    shutil.rmtree(cfg.data_dir / "snapshots")
    eng = Engine.open(cfg, fusion=fusion)
    try:
        stats = eng.stats()
        assert stats.quarantined == 1 and eng.count() == 9 and stats.audit_problem == ""
        assert [(ref, q.unreadable) for ref, q in eng.quarantined()] == [
            ("R4", {Modality.FACE: "DECRYPTION_FAILED"})]
        assert eng.identify(face(vectors[4])).candidates == []
        eng.delete("R4")
        assert eng.quarantined() == [] and eng.stats().quarantined == 0
        assert eng.verify_audit().ok
    finally:
        eng.close()


def test_templates_of_unknown_models_cannot_fix_a_modality(tmp_path: Path, fusion: Fusion) -> None:
    from engine.types import IrisTemplate

    class IrisModelOnly:  # the engine only asks an extractor for its model here
        kind = "iris"
        model = ModelRef("site-iris", "2")

    def iris(model: ModelRef) -> list[Sample]:
        return [Sample(Modality.IRIS_LEFT, template=IrisTemplate(np.zeros(64, np.uint8),
                                                                 np.full(64, 255, np.uint8), 8, model))]

    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face", "iris_left"), snapshot_every=0)
    eng = Engine.open(cfg, fusion=fusion, extractors=lambda kind: IrisModelOnly())  # type: ignore[arg-type,return-value]
    try:
        with pytest.raises(InvalidInput) as err:
            eng.insert("B-1", iris(ModelRef("bogus", "0")))
        assert err.value.reason == "UNKNOWN_MODEL" and "site-iris@2" in str(err.value)
        assert eng.gallery.models() == {}
        eng.insert("F-1", face(unit(np.random.default_rng(1))))  # calibrated for this engine: known
        eng.insert("I-1", iris(ModelRef("site-iris", "2")))  # the iris extractor's model: known
        assert eng.gallery.models() == {Modality.FACE: MODEL, Modality.IRIS_LEFT: ModelRef("site-iris", "2")}
    finally:
        eng.close()
