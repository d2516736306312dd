"""Segmentation of drawn hard eyes, one test per failure class seen on real images (the real-image
counterparts are in tests/integration/test_iris_hard_eyes.py): reflections of spectacles across the
pupil boundary, half-closed eyes, an off-centre pupil and dark irises. Each asserts the circles are
where ``engine.iris.synthetic`` drew them and that what covers the iris is masked, not encoded."""

from __future__ import annotations

import numpy as np
import pytest

from engine.iris.extractor import IrisExtractor
from engine.iris.normalization import sampling_grid
from engine.iris.segmentation import Circle, Segmentation
from engine.iris.synthetic import Capture, geometry, render

BASE = Capture(upper_lid=0.1, lower_lid=0.02, lashes=6, reflections=1, blur_sigma=0.6, noise_sigma=2.0)


def _assert_circles(seg: Segmentation, identity: int, c: Capture, tol_px: float = 3.0) -> None:
    (px, py, pr), (ix, iy, ir) = geometry(identity, c)
    found = seg.pupil, seg.iris
    for got, (x, y, r), name in zip(found, ((px, py, pr), (ix, iy, ir)), ("pupil", "iris"), strict=True):
        assert isinstance(got, Circle)
        assert np.hypot(got.x - x, got.y - y) <= tol_px, (name, got, (x, y, r))
        assert abs(got.r - r) <= max(tol_px, 0.06 * r), (name, got, (x, y, r))


@pytest.mark.parametrize("identity", [2, 7, 13])
def test_spectacle_glare_across_the_pupil_boundary_is_masked(iris_extractor: IrisExtractor,
                                                             identity: int) -> None:
    c = Capture(**{**BASE.__dict__, "glare": 2})
    img = render(identity, c)
    seg, norm, ex = iris_extractor.run(img)
    _assert_circles(seg, identity, c)
    # no glare pixel reaches the code: every valid grid point samples a pixel darker than the glare
    xs, ys = sampling_grid(seg, iris_extractor.config.normalization)
    src = img[np.clip(np.round(ys), 0, img.shape[0] - 1).astype(int),
              np.clip(np.round(xs), 0, img.shape[1] - 1).astype(int)]
    assert not (norm.mask & (src > 215)).any()
    assert ex.quality.ok, ex.quality


@pytest.mark.parametrize("identity", [4, 9])
def test_half_closed_eye_gives_a_masked_code(iris_extractor: IrisExtractor, identity: int) -> None:
    # upper lid down to 0.2 iris radii above the centre, lower lid a fifth of the iris up
    c = Capture(**{**BASE.__dict__, "upper_lid": 0.4, "lower_lid": 0.2})
    seg, norm, ex = iris_extractor.run(render(identity, c))
    _assert_circles(seg, identity, c)
    assert seg.upper_lid.found and seg.lower_lid.found
    _, (_, iy, ir) = geometry(identity, c)
    # the code covers the open part of the iris only: no valid grid point above the drawn lid's apex
    _, ys = sampling_grid(seg, iris_extractor.config.normalization)
    lid_apex = iy - ir + 2 * ir * c.upper_lid
    assert not (norm.mask & (ys < lid_apex - 3)).any()
    assert 0.15 < ex.quality.measures["usable_fraction"] < 0.7
    assert ex.quality.ok, ex.quality


@pytest.mark.parametrize(("dx", "dy"), [(12.0, 0.0), (-10.0, 6.0), (0.0, -9.0)])
def test_off_centre_pupil(iris_extractor: IrisExtractor, dx: float, dy: float) -> None:
    c = Capture(**{**BASE.__dict__, "pupil_dx": dx, "pupil_dy": dy})
    seg, _, ex = iris_extractor.run(render(5, c))
    _assert_circles(seg, 5, c)
    assert ex.quality.measures["concentricity"] == pytest.approx(np.hypot(dx, dy) / seg.iris.r, abs=0.04)


@pytest.mark.parametrize("level", [45.0, 55.0, 70.0])
def test_dark_iris_is_not_taken_for_the_pupil(iris_extractor: IrisExtractor, level: float) -> None:
    c = Capture(**{**BASE.__dict__, "iris_level": level})
    seg, _, ex = iris_extractor.run(render(8, c))
    _assert_circles(seg, 8, c)
    assert 0.3 < ex.quality.measures["pupil_iris_ratio"] < 0.5
