"""Pupil finder and circle operator on drawn eyes: the cases behind the MMU2 fixes (dark iris whose
edge against the sclera is a bigger grey-level step than the pupil's, bright skin beyond the iris)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from engine.iris.pupil import best_circle, find_pupils
from engine.iris.segmentation import SegmentationParams


def _eye(iris_level: int, pupil_r: int = 14, iris_r: int = 45) -> np.ndarray:
    img = np.full((240, 320), 200, np.uint8)  # bright sclera / skin
    cv2.circle(img, (160, 120), iris_r, iris_level, -1)
    cv2.circle(img, (160, 120), pupil_r, 15, -1)
    cv2.circle(img, (163, 117), 3, 255, -1)  # a glint near the centre
    noise = np.random.default_rng(0).normal(0, 2.0, img.shape)
    out = np.clip(img + noise, 0, 255).astype(np.float32)
    return np.asarray(cv2.GaussianBlur(out, (0, 0), 1.5), dtype=np.float32)


def test_dark_iris_is_not_taken_for_the_pupil_and_contrast_is_in_grey_levels() -> None:
    # iris 60 against sclera 200 (step 140) vs pupil 15 against iris 60 (step 45)
    found = find_pupils(_eye(60), SegmentationParams())
    c, step = found[0]
    assert abs(c.x - 160) <= 2 and abs(c.y - 120) <= 2 and abs(c.r - 14) <= 2, found
    assert 25 < step < 60  # reported in grey levels, not as the relative contrast


def test_limbus_radius_must_be_a_peak_not_the_end_of_the_range() -> None:
    # a faint limbus (105 -> 120 at r = 45), then skin that keeps brightening ever faster to the end
    # of the radius range (its step there is bigger than the limbus')
    yy, xx = np.mgrid[0:240, 0:320]
    d = np.hypot(xx - 160, yy - 120)
    img = np.where(d < 45, 105.0, 120 + 0.15 * (d - 55).clip(0) ** 2).astype(np.float32)
    right = np.linspace(-math.radians(20), math.radians(25), 24, dtype=np.float32)
    arcs = [right, (np.pi - right).astype(np.float32)]
    radii = np.arange(30, 90, 1.0, dtype=np.float32)
    peak, _ = best_circle(img, 160, 120, 2.0, 1.0, radii, arcs, 0.05, peak_only=True)
    assert abs(peak.r - 45) <= 2, peak
    anywhere, _ = best_circle(img, 160, 120, 2.0, 1.0, radii, arcs, 0.05)
    assert anywhere.r > 80  # without the peak rule the growing ramp wins (the old failure)
