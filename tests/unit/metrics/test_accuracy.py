"""k-fold (LFW protocol) accuracy on hand-computed folds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import InvalidInput
from engine.metrics import best_accuracy_threshold, kfold_accuracy


def test_best_threshold_midpoint_and_accuracy() -> None:
    t, acc = best_accuracy_threshold([0.9, 0.8, 0.3, 0.1], [True, True, False, False])
    assert acc == 1.0
    assert t == pytest.approx(0.55)


def test_best_threshold_with_overlap() -> None:
    # same: 0.9, 0.4 ; different: 0.5, 0.1 -> best is t in (0.5, 0.9] -> 3/4, or t in (0.1,0.4] -> 3/4;
    # the lowest wins: midpoint of 0.1 and 0.4
    t, acc = best_accuracy_threshold([0.9, 0.4, 0.5, 0.1], [True, True, False, False])
    assert acc == 0.75 and t == pytest.approx(0.25)


def test_kfold_uses_thresholds_from_other_folds() -> None:
    scores = np.array([0.9, 0.2, 0.8, 0.3, 0.7, 0.6])
    same = np.array([True, False, True, False, True, False])
    folds = np.array([0, 0, 1, 1, 2, 2])
    r = kfold_accuracy(scores, same, folds)
    # fold 0: train on (0.8,T)(0.3,F)(0.7,T)(0.6,F) -> t=0.65 -> 0.9 T ok, 0.2 F ok -> 1.0
    # fold 1: train (0.9,T)(0.2,F)(0.7,T)(0.6,F) -> t=0.65 -> 1.0
    # fold 2: train (0.9,T)(0.2,F)(0.8,T)(0.3,F) -> t=0.55 -> 0.7 T ok, 0.6 F wrong -> 0.5
    assert r.fold_accuracies == (1.0, 1.0, 0.5)
    assert r.fold_thresholds == pytest.approx((0.65, 0.65, 0.55))
    assert r.mean == pytest.approx(2.5 / 3)
    assert r.std == pytest.approx(float(np.std([1, 1, 0.5], ddof=1)))
    assert r.standard_error == pytest.approx(r.std / math.sqrt(3))
    assert r.as_dict()["folds"] == 3


def test_failed_pairs_are_decided_different() -> None:
    scores = [0.9, -math.inf, 0.1, -math.inf]
    same = [True, True, False, False]
    r = kfold_accuracy(scores, same, [0, 1, 0, 1])
    assert r.fold_accuracies[1] == 0.5  # the failed genuine pair is an error, the failed impostor is not


def test_kfold_needs_two_folds() -> None:
    with pytest.raises(InvalidInput):
        kfold_accuracy([0.1, 0.2], [True, False], [0, 0])
    with pytest.raises(InvalidInput):
        best_accuracy_threshold([], [])
