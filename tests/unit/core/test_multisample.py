"""Several frames of one modality (engine.multisample, Engine.extract): fusion, choice, dropped frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.calibration import FUSED_FACE, FUSED_FACE_VS_ONE
from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import AcquisitionFailed, ConfigurationError, InvalidInput, ModelMismatch, QualityRejected
from engine.extractor import Extraction
from engine.fusion import Fusion, per_comparison_fmr
from engine.idempotency import enroll_from_json, enroll_to_json
from engine.iris.matcher import IrisMatcher
from engine.multisample import (
    FACE_FUSE_MAX,
    MAX_FRAMES,
    Frame,
    Strategy,
    best_frame,
    best_frames,
    combine,
    majority_iris,
    mean_face,
)
from engine.records import Sample, SampleUse
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Quality, QualityReason
from tests.unit.core.conftest import MODEL, mate, unit, write_calibration

IRIS = ModelRef("synthetic-iris", "1")
COLUMNS, BPC = 32, 4  # 32 angular columns of 4 bytes (32 bits) each


def iris(code_bits: np.ndarray, mask_bits: np.ndarray | None = None) -> IrisTemplate:
    mask_bits = np.ones_like(code_bits) if mask_bits is None else mask_bits
    return IrisTemplate(np.packbits(code_bits), np.packbits(mask_bits), COLUMNS, IRIS)


def bits(t: IrisTemplate) -> tuple[np.ndarray, np.ndarray]:
    return np.unpackbits(t.code), np.unpackbits(t.mask)


# -- face ------------------------------------------------------------------------------------------

def test_face_mean_is_the_renormalised_mean_of_unit_embeddings() -> None:
    rng = np.random.default_rng(3)
    a, b, c = unit(rng), unit(rng), unit(rng)
    fused = mean_face([FaceTemplate(a * 5, MODEL), FaceTemplate(b, MODEL), FaceTemplate(c, MODEL)])
    expected = (a + b + c) / np.linalg.norm(a + b + c)  # every input counts once, whatever its scale
    np.testing.assert_allclose(fused.vector, expected, atol=1e-6)
    assert abs(float(np.linalg.norm(fused.vector)) - 1.0) < 1e-5 and fused.model == MODEL


def test_face_mean_is_closer_to_the_person_than_its_frames() -> None:
    rng = np.random.default_rng(4)
    person = unit(rng)
    frames = [FaceTemplate(mate(person, rng, noise=0.12), MODEL) for _ in range(3)]
    fused = mean_face(frames)
    assert float(fused.vector @ person) > max(float(f.vector @ person) for f in frames)


def test_frames_of_two_models_are_not_fused() -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(ModelMismatch):
        mean_face([FaceTemplate(unit(rng), MODEL), FaceTemplate(unit(rng), ModelRef("other", "1"))])


# -- iris ------------------------------------------------------------------------------------------

def test_iris_majority_votes_each_bit_and_masks_the_ties() -> None:
    rng = np.random.default_rng(6)
    n = COLUMNS * BPC * 8
    truth = rng.integers(0, 2, n, dtype=np.uint8)
    noisy = []
    flipped = []
    for _ in range(3):
        flip = rng.random(n) < 0.1
        flipped.append(flip)
        noisy.append(iris(truth ^ flip.astype(np.uint8)))
    code, mask = bits(majority_iris(noisy, min_agreement=0.6))
    # 2 of 3 agree everywhere: every bit valid, and the vote restores the truth wherever at most one
    # frame flipped it
    two_flipped = np.sum(flipped, axis=0) >= 2
    assert mask.all()
    assert np.array_equal(code[~two_flipped], truth[~two_flipped])
    # unanimous only: exactly the bits where one frame disagrees are masked
    _, mask_u = bits(majority_iris(noisy, min_agreement=1.0))
    one_flipped = np.sum(flipped, axis=0) == 1
    assert np.array_equal(mask_u.astype(bool), ~(one_flipped | (np.sum(flipped, axis=0) == 2)))
    # two frames: a disagreement is a tie, never kept
    _, mask_2 = bits(majority_iris(noisy[:2]))
    assert np.array_equal(mask_2.astype(bool), flipped[0] == flipped[1])


def test_iris_majority_counts_only_valid_bits() -> None:
    rng = np.random.default_rng(7)
    n = COLUMNS * BPC * 8
    truth = rng.integers(0, 2, n, dtype=np.uint8)
    first, everything = np.zeros(n, np.uint8), np.ones(n, np.uint8)
    first[: n // 2] = 1
    # frame 3 is wrong on the first half, where its mask says it is not valid (an eyelid)
    wrong_first = truth ^ first
    frames = [iris(truth, first), iris(truth, everything), iris(wrong_first, 1 - first)]
    code, mask = bits(majority_iris(frames, min_agreement=1.0))
    assert mask.all() and np.array_equal(code, truth)
    # a bit no frame has valid is not valid in the fusion either
    _, mask = bits(majority_iris([iris(truth, first), iris(truth, first)]))
    assert np.array_equal(mask, first)


def test_iris_frames_are_aligned_before_voting() -> None:
    rng = np.random.default_rng(8)
    n = COLUMNS * BPC * 8
    truth = rng.integers(0, 2, n, dtype=np.uint8)
    frames = [iris(truth)]
    for shift in (3, -2):  # the eye turned by a few columns between frames
        frames.append(iris(np.unpackbits(np.roll(np.packbits(truth), shift * BPC))))
    fused = majority_iris(frames, min_agreement=1.0)
    assert IrisMatcher().match(fused, frames[0]).hd_raw == 0.0
    assert bits(fused)[1].mean() > 0.99  # aligned frames agree: nothing masked (wrapped bits aside)


def test_iris_reference_is_the_medoid_not_an_outlier() -> None:
    rng = np.random.default_rng(9)
    n = COLUMNS * BPC * 8
    truth = rng.integers(0, 2, n, dtype=np.uint8)
    outlier = iris(rng.integers(0, 2, n, dtype=np.uint8))  # a frame of no use (bad segmentation)
    good = [iris(truth ^ (rng.random(n) < 0.05).astype(np.uint8)) for _ in range(2)]
    fused = majority_iris([outlier, *good], min_agreement=0.6)
    m = IrisMatcher()
    assert m.similarity(fused, iris(truth)) > max(m.similarity(g, iris(truth)) for g in good) - 0.02
    assert m.similarity(fused, iris(truth)) > 0.8


# -- choice ----------------------------------------------------------------------------------------

def test_best_by_quality_and_strategies() -> None:
    rng = np.random.default_rng(10)
    frames = [Frame(FaceTemplate(unit(rng), MODEL), q) for q in (0.4, 0.9, 0.9)]
    assert best_frame(frames) == 1  # ties go to the first sent
    assert best_frame([Frame(frames[0].template, None), frames[0]]) == 1  # unknown quality ranks last
    best = combine(frames, Strategy.BEST)
    assert best.used == (1,) and best.template is frames[1].template
    fused = combine(frames, Strategy.FUSE)
    assert fused.used == (0, 1, 2) and fused.strategy is Strategy.FUSE
    single = combine(frames[:1], Strategy.FUSE)  # one frame: nothing to fuse
    assert single.used == (0,) and single.template is frames[0].template
    with pytest.raises(InvalidInput):
        combine([], Strategy.BEST)


# -- through the engine ----------------------------------------------------------------------------

class FramesExtractor:
    """Decodes b"<kind>:<seed>:<quality>" into a face near person ``seed``; ``bad`` frames fail the
    gate, ``none`` frames show no face."""

    kind = "face"
    model = MODEL

    def __init__(self, person: np.ndarray, model: ModelRef = MODEL) -> None:
        self.person = person
        self.model = model

    def extract(self, image: bytes) -> Extraction:
        what, seed, quality = image.decode().split(":")
        if what == "none":
            raise AcquisitionFailed("no face found", reasons=["NO_FACE"])
        vector = mate(self.person, np.random.default_rng(int(seed)), noise=0.1)
        if what == "bad":
            q = Quality(float(quality), False, (QualityReason.BLURRED,), rejected=(QualityReason.BLURRED,))
        else:
            q = Quality(float(quality), True)
        return Extraction(FaceTemplate(vector, self.model), q)


@pytest.fixture(scope="module")
def fused_fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    """The synthetic model's calibrations with a fused-face variant (the engine fuses face frames
    only for a model that has one)."""
    d = write_calibration(tmp_path_factory.mktemp("cal"), FUSED_FACE)
    return Fusion.for_models({Modality.FACE: MODEL}, d, variants={Modality.FACE: FUSED_FACE})


@pytest.fixture(params=["fuse"])
def frames_engine(request: pytest.FixtureRequest, tmp_path: Path, fusion: Fusion,
                  fused_fusion: Fusion) -> tuple[Engine, np.ndarray]:
    """An engine whose face frames are combined as ``request.param`` says (``face_frames``)."""
    person = unit(np.random.default_rng(99))
    cfg = EngineConfig(data_dir=tmp_path / "d", modalities=("face",), snapshot_every=0,
                       face_frames=request.param)
    calibrations = fused_fusion if request.param == "fuse" else fusion
    engine = Engine.open(cfg, extractors=lambda kind: FramesExtractor(person), fusion=calibrations)
    yield engine, person  # type: ignore[misc]
    engine.close()


def shots(*frames: str) -> list[Sample]:
    return [Sample(Modality.FACE, image=f.encode()) for f in frames]


def test_one_bad_frame_among_three_is_dropped_and_said_why(frames_engine: tuple[Engine, np.ndarray]) -> None:
    engine, _ = frames_engine
    result = engine.enroll("P1", shots("ok:1:0.7", "bad:2:0.3", "none:3:0"))
    assert [s.use for s in result.samples] == [SampleUse.USED, SampleUse.REFUSED, SampleUse.REFUSED]
    refused_q, refused_none = result.samples[1], result.samples[2]
    assert refused_q.details["error_reason"] == "QUALITY_CHECK_FAILED"
    assert refused_q.quality is not None and refused_q.quality.instructions == ("hold still and focus",)
    assert refused_none.details["error_reason"] == "NO_BIOMETRIC_FOUND"
    assert refused_none.quality is not None and refused_none.quality.reasons == (QualityReason.NO_FACE,)
    # the stored template is the usable frame alone
    single = engine.extract(shots("ok:1:0.7"))[0][Modality.FACE]
    again = engine.verify("P1", shots("ok:1:0.7"))
    assert again.scores[Modality.FACE] == pytest.approx(1.0, abs=1e-5)
    assert isinstance(single, FaceTemplate)
    # the result survives an idempotent replay as it was
    assert enroll_from_json(enroll_to_json(result)).samples == result.samples


def test_three_frames_are_fused_and_match_better(frames_engine: tuple[Engine, np.ndarray]) -> None:
    engine, person = frames_engine
    templates, results = engine.extract(shots("ok:1:0.5", "ok:2:0.9", "ok:3:0.6"))
    assert all(r.use is SampleUse.USED for r in results)
    fused = templates[Modality.FACE]
    assert isinstance(fused, FaceTemplate)
    singles = [engine.extract(shots(f"ok:{i}:0.5"))[0][Modality.FACE] for i in (1, 2, 3)]
    assert float(fused.vector @ person) > max(float(s.vector @ person) for s in singles)  # type: ignore[union-attr]


def test_frames_are_fused_by_default() -> None:
    """Both kinds fuse by default; face with the calibration of fused templates (docs/QUALITY.md)."""
    assert EngineConfig().face_frames == "fuse" and EngineConfig().iris_frames == "fuse"
    with pytest.raises(ConfigurationError):
        EngineConfig(face_frames="mean")


def test_fused_faces_are_thresholded_with_the_fused_calibration(
        frames_engine: tuple[Engine, np.ndarray]) -> None:
    """The engine that fuses face frames decides with the calibration of fused templates, in its own
    searches and in the calibrations it gives dedup jobs."""
    engine, _ = frames_engine
    engine.enroll("P1", shots("ok:1:0.5", "ok:2:0.9", "ok:3:0.6"))
    engine.identify(shots("ok:4:0.5", "ok:5:0.7"))
    assert engine.fusion is not None and engine.fusion.variant(Modality.FACE) == FUSED_FACE
    assert engine.fusion_for_models({Modality.FACE: MODEL}).variant(Modality.FACE) == FUSED_FACE
    assert engine.calibration_variants({Modality.FACE: MODEL}) == {Modality.FACE: FUSED_FACE}


@pytest.mark.parametrize("frames_engine", ["best"], indirect=True)
def test_an_engine_keeping_the_best_frame_uses_the_plain_calibration(
        frames_engine: tuple[Engine, np.ndarray]) -> None:
    engine, _ = frames_engine
    assert engine.calibration_variants({Modality.FACE: MODEL}) == {}
    assert engine.fusion_for_models({Modality.FACE: MODEL}).variant(Modality.FACE) == ""


def test_a_one_frame_probe_is_judged_with_the_calibration_against_one_frame(tmp_path: Path) -> None:
    """With the shipped SFace calibrations: a probe of one photo is held to the fused-against-one
    threshold, a probe of several photos (and the gallery's own view) to the fused-against-fused one,
    which is stricter."""
    sface = ModelRef("sface_2021dec_int8bq", "1+mphoto")
    person = unit(np.random.default_rng(99))
    cfg = EngineConfig(data_dir=tmp_path / "d", modalities=("face",), snapshot_every=0)
    engine = Engine.open(cfg, extractors=lambda kind: FramesExtractor(person, sface))
    try:
        engine.enroll("P1", shots("ok:1:0.5", "ok:2:0.9", "ok:3:0.6"))
        # one record: a small rate, so that the thresholds are above the LLR floor of 0
        one = engine.identify(shots("ok:4:0.5"), target_fpir=1e-5).threshold.fused_threshold
        several = engine.identify(shots("ok:5:0.5", "ok:6:0.5"), target_fpir=1e-5).threshold.fused_threshold
        fmr = per_comparison_fmr(1e-5, 1)
        similarity = {}
        for variant, got in ((FUSED_FACE_VS_ONE, one), (FUSED_FACE, several)):
            fusion = Fusion.for_models({Modality.FACE: sface}, variants={Modality.FACE: variant})
            assert got == pytest.approx(fusion.decide_threshold([Modality.FACE], fmr, floor=0.0).value)
            similarity[variant] = fusion.score_threshold(Modality.FACE, fmr)
        # (LLRs of two calibrations are not comparable; the similarities they need are)
        assert similarity[FUSED_FACE_VS_ONE] < similarity[FUSED_FACE]
        assert engine.fusion is not None and engine.fusion.variant(Modality.FACE) == FUSED_FACE
        assert engine.verify("P1", shots("ok:7:0.5")).match
        # a template computed elsewhere may be fused itself: judged as fused, like a transfer's records
        given = [Sample(Modality.FACE, template=FaceTemplate(mate(person, np.random.default_rng(9)), sface))]
        assert engine.identify(given, target_fpir=1e-5).threshold.fused_threshold == pytest.approx(several)
    finally:
        engine.close()


def test_fuse_without_a_fused_calibration_keeps_the_best_frame(
        tmp_path: Path, fusion: Fusion, caplog: pytest.LogCaptureFixture) -> None:
    """Without a calibration of fused templates the engine could not keep its FPIR promise for
    fused faces: it keeps the best frame, marks the others, and says why in the log."""
    person = unit(np.random.default_rng(99))
    cfg = EngineConfig(data_dir=tmp_path / "d", modalities=("face",), snapshot_every=0, face_frames="fuse")
    engine = Engine.open(cfg, extractors=lambda kind: FramesExtractor(person), fusion=fusion)
    try:
        with caplog.at_level("WARNING", logger="engine.engine"):
            _, results = engine.extract(shots("ok:1:0.5", "ok:2:0.9", "ok:3:0.6"))
        assert [r.use for r in results] == [SampleUse.NOT_SELECTED, SampleUse.USED, SampleUse.NOT_SELECTED]
        assert "no calibration of fused templates" in caplog.text
        assert engine.calibration_variants({Modality.FACE: MODEL}) == {}
    finally:
        engine.close()


def test_more_face_frames_than_the_fused_calibration_knows_fuse_the_best_three() -> None:
    rng = np.random.default_rng(3)
    frames = [Frame(FaceTemplate(unit(rng), MODEL), q) for q in (0.2, 0.9, 0.5, 0.8, 0.1)]
    combined = combine(frames, Strategy.FUSE)
    assert FACE_FUSE_MAX == 3 and combined.used == (1, 2, 3)
    expected = mean_face([frames[i].template for i in (1, 2, 3)])  # type: ignore[misc]
    assert isinstance(combined.template, FaceTemplate)
    np.testing.assert_allclose(combined.template.vector, expected.vector, atol=1e-6)
    assert best_frames(frames, 2) == (1, 3)


def test_a_missing_calibration_variant_is_refused(tmp_path: Path) -> None:
    d = write_calibration(tmp_path)
    with pytest.raises(ConfigurationError, match="fused3"):
        Fusion.for_models({Modality.FACE: MODEL}, d, variants={Modality.FACE: FUSED_FACE})


@pytest.mark.parametrize("frames_engine", ["best"], indirect=True)
def test_best_by_quality_marks_the_others_not_selected(frames_engine: tuple[Engine, np.ndarray]) -> None:
    engine, _ = frames_engine
    templates, results = engine.extract(shots("ok:1:0.5", "ok:2:0.9", "bad:3:0.95"))
    assert [r.use for r in results] == [SampleUse.NOT_SELECTED, SampleUse.USED, SampleUse.REFUSED]
    assert templates[Modality.FACE] is not None


def test_no_usable_frame_fails_as_a_single_refused_sample_does(
        frames_engine: tuple[Engine, np.ndarray]) -> None:
    engine, _ = frames_engine
    with pytest.raises(QualityRejected) as single:
        engine.enroll("P2", shots("bad:1:0.2"))
    assert "samples_refused" not in single.value.details
    with pytest.raises(QualityRejected) as three:
        engine.enroll("P2", shots("bad:1:0.2", "none:2:0", "bad:3:0.1"))
    assert three.value.reasons == ("BLURRED",) and three.value.details["samples_refused"] == 3
    with pytest.raises(AcquisitionFailed):
        engine.enroll("P2", shots("none:1:0", "bad:2:0.2"))  # the first refusal is the one reported
    assert engine.count() == 0  # nothing stored


def test_frames_must_be_few_and_all_images_or_all_templates(frames_engine: tuple[Engine, np.ndarray]) -> None:
    engine, person = frames_engine
    with pytest.raises(InvalidInput) as many:
        engine.extract(shots(*[f"ok:{i}:0.5" for i in range(MAX_FRAMES + 1)]))
    assert many.value.reason == "TOO_MANY_SAMPLES"
    mixed = [*shots("ok:1:0.5"), Sample(Modality.FACE, template=FaceTemplate(person, MODEL))]
    with pytest.raises(InvalidInput) as both:
        engine.extract(mixed)
    assert both.value.reason == "MIXED_SAMPLES"
    # several precomputed templates of one modality are fused too
    rng = np.random.default_rng(12)
    given = [Sample(Modality.FACE, template=FaceTemplate(mate(person, rng), MODEL)) for _ in range(3)]
    _, results = engine.extract(given)
    assert len(results) == 3 and all(r.use is SampleUse.USED for r in results)
