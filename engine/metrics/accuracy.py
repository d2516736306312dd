"""k-fold verification accuracy (the LFW protocol).

For each fold the decision threshold is the one that maximises accuracy on the *other* folds; the
fold's accuracy is measured with it. The report is the mean over folds with the sample standard
deviation (ddof=1) and standard error ``std / sqrt(k)``, as in the LFW README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput
from engine.metrics.core import as_scores

__all__ = ["KFoldAccuracy", "best_accuracy_threshold", "kfold_accuracy"]

F64 = npt.NDArray[np.float64]


def best_accuracy_threshold(scores: npt.ArrayLike, same: npt.ArrayLike) -> tuple[float, float]:
    """(threshold, accuracy) maximising ``(#same >= t + #different < t) / n`` over all thresholds.

    Candidate thresholds are every distinct finite score and +inf; among equally good candidates the
    lowest wins, and the threshold returned is the midpoint between that score and the next lower
    distinct score (same decisions on these pairs, but less brittle on unseen pairs). ``-inf`` scores
    (a failed pair) are always "different". Raises ``InvalidInput`` for an empty set."""
    s = as_scores(scores, "scores")
    y = np.asarray(same, dtype=bool)
    if y.shape != s.shape:
        raise InvalidInput("scores and same must have the same shape")
    if s.size == 0:
        raise InvalidInput("no pairs to choose a threshold from")
    finite = np.isfinite(s)
    values = np.unique(s[finite])
    cand = np.concatenate([values, [np.inf]])
    pos = np.sort(s[y & finite])
    neg = np.sort(s[~y & finite])
    n_neg_fail = int(np.count_nonzero(~y & ~finite))
    true_accept = pos.size - np.searchsorted(pos, cand, side="left")
    true_reject = np.searchsorted(neg, cand, side="left") + n_neg_fail
    acc = (true_accept + true_reject) / float(s.size)
    j = int(np.argmax(acc))
    edge = j == 0 or math.isinf(cand[j])
    threshold = float(cand[j]) if edge else float((cand[j] + cand[j - 1]) / 2)
    return threshold, float(acc[j])


@dataclass(frozen=True)
class KFoldAccuracy:
    mean: float
    std: float
    standard_error: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    n_pairs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "standard_error": self.standard_error,
            "folds": len(self.fold_accuracies),
            "fold_accuracies": list(self.fold_accuracies),
            "fold_thresholds": [t if math.isfinite(t) else None for t in self.fold_thresholds],
            "n_pairs": self.n_pairs,
        }


def kfold_accuracy(scores: npt.ArrayLike, same: npt.ArrayLike, folds: npt.ArrayLike) -> KFoldAccuracy:
    """``scores`` (n,) pair similarities, ``same`` (n,) bool, ``folds`` (n,) int fold id per pair.
    Needs at least 2 folds, each non-empty."""
    s = as_scores(scores, "scores")
    y = np.asarray(same, dtype=bool)
    f = np.asarray(folds)
    if y.shape != s.shape or f.shape != s.shape:
        raise InvalidInput("scores, same and folds must have the same shape")
    ids = np.unique(f)
    if ids.size < 2:
        raise InvalidInput(f"k-fold accuracy needs at least 2 folds, got {ids.size}")
    accs: list[float] = []
    thresholds: list[float] = []
    for fold in ids:
        test = f == fold
        t, _ = best_accuracy_threshold(s[~test], y[~test])
        decided_same = s[test] >= t
        accs.append(float(np.mean(decided_same == y[test])))
        thresholds.append(t)
    a = np.array(accs)
    std = float(a.std(ddof=1))
    return KFoldAccuracy(float(a.mean()), std, std / math.sqrt(a.size), tuple(accs), tuple(thresholds),
                         int(s.size))
