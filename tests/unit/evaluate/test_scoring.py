"""The reference matchers used by evaluate (and by the bench as baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ModelMismatch
from engine.evaluation.design import make_design
from engine.evaluation.scoring import face_similarity, iris_similarity
from engine.types import FaceTemplate, IrisTemplate, ModelRef

M = ModelRef("m", "1")


def test_face_similarity_is_cosine() -> None:
    a = FaceTemplate(np.array([1.0, 0.0], np.float32), M)
    b = FaceTemplate(np.array([1.0, 1.0], np.float32), M)
    s = face_similarity([a, b], [b])
    assert s.shape == (2, 1)
    assert s[:, 0] == pytest.approx([np.sqrt(0.5), 1.0])
    with pytest.raises(ModelMismatch):
        face_similarity([a], [FaceTemplate(np.array([1.0, 0.0], np.float32), ModelRef("other", "1"))])


def test_iris_similarity_masks_and_rotation() -> None:
    rng = np.random.default_rng(3)
    code = rng.integers(0, 256, 32, dtype=np.uint8)  # 8 columns of 4 bytes
    full = np.full(32, 255, np.uint8)
    a = IrisTemplate(code, full, 8, M)
    rotated = IrisTemplate(np.roll(code, 8), full, 8, M)  # eye turned by two columns
    inverted = IrisTemplate(~code, full, 8, M)
    assert iris_similarity([a], [a])[0, 0] == 1.0
    assert iris_similarity([a], [rotated], max_shift=2)[0, 0] == 1.0
    assert iris_similarity([a], [rotated], max_shift=0)[0, 0] < 0.8
    assert iris_similarity([a], [inverted], max_shift=0)[0, 0] == 0.0
    # half the bits differ but only the other half is valid in the mask -> identical where compared
    half = code.copy()
    half[16:] ^= 0xFF
    mask = np.zeros(32, np.uint8)
    mask[:16] = 255
    masked = IrisTemplate(half, mask, 8, M)
    assert iris_similarity([a], [masked], max_shift=0)[0, 0] == 1.0


def test_design_first_sample_enrolled_singletons_nonmated() -> None:
    d = make_design(["a", "b", "a", "c", "a", "b"])
    assert d.gallery.tolist() == [0, 1]
    assert d.probes.tolist() == [2, 3, 4, 5]
    assert d.probe_mate.tolist() == [0, -1, 0, 1]
