"""Shared machinery: sorted score sets, error curves and operating points at a target rate.

Both 1:1 (FMR/FNMR over comparisons) and 1:N (FPIR/FNIR over searches) reduce to the same question:
given *positive* scores (should be accepted) and *negative* scores (should be rejected), how many of
each are accepted at threshold ``t`` (``score >= t``)? Sorting once and using ``searchsorted`` answers
it for any number of thresholds in O((n + m) log n), which stays fast for 1e7 scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput

__all__ = ["ErrorCurve", "OperatingPoint", "ScoreSet", "as_scores", "error_curve", "operating_points"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: With zero observed errors, 3 / f trials bound the true rate below f at ~95 % confidence.
RULE_OF_THREE = 3.0


def as_scores(values: npt.ArrayLike, name: str) -> F64:
    """A 1-D float64 copy of ``values``; ``-inf`` allowed (a failed attempt), NaN refused."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise InvalidInput(f"{name} must be a 1-D array of scores, got shape {a.shape}")
    if np.isnan(a).any():
        raise InvalidInput(f"{name} contains NaN; use -inf for a failed attempt")
    return a


@dataclass(frozen=True)
class ScoreSet:
    """Scores of one class: ``finite`` sorted ascending, ``total`` including failed (-inf) attempts."""

    finite: F64
    total: int

    @classmethod
    def of(cls, values: npt.ArrayLike, name: str) -> ScoreSet:
        a = as_scores(values, name)
        if np.isposinf(a).any():
            raise InvalidInput(f"{name} contains +inf")
        finite = np.sort(a[np.isfinite(a)])
        return cls(finite, int(a.size))

    def accepted(self, thresholds: F64) -> I64:
        """Number of attempts with ``score >= t`` for each threshold (failures are never accepted)."""
        idx = np.searchsorted(self.finite, thresholds, side="left")
        return (self.finite.size - idx).astype(np.int64)


def _rate(count: I64, total: int) -> F64:
    if total == 0:
        return np.full(count.shape, np.nan)
    return count / float(total)


