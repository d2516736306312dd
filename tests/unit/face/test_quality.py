"""Quality reasons from chip measures, landmarks and detections."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.face.alignment import DLIB_TEMPLATE
from engine.face.config import QualityThresholds
from engine.face.detector import Detection, nms
from engine.face.extractor import choose_face
from engine.face.quality import assess_quality, pose_measures
from engine.types import QualityReason as R

FRONTAL = (0.25 + DLIB_TEMPLATE) / 1.5 * 150 + 100  # landmarks of a frontal face, eyes ~79 px apart
GOOD_BOX = Detection(90, 90, 289, 289, 1.05)
T = QualityThresholds()


def _chip(mean: float = 128.0, spread: float = 60.0, blur: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = rng.normal(0, 1, (150, 150)).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), 1.0)
    if blur:
        tex = cv2.GaussianBlur(tex, (0, 0), blur)
    tex = (tex - tex.mean()) / max(float(tex.std()), 1e-6) * spread + mean
    grey = np.clip(tex, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_good_sample_passes_with_a_high_score() -> None:
    q = assess_quality(GOOD_BOX, FRONTAL, _chip(), 1, T)
    assert q.ok and q.reasons == () and q.score > 0.5
    assert abs(q.measures["yaw_ratio"]) < 0.01 and abs(q.measures["roll_deg"]) < 1.0


@pytest.mark.parametrize(("chip", "reason", "refused", "instruction"), [
    (_chip(mean=20, spread=10), R.TOO_DARK, True, "more light"),
    (_chip(mean=240, spread=10), R.TOO_BRIGHT, True, "less light on the face"),
    (_chip(mean=128, spread=5), R.LOW_CONTRAST, False, "more light"),  # calibrated: a warning
    (_chip(blur=6.0, spread=40), R.BLURRED, True, "hold still and focus"),
])
def test_image_problems_are_named(chip: np.ndarray, reason: R, refused: bool, instruction: str) -> None:
    q = assess_quality(GOOD_BOX, FRONTAL, chip, 1, T)
    assert reason in q.reasons and q.score < 0.5 and instruction in q.instructions
    assert q.ok is not refused and (reason in q.rejected) is refused


def test_pose_small_face_confidence_and_several_faces() -> None:
    turned = FRONTAL.copy()
    turned[4, 0] += 0.6 * 79  # nose base far towards one eye: strong yaw
    assert pose_measures(turned)["yaw_ratio"] > 0.5
    q = assess_quality(GOOD_BOX, turned, _chip(), 1, T)
    assert R.EXTREME_POSE in q.warnings and q.ok and q.instructions == ("look straight at the camera",)
    rolled = (FRONTAL - 200) @ np.array([[0.5, -0.866], [0.866, 0.5]]).T + 200  # 60 degrees of roll
    assert R.EXTREME_POSE in assess_quality(GOOD_BOX, rolled, _chip(), 1, T).reasons
    small = Detection(0, 0, 29, 29, 1.0)
    tiny_pts = (FRONTAL - 100) * 0.15
    q = assess_quality(small, tiny_pts, _chip(), 1, T)
    assert R.FACE_TOO_SMALL in q.warnings and "move closer" in q.instructions
    weak = Detection(90, 90, 289, 289, 0.05)
    q = assess_quality(weak, FRONTAL, _chip(), 1, T)
    assert R.LOW_DETECTOR_CONFIDENCE in q.rejected and not q.ok
    q = assess_quality(GOOD_BOX, FRONTAL, _chip(), 3, T)
    assert R.MULTIPLE_FACES in q.reasons and q.ok  # a warning by default: the largest face is used
    assert q.instructions == ("one person only",)
    strict = QualityThresholds(warn_only=())
    assert not assess_quality(GOOD_BOX, FRONTAL, _chip(), 3, strict).ok


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    a = Detection(0, 0, 99, 99, 0.9)
    b = Detection(10, 10, 109, 109, 1.2)  # IoU with a ~0.68
    c = Detection(200, 0, 279, 79, 0.1)
    d = Detection(50, 0, 149, 99, 0.5)  # IoU with b 0.37 (> 0.338): dropped
    kept = nms([a, b, c, d], 0.338)
    assert kept == [b, c]


def test_face_choice_prefers_the_central_subject() -> None:
    edge_big = Detection(0, 0, 139, 139, 1.0)
    centre = Detection(250, 170, 369, 289, 1.0)
    assert choose_face([edge_big, centre], 640, 480, "largest") == edge_big
    assert choose_face([edge_big, centre], 640, 480, "largest_central") == centre
