"""Iris accuracy on real images (../shared/data; skipped with a reason when absent).

Protocol (``engine.iris.dataset_eval``): every image of the set extracted once, failures to enrol
counted (FTE) and left out, all-vs-all comparisons within the set with the engine's matcher. Full
sets: CASIA-IrisV1 54 eyes x 7 = 378 images, MMU2 99 eyes x 5 = 495 images. The figures are printed
(``-s``) so a run reports them; ``models/calibrate_iris.py`` prints the same and saves the
distributions.

Below them, one test per failure class of the segmentation on the shared images that showed it
(``python -m engine.iris.diagnose`` lists such images), asserting the segmentation is plausible now.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.extractor import Extraction
from engine.imageio import decode_gray
from engine.iris.dataset_eval import DatasetScores, evaluate, read_manifest
from engine.iris.extractor import IrisExtractor
from engine.iris.segmentation import Segmentation, segment

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def extractor() -> IrisExtractor:
    return IrisExtractor.default()


@pytest.fixture(scope="module")
def casia(shared_data: Path, extractor: IrisExtractor) -> DatasetScores:
    return evaluate(extractor, read_manifest(shared_data, "casia1"), "casia1")


@pytest.fixture(scope="module")
def mmu2(shared_data: Path, extractor: IrisExtractor) -> DatasetScores:
    return evaluate(extractor, read_manifest(shared_data, "mmu2"), "mmu2")


def test_casia_iris_v1(casia: DatasetScores) -> None:
    s = casia.summary()
    print("\nCASIA-IrisV1:", s)
    assert s["images"] == 378 and s["genuine_pairs"] + s["impostor_pairs"] == (378 - s["failures"]) * (
        377 - s["failures"]) // 2
    assert s["fte"] <= 0.02
    assert s["eer"] <= 0.01
    # reported, not gated by the issue; a regression guard at today's level
    assert s["fnmr_at_fmr_0.0001"] is not None and s["fnmr_at_fmr_0.0001"] <= 0.05


def test_mmu2_regression_guard(mmu2: DatasetScores) -> None:
    s = mmu2.summary()
    print("\nMMU2:", s)
    assert s["images"] == 495
    assert s["fte"] <= 0.02
    # regression guard: 1.52% measured (2026-12-04, after the hard-eye segmentation fixes; 2.63%
    # before) plus a margin
    assert s["eer"] <= 0.02
    assert s["fnmr_at_fmr_0.0001"] is not None and s["fnmr_at_fmr_0.0001"] <= 0.08


def test_mmu2_target(mmu2: DatasetScores) -> None:
    # the target (1.52% measured)
    assert mmu2.summary()["eer"] <= 0.03


def _run(shared_data: Path, extractor: IrisExtractor, rel: str) -> tuple[Segmentation, Extraction]:
    path = shared_data / "iris" / rel
    if not path.is_file():
        pytest.skip(f"{path} not found in the shared data")
    seg, _, ex = extractor.run(path.read_bytes())
    return seg, ex


def _assert_plausible(seg: Segmentation) -> None:
    p, i = seg.pupil, seg.iris
    assert math.hypot(p.x - i.x, p.y - i.y) + p.r < i.r, (p, i)  # pupil inside the iris
    assert math.hypot(p.x - i.x, p.y - i.y) <= 0.2 * i.r, (p, i)
    assert 0.2 <= p.r / i.r <= 0.6, (p, i)


# MMU2 images: iris radius 50-60 px at this camera's distance
MMU2_IRIS_PX = (45.0, 65.0)


@pytest.mark.parametrize("rel", ["mmu2/042/420102.png", "mmu2/042/420104.png"])
def test_half_closed_eye_gives_a_masked_code(shared_data: Path, extractor: IrisExtractor, rel: str) -> None:
    # a half-closed eye whose upper lashes (dark above the lighter iris) passed for a lower lid
    # through the pupil: 3% and 9% of the code were left and both were refused (OCCLUDED)
    seg, ex = _run(shared_data, extractor, rel)
    _assert_plausible(seg)
    lid_below_pupil = seg.lower_lid.y_at(np.array([seg.pupil.x]))[0]
    assert not seg.lower_lid.found or lid_below_pupil >= seg.pupil.y + seg.pupil.r
    assert 0.25 <= ex.quality.measures["usable_fraction"] <= 0.9
    assert ex.quality.ok, ex.quality


def test_dark_iris_is_not_taken_for_the_pupil(shared_data: Path, extractor: IrisExtractor) -> None:
    # a dark iris behind spectacles: a 28 px "pupil" (ratio 0.53) was the dark inner iris
    seg, _ = _run(shared_data, extractor, "mmu2/014/140203.png")
    _assert_plausible(seg)
    assert seg.pupil.r <= 20 and seg.pupil.r / seg.iris.r <= 0.4, seg.pupil


def test_oversized_limbus_at_a_spectacle_frame(shared_data: Path, extractor: IrisExtractor) -> None:
    # the limbus was put at 86 px (ratio 0.21), on the spectacle frame beyond the sclera
    seg, _ = _run(shared_data, extractor, "mmu2/014/140102.png")
    _assert_plausible(seg)
    assert MMU2_IRIS_PX[0] <= seg.iris.r <= MMU2_IRIS_PX[1], seg.iris


@pytest.mark.parametrize("rel", [f"mmu2/014/140{e}0{k}.png" for e in (1, 2) for k in range(1, 6)])
def test_spectacles(shared_data: Path, extractor: IrisExtractor, rel: str) -> None:
    # subject 014 wears glasses: frame edges and lens reflections in every frame, a dark iris
    seg, ex = _run(shared_data, extractor, rel)
    _assert_plausible(seg)
    assert MMU2_IRIS_PX[0] <= seg.iris.r <= MMU2_IRIS_PX[1], seg.iris
    assert ex.quality.measures["usable_fraction"] >= 0.3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mmu2", "casia1"])
def test_every_shared_eye_is_segmented_plausibly(shared_data: Path, name: str) -> None:
    # the pupil at an eye corner (a dark canthus or lash clump taken for the pupil) or an iris taken
    # for it would put the pupil off-centre or outside the limbus
    for _, path in read_manifest(shared_data, name):
        seg = segment(decode_gray(path.read_bytes()))
        try:
            _assert_plausible(seg)
        except AssertionError as exc:
            raise AssertionError(f"{path.name}: {exc}") from None
