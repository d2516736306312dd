"""dlib face-chip geometry and sampling, and the ArcFace-style warp for dropped-in models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import ConfigurationError
from engine.face.alignment import (
    ARCFACE_112,
    DLIB_TEMPLATE,
    align,
    arcface_targets,
    dlib_chip,
    dlib_chip_transform,
    eye_centres,
)


def _template_points(size: int = 150, padding: float = 0.25) -> np.ndarray:
    return (padding + DLIB_TEMPLATE) / (2 * padding + 1) * size


def test_template_landmarks_give_the_identity_chip() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    pts = _template_points()
    a = dlib_chip_transform(pts)
    # scale 1, no rotation; dlib's rectangle has corners at centre +- (side - 1) / 2 = 75 +- 74.5,
    # so chip pixel (c, r) samples the image at (c + 0.5, r + 0.5): the mean of 4 pixels, truncated
    assert np.allclose(a, [[1, 0, 0.5], [0, 1, 0.5]], atol=1e-9)
    chip = dlib_chip(img, pts)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    f = img.astype(np.float64)
    expect = 0.5 * (0.5 * f[:-1, :-1] + 0.5 * f[:-1, 1:]) + 0.5 * (0.5 * f[1:, :-1] + 0.5 * f[1:, 1:])
    assert np.array_equal(chip, expect[:150, :150].astype(np.uint8))


def test_scaled_rotated_face_maps_template_onto_landmarks() -> None:
    angle, scale, shift = math.radians(20), 1.7, np.array([30.0, 12.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * scale
    pts = _template_points() @ rot.T + shift
    a = dlib_chip_transform(pts)
    mapped = _template_points() @ a[:, :2].T + a[:, 2]
    # the chip corners span (side - 1): template points land within a fraction of a pixel
    assert np.abs(mapped - pts).max() < 1.5
    assert math.isclose(math.atan2(a[1, 0], a[0, 0]), angle, abs_tol=1e-9)


def test_bilinear_sampling_truncates_and_blacks_out_outside() -> None:
    img = np.zeros((60, 60, 3), np.uint8)
    img[:, 30:] = 255
    pts = _template_points(150) * 0.2 + 10.3  # small face -> upsampled chip, fractional positions
    chip = dlib_chip(img, pts)
    a = dlib_chip_transform(pts)
    r, c = 75, 80
    x, y = a[0, 0] * c + a[0, 1] * r + a[0, 2], a[1, 0] * c + a[1, 1] * r + a[1, 2]
    x0 = math.floor(x)
    expect = (x - x0) * 255.0 if x0 == 29 else (255.0 if x0 >= 30 else 0.0)
    assert chip[r, c, 0] == int(expect) or abs(y) > 59
    far = np.array(pts) + 500.0  # face entirely outside the image
    assert not dlib_chip(img, far).any()


def test_large_face_uses_a_pyramid_level() -> None:
    rng = np.random.default_rng(2)
    img = np.repeat(np.repeat(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8), 8, 0), 8, 1)
    pts = _template_points() * 4.0 + 50
    chip = dlib_chip(img, pts)
    assert chip.shape == (150, 150, 3) and 60 < chip.mean() < 200


def test_arcface_targets_keep_eyes_and_place_the_nose_base_below_the_tip() -> None:
    t = arcface_targets(ARCFACE_112)
    assert np.allclose(t[:2], ARCFACE_112[:2])
    assert ARCFACE_112[2, 1] < t[2, 1] < ARCFACE_112[3, 1]
    assert abs(t[2, 0] - ARCFACE_112[2, 0]) < 1.0


def test_similarity_alignment_puts_eye_centres_on_the_template() -> None:
    img = np.zeros((300, 300, 3), np.uint8)
    pts = _template_points() * 1.3 + 40
    for x, y in eye_centres(pts)[:2]:
        img[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] = 255
    chip = align(img, pts, {"method": "similarity", "size": 112, "template": ARCFACE_112.tolist()})
    assert chip.shape == (112, 112, 3)
    for x, y in ARCFACE_112[:2]:
        assert chip[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3].max() > 100
    with pytest.raises(ConfigurationError):
        align(img, pts, {"method": "mystery"})
