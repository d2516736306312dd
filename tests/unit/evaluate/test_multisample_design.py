"""The multi-sample enrolment design of ``nasname evaluate --multi-sample K`` on synthetic templates."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInput
from engine.evaluation.extraction import ExtractionRun
from engine.evaluation.multisample import evaluate_multi, make_multi_design
from engine.evaluation.scoring import face_similarity
from engine.types import FaceTemplate, ModelRef, Quality, Template

MODEL = ModelRef("synthetic-face", "1")


def test_design_enrols_the_first_k_and_probes_with_the_rest() -> None:
    subjects = ["a", "a", "a", "b", "b", "c", "a", "c", "c"]
    d = make_multi_design(subjects, 2)
    assert d.subjects == ["a", "c"]  # more than 2 samples each; b has 2: non-mated
    assert d.enrol == [[0, 1], [5, 7]]
    assert sorted(zip(d.probes.tolist(), d.probe_mate.tolist(), strict=True)) == [
        (2, 0), (3, -1), (4, -1), (6, 0), (8, 1)]
    with pytest.raises(InvalidInput):
        make_multi_design(subjects, 1)


def test_a_second_frame_rescues_a_failed_first_and_fusion_scores_mates_higher() -> None:
    rng = np.random.default_rng(2)
    people = {p: rng.normal(size=64) for p in ("a", "b", "c", "d")}
    subjects = [p for p in ("a", "b", "c") for _ in range(5)] + ["d"] * 2
    templates: list[Template | None] = []
    for s in subjects:
        v = people[s] + rng.normal(scale=0.9, size=64)
        templates.append(FaceTemplate(v.astype(np.float32), MODEL))
    templates[0] = None  # a's first sample refused by the gate
    run = ExtractionRun(templates=templates,
                        qualities=[None if t is None else Quality(0.8, True) for t in templates])
    doc = evaluate_multi(subjects, run, face_similarity, 3)
    assert doc["design"]["gallery_subjects"] == 3 and doc["design"]["mated_probes"] == 6
    v = doc["variants"]
    assert set(v) == {"1", "2_best", "2_fuse", "3_best", "3_fuse", "3_fuse_probes"}
    assert v["1"]["fte_rate"] == pytest.approx(1 / 3) and v["2_fuse"]["fte_rate"] == 0.0
    assert v["1"]["rank1_hit_rate"] <= 4 / 6  # a's probes are misses without an enrolment
    assert v["3_fuse"]["rank1_hit_rate"] == 1.0
    assert v["3_fuse"]["comparisons"] == {"genuine": 6, "impostor": 6 * 2 + 2 * 3}
    # probes of several frames: each subject's 2 probe samples make one probe (d's 2 samples too)
    assert v["3_fuse_probes"]["probes"] == {"groups": 4, "mated": 3, "max_frames_per_probe": 3}
    assert v["3_fuse_probes"]["comparisons"] == {"genuine": 3, "impostor": 3 * 2 + 1 * 3}
    # the engine's own thresholds: a model without a calibration file gets the coarse defaults
    (calibration, at), = v["3_fuse"]["at_engine_threshold"].items()
    assert calibration == "single-sample" and at["gallery_size"] == 3
    assert at["fmr_target"] == 1e-3 and at["fpir_target"] == 0.003
    assert 0.0 <= at["fmr"] <= 1.0 and 0.0 <= at["fnir"] <= 1.0
    assert at["threshold_1toN"] >= at["threshold_1to1"]


def test_probe_groups_follow_each_subject() -> None:
    from engine.evaluation.multisample import _probe_groups

    subjects = ["a"] * 7 + ["b"] * 2 + ["c"] * 5
    d = make_multi_design(subjects, 2)
    groups, mates = _probe_groups(subjects, d, 2)
    assert groups == [[2, 3], [4, 5], [6], [7, 8], [11, 12], [13]]
    assert mates.tolist() == [0, 0, 0, -1, 1, 1]


def test_each_variant_is_judged_with_the_calibrations_the_engine_would_use() -> None:
    """Fused face variants with the fused calibration, best-frame ones with the plain one, a single
    sample with both (either setting of face_frames); a model without a fused file: plain only."""
    from engine.calibration import FUSED_FACE, FUSED_FACE_VS_ONE
    from engine.evaluation.multisample import _engine_calibrations
    from engine.multisample import Strategy

    sface = ModelRef("sface_2021dec_int8bq", "1+mphoto")  # ships both fused calibrations
    assert _engine_calibrations(sface, "face", Strategy.FUSE, False) == [FUSED_FACE_VS_ONE]
    assert _engine_calibrations(sface, "face", Strategy.FUSE, False, fused_probes=True) == [FUSED_FACE]
    assert _engine_calibrations(sface, "face", Strategy.BEST, False) == [""]
    assert _engine_calibrations(sface, "face", Strategy.BEST, True) == ["", FUSED_FACE_VS_ONE]
    assert _engine_calibrations(MODEL, "face", Strategy.FUSE, False) == [""]
    # the fused face models: sface+dlib has fused-template calibrations, sface+mobilefacenet none
    with_dlib = ModelRef("sface_2021dec_int8bq+dlib_resnet_v1", "1+mphoto,1+mphoto,w0.30")
    with_mfn = ModelRef("sface_2021dec_int8bq+mobilefacenet_tfjs", "1+mphoto,1+mphoto,w0.60")
    assert _engine_calibrations(with_dlib, "face", Strategy.FUSE, False, fused_probes=True) == [FUSED_FACE]
    assert _engine_calibrations(with_mfn, "face", Strategy.FUSE, False) == [""]
    assert _engine_calibrations(sface, "iris", Strategy.FUSE, False) == [""]
