"""Iris accuracy on real images (../shared/data; skipped with a reason when absent).

Protocol (``engine.iris.dataset_eval``): every image of the set extracted once, failures to enrol
counted (FTE) and left out, all-vs-all comparisons within the set with the engine's matcher. Full
sets: CASIA-IrisV1 54 eyes x 7 = 378 images, MMU2 99 eyes x 5 = 495 images. The figures are printed
(``-s``) so a run reports them; ``models/calibrate_iris.py`` prints the same and saves the
distributions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.iris.dataset_eval import DatasetScores, evaluate, read_manifest
from engine.iris.extractor import IrisExtractor

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
    # regression guard: 2.63% measured (2026-11-23, calibrate_iris.py) plus a margin
    assert s["eer"] <= 0.035
    assert s["fnmr_at_fmr_0.0001"] is not None and s["fnmr_at_fmr_0.0001"] <= 0.1


def test_mmu2_target(mmu2: DatasetScores) -> None:
    # the target; 2.63% measured, so little headroom: a segmentation change that moves a
    # few MMU2 images shows up here first
    assert mmu2.summary()["eer"] <= 0.03
