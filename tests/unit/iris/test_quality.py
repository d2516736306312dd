"""Quality reasons of the iris path, each provoked on purpose: refusing rules refuse with their
instruction, warning rules (calibrated, docs/QUALITY.md) accept and still say what to change."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.iris.extractor import IrisExtractor
from engine.iris.quality import assess
from engine.iris.segmentation import Circle
from engine.iris.synthetic import Capture, render
from engine.types import QualityReason as R

GOOD = Capture(upper_lid=0.1, lower_lid=0.0, lashes=4, blur_sigma=0.5, noise_sigma=1.5)


def test_good_capture_passes(iris_extractor: IrisExtractor) -> None:
    q = iris_extractor.extract(render(21, GOOD)).quality
    assert q.ok and not q.reasons and q.score > 0.5 and q.instructions == (), q


def test_blur(iris_extractor: IrisExtractor) -> None:
    q = iris_extractor.extract(render(21, replace(GOOD, blur_sigma=4.0))).quality
    assert R.BLURRED in q.reasons and not q.ok
    assert "hold still and focus" in q.instructions


def test_occlusion(iris_extractor: IrisExtractor) -> None:
    # a half-closed eye still gives enough code bits: accepted (the calibrated limit is 15% usable)
    half = iris_extractor.extract(render(21, replace(GOOD, upper_lid=0.4, lower_lid=0.35))).quality
    assert half.ok and R.OCCLUDED not in half.reasons, half
    seg, _, ex = iris_extractor.run(render(21, GOOD))
    bits = np.unpackbits(ex.template.mask)
    bits[np.flatnonzero(bits)[int(0.1 * bits.size):]] = 0  # 10% of the code left (MMU2's failures: 3-9%)
    shut = assess(seg, np.packbits(bits))
    assert R.OCCLUDED in shut.reasons and R.OCCLUDED in shut.rejected and not shut.ok, shut
    assert shut.instructions[0] == "open the eyes wider"


def test_iris_too_small(iris_extractor: IrisExtractor) -> None:
    q = iris_extractor.extract(render(21, replace(GOOD, scale=0.28, lashes=0))).quality
    assert R.IRIS_TOO_SMALL in q.reasons and not q.ok, q
    assert "move closer" in q.instructions


def test_pupil_ratio_out_of_range(iris_extractor: IrisExtractor) -> None:
    q = iris_extractor.extract(render(21, replace(GOOD, pupil_ratio=0.74))).quality
    # a warning since the calibration: the sample is accepted, the operator told what to change
    assert R.PUPIL_RATIO_OUT_OF_RANGE in q.reasons and q.ok, q
    assert R.PUPIL_RATIO_OUT_OF_RANGE in q.warnings and "more light" in q.instructions


def test_off_axis_and_unreliable_boundary(iris_extractor: IrisExtractor) -> None:
    seg, _, ex = iris_extractor.run(render(21, GOOD))
    p = seg.pupil
    shifted = replace(seg, pupil=Circle(p.x + 0.35 * seg.iris.r, p.y, p.r))
    q = assess(shifted, ex.template.mask)
    assert R.OFF_AXIS in q.reasons and not q.ok
    assert q.instructions[0] == "look straight into the camera"
    weak = replace(seg, measures={**seg.measures, "limbus_contrast": 1.0})
    wq = assess(weak, ex.template.mask)
    assert R.UNRELIABLE_BOUNDARY in wq.warnings and wq.ok and wq.instructions == ("remove glasses",)
    outside = replace(seg, iris=Circle(-0.5 * seg.iris.r, seg.iris.y, seg.iris.r))
    assert R.UNRELIABLE_BOUNDARY in assess(outside, ex.template.mask).reasons


def test_measures_are_numbers(iris_extractor: IrisExtractor) -> None:
    q = iris_extractor.extract(render(22, GOOD)).quality
    assert all(isinstance(v, float) and np.isfinite(v) for v in q.measures.values())
    assert 0.3 < q.measures["pupil_iris_ratio"] < 0.5


def test_spectacle_glare_asks_to_remove_glasses(iris_extractor: IrisExtractor) -> None:
    # five lens reflections across the pupil boundary cover ~11% of the open iris: masked out of the
    # code, the sample is still accepted (UNRELIABLE_BOUNDARY warns) and the operator told why
    q = iris_extractor.extract(render(21, replace(GOOD, glare=5))).quality
    assert q.measures["glare_fraction"] > 0.08 and R.UNRELIABLE_BOUNDARY in q.warnings and q.ok, q
    assert "remove glasses" in q.instructions
    clear = iris_extractor.extract(render(21, GOOD)).quality
    assert clear.measures["glare_fraction"] < 0.02 and R.UNRELIABLE_BOUNDARY not in clear.reasons