@dataclass(frozen=True)
class ErrorCurve:
    """Error rates over every distinct threshold, ascending; the first threshold is ``-inf`` (accept
    every usable attempt) and the last ``+inf`` (accept nothing). ``false_positive`` is FMR or FPIR
    (non-increasing), ``false_negative`` FNMR or FNIR (non-decreasing)."""

    thresholds: F64
    false_positive: F64
    false_negative: F64
    n_positive: int
    n_negative: int

    def thinned(self, max_points: int = 2000) -> ErrorCurve:
        """At most ~``max_points`` points, spaced evenly on log scales of both rates (for plots and
        JSON), always keeping both ends."""
        n = self.thresholds.size
        if n <= max_points:
            return self
        per = max(max_points // 3, 2)
        keep = [np.array([0, n - 1]), np.unique(np.linspace(0, n - 1, per).astype(np.int64))]
        fp, fn = self.false_positive, self.false_negative
        if self.n_negative:
            levels = np.geomspace(1.0 / self.n_negative, 1.0, per)
            # fp is non-increasing: the first index where fp <= level
            keep.append(np.clip(np.searchsorted(-fp, -levels, side="left"), 0, n - 1))
        if self.n_positive:
            levels = np.geomspace(1.0 / self.n_positive, 1.0, per)
            keep.append(np.clip(np.searchsorted(fn, levels, side="left"), 0, n - 1))
        idx = np.unique(np.concatenate(keep))
        return ErrorCurve(self.thresholds[idx], fp[idx], fn[idx], self.n_positive, self.n_negative)

    def as_dict(self, max_points: int = 500) -> dict[str, Any]:
        c = self.thinned(max_points)
        return {
            "thresholds": [_json_float(t) for t in c.thresholds],
            "false_positive": [_json_float(v) for v in c.false_positive],
            "false_negative": [_json_float(v) for v in c.false_negative],
            "n_positive": c.n_positive,
            "n_negative": c.n_negative,
        }


def error_curve(pos: ScoreSet, neg: ScoreSet) -> ErrorCurve:
    """Rates at -inf, at every distinct finite score of either class, and at +inf."""
    values = np.unique(np.concatenate([pos.finite, neg.finite]))
    thresholds = np.concatenate([[-np.inf], values, [np.inf]])
    fp = _rate(neg.accepted(thresholds), neg.total)
    fn = _rate(pos.total - pos.accepted(thresholds), pos.total)
    return ErrorCurve(thresholds, fp, fn, pos.total, neg.total)


def rates_at(pos: ScoreSet, neg: ScoreSet, threshold: float) -> tuple[float, float]:
    """(false-positive rate, false-negative rate) at one threshold; NaN where a class is empty."""
    if math.isnan(threshold):
        raise InvalidInput("threshold must not be NaN")
    t = np.array([threshold])
    fp = _rate(neg.accepted(t), neg.total)[0]
    fn = _rate(pos.total - pos.accepted(t), pos.total)[0]
    return float(fp), float(fn)


@dataclass(frozen=True)
class OperatingPoint:
    """The lowest threshold whose false-positive rate is <= ``target``, and the miss rate there.

    ``false_negative_rate`` is ``None`` when the point is not ``measurable``: fewer than
    ``needed_negatives`` negative attempts (rule of 3), or no positive attempts at all.
    ``false_positive_rate`` is the rate actually achieved (<= target, steps are discrete)."""

    target: float
    threshold: float | None
    false_positive_rate: float | None
    false_negative_rate: float | None
    n_positive: int
    n_negative: int
    needed_negatives: int
    measurable: bool
    note: str = ""

    def as_dict(self, positive_name: str = "fnmr", negative_name: str = "fmr") -> dict[str, Any]:
        return {
            "target_" + negative_name: self.target,
            negative_name: self.false_positive_rate,
            positive_name: self.false_negative_rate,
            "threshold": self.threshold,
            "n_mated": self.n_positive,
            "n_nonmated": self.n_negative,
            "needed_nonmated": self.needed_negatives,
            "measurable": self.measurable,
            "note": self.note,
        }


def needed_negatives(target: float, min_errors: float = RULE_OF_THREE) -> int:
    return math.ceil(min_errors / target - 1e-9)


def operating_points(
    pos: ScoreSet, neg: ScoreSet, targets: Iterable[float], min_errors: float = RULE_OF_THREE
) -> list[OperatingPoint]:
    """One ``OperatingPoint`` per target false-positive rate (each in (0, 1])."""
    points = []
    for target in targets:
        if not 0.0 < target <= 1.0:
            raise InvalidInput(f"target rate must be in (0, 1], got {target}")
        needed = needed_negatives(target, min_errors)
        if neg.total == 0 or pos.total == 0:
            which = "no non-mated attempts" if neg.total == 0 else "no mated attempts"
            points.append(OperatingPoint(target, None, None, None, pos.total, neg.total, needed, False,
                                         which))
            continue
        threshold = _threshold_for(pos, neg, target)
        fp, fn = rates_at(pos, neg, threshold)
        measurable = neg.total >= needed
        note = "" if measurable else (
            f"not measurable: needs >= {needed} non-mated attempts (rule of 3), have {neg.total}")
        points.append(OperatingPoint(
            target, _json_float(threshold), fp, fn if measurable else None, pos.total, neg.total, needed,
            measurable, note))
    return points


def _threshold_for(pos: ScoreSet, neg: ScoreSet, target: float) -> float:
    allowed = math.floor(target * neg.total + 1e-9)  # false accepts the target allows
    s = neg.finite
    if allowed >= s.size:
        # every usable negative may be accepted: the lowest usable score accepts all usable attempts
        lows = [a[0] for a in (pos.finite, s) if a.size]
        return float(min(lows)) if lows else -math.inf
    # just above the (allowed+1)-th highest negative score: exactly `allowed` or fewer (ties) remain
    return float(np.nextafter(s[s.size - allowed - 1], np.inf))


def _json_float(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def json_floats(values: Sequence[float]) -> list[float | None]:
    return [_json_float(v) for v in values]
