"""``models/calibrate_face.py --fused``: the cosines of fused templates, computed from the evaluate
run's all-pairs cosines, are those of the templates the engine's fusion makes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.calibration import FUSED_FACE, FUSED_FACE_VS_ONE
from engine.multisample import FACE_FUSE_MAX, mean_face
from engine.types import FaceTemplate, ModelRef
from tests.scripts import model_script

MODEL = ModelRef("synthetic-face", "1")


def test_fused_scores_are_those_of_mean_face_templates(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    people = {p: rng.normal(size=32) for p in "abcd"}
    subjects = [p for p, n in zip("abcd", (7, 3, 4, 2), strict=True) for _ in range(n)]
    vectors = np.stack([people[s] + rng.normal(scale=0.8, size=32) for s in subjects])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    extracted = np.ones(len(subjects), dtype=bool)
    extracted[1] = False  # a's second photo gave no template: a's groups are photos 0,2,3 and 4,5,6
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "scores.npz", face_scores_ungated=(vectors @ vectors.T).astype(np.float32),
             face_extracted=extracted, face_subjects=np.array(subjects))
    (run / "metrics.json").write_text(json.dumps({
        "models": {"face": {"ref": f"{MODEL.model_id}@{MODEL.version}"}},
        "inputs": {"manifest": "/x/face.csv", "command": "nasname evaluate"}}))
    cf = model_script("calibrate_face")
    both = cf._fused(cf._from_evaluate(run), run)
    assert set(both) == {FUSED_FACE, FUSED_FACE_VS_ONE}
    model, genuine, impostor, source, how = both[FUSED_FACE]
    assert model == MODEL and how.endswith("--fused") and "fused templates of 3 images" in source
    assert FACE_FUSE_MAX == 3
    groups = {"a": [[0, 2, 3], [4, 5, 6]], "b": [[7, 8, 9]], "c": [[10, 11, 12]]}  # d has 2: none

    def fused(idx: list[int]) -> np.ndarray:
        return mean_face([FaceTemplate(vectors[i].astype(np.float32), MODEL) for i in idx]).vector

    a1, a2, b, c = (fused(g) for g in (*groups["a"], *groups["b"], *groups["c"]))
    np.testing.assert_allclose(genuine, [a1 @ a2], atol=1e-5)
    expected = sorted([a1 @ b, a1 @ c, a2 @ b, a2 @ c, b @ c])
    np.testing.assert_allclose(sorted(impostor), expected, atol=1e-5)
    # one side fused: each group against every single image outside it (image 1 gave no template)
    _, genuine1, impostor1, _, _ = both[FUSED_FACE_VS_ONE]
    fused_groups = {"a": [a1, a2], "b": [b], "c": [c]}
    images = [i for i in range(len(subjects)) if extracted[i]]
    mates, others = [], []
    for person, templates in fused_groups.items():
        for g, t in zip(groups[person], templates, strict=True):
            for i in images:
                if subjects[i] != person:
                    others.append(t @ vectors[i])
                elif i not in g:
                    mates.append(t @ vectors[i])
    np.testing.assert_allclose(sorted(genuine1), sorted(mates), atol=1e-5)
    np.testing.assert_allclose(sorted(impostor1), sorted(others), atol=1e-5)
    assert len(mates) == 3 + 3 + 0 + 1 and len(others) == 2 * 9 + 12 + 11  # 15 images with a template
