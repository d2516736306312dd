"""Engine operations end to end on a real gallery (SQLite + FAISS face index) with face templates.

Templates are synthetic: random unit vectors in 128-d (impostor cosine ~ N(0, 0.09)) and mates made
by adding noise (cosine ~0.8); the calibration handed to the engine describes exactly that, so the
FPIR thresholds are meaningful. The MOSIP ABIS conformance cases of DOMAIN.md are covered here at the
engine level (the service tests repeat them over gRPC).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.calibration import save_distributions
from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import AlreadyExists, Conflict, InvalidInput, ModelMismatch, NotFound
from engine.fusion import Fusion
from engine.records import AdjudicationDecision, EnrollOutcome, RecordStatus, Sample
from engine.types import FaceTemplate, Modality, ModelRef

MODEL = ModelRef("synthetic-face", "1")
DIM = 128


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def mate(v: np.ndarray, rng: np.random.Generator, noise: float = 0.055) -> np.ndarray:
    w = v + rng.normal(scale=noise, size=DIM).astype(np.float32)
    return w / np.linalg.norm(w)


def face(v: np.ndarray, model: ModelRef = MODEL) -> list[Sample]:
    return [Sample(Modality.FACE, template=FaceTemplate(v, model))]


@pytest.fixture(scope="module")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    rng = np.random.default_rng(11)
    d = tmp_path_factory.mktemp("cal")
    base = np.stack([unit(rng) for _ in range(3000)])
    gen = np.einsum("ij,ij->i", base, np.stack([mate(v, rng) for v in base]))
    imp = rng.normal(0.0, 1 / np.sqrt(DIM), 2_000_000)
    save_distributions(MODEL, "face", gen, imp, source="synthetic", command="test", directory=d)
    return Fusion.for_models({Modality.FACE: MODEL}, d)


@pytest.fixture()
def engine(tmp_path: Path, fusion: Fusion) -> Iterator[Engine]:
    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face",), snapshot_every=0)
    eng = Engine.open(cfg, fusion=fusion)
    yield eng
    eng.close()


@pytest.fixture()
def people(engine: Engine) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    vectors = {f"P{i:03d}": unit(rng) for i in range(200)}
    for ref, v in vectors.items():
        partition = "camp-a" if int(ref[1:]) % 2 else "camp-b"
        assert engine.insert(ref, face(v), partition=partition).reference_id == ref
    return vectors


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
        engine.adjudicate("N003", AdjudicationDecision.SAME, actor="adj-1")
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
    with pytest.raises(InvalidInput):
        engine.identify(face(people["P001"]) * 2)
    with pytest.raises(InvalidInput):
        engine.identify([Sample(Modality.IRIS_LEFT, image=b"x")])  # modality not enabled here


def test_reopen_keeps_everything(tmp_path: Path, fusion: Fusion) -> None:
    cfg = EngineConfig(data_dir=tmp_path / "data", modalities=("face",), snapshot_every=0)
    rng = np.random.default_rng(21)
    vectors = [unit(rng) for _ in range(50)]
    eng = Engine.open(cfg, fusion=fusion)
    for i, v in enumerate(vectors):
        eng.insert(f"R{i}", face(v))
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
