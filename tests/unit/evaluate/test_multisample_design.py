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
    assert set(v) == {"1", "2_best", "2_fuse", "3_best", "3_fuse"}
    assert v["1"]["fte_rate"] == pytest.approx(1 / 3) and v["2_fuse"]["fte_rate"] == 0.0
    assert v["1"]["rank1_hit_rate"] <= 4 / 6  # a's probes are misses without an enrolment
    assert v["3_fuse"]["rank1_hit_rate"] == 1.0
    assert v["3_fuse"]["comparisons"] == {"genuine": 6, "impostor": 6 * 2 + 2 * 3}
