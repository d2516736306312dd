"""1:1 verification measures: FMR/FNMR at a threshold, DET curve, EER, FNMR at FMR, TAR at FAR.

``genuine`` = scores of mated comparisons (same subject), ``impostor`` = non-mated comparisons.
See ``engine.metrics`` for the conventions (accept when ``score >= t``; ``-inf`` = failed attempt).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.metrics.core import (
    RULE_OF_THREE,
    ErrorCurve,
    OperatingPoint,
    ScoreSet,
    error_curve,
    operating_points,
    rates_at,
)

__all__ = ["EqualErrorRate", "det_curve", "eer", "fmr_fnmr", "fnmr_at_fmr", "tar_at_far"]


def fmr_fnmr(genuine: npt.ArrayLike, impostor: npt.ArrayLike, threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at ``threshold``: FMR = impostors accepted / all impostors, FNMR = genuines
    rejected / all genuines. NaN for a rate whose class is empty."""
    return rates_at(ScoreSet.of(genuine, "genuine"), ScoreSet.of(impostor, "impostor"), threshold)


def det_curve(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> ErrorCurve:
    """FMR (``false_positive``) and FNMR (``false_negative``) at every distinct threshold."""
    return error_curve(ScoreSet.of(genuine, "genuine"), ScoreSet.of(impostor, "impostor"))


@dataclass(frozen=True)
class EqualErrorRate:
    """``eer`` is NaN (``threshold`` None) when either class is empty."""

    eer: float
    threshold: float | None
    n_genuine: int
    n_impostor: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "eer": None if math.isnan(self.eer) else self.eer,
            "threshold": self.threshold,
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
        }


def eer(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> EqualErrorRate:
    """Equal error rate, linearly interpolated where the FNMR and FMR step curves cross.

    Over the ascending thresholds of ``det_curve`` the difference ``d = FNMR - FMR`` goes from <= 0
    (at -inf) to 1 (at +inf). With ``i`` the first threshold where ``d >= 0``, both rates are
    interpolated linearly between thresholds ``i-1`` and ``i`` at the fraction where ``d = 0``; that
    common value is the EER. Ties between genuine and impostor scores fall on the same threshold and
    make both curves jump together, which this interpolation splits evenly (all scores equal -> 0.5).
    If ``d >= 0`` already at -inf (failures make FNMR exceed FMR everywhere), the EER is the mean of
    the two rates there."""
    curve = det_curve(genuine, impostor)
    if curve.n_positive == 0 or curve.n_negative == 0:
        return EqualErrorRate(math.nan, None, curve.n_positive, curve.n_negative)
    d = curve.false_negative - curve.false_positive
    i = int(np.argmax(d >= 0))  # d[-1] == 1, so a crossing always exists
    fmr, fnmr, t = curve.false_positive, curve.false_negative, curve.thresholds
    if i == 0:
        return EqualErrorRate(float((fmr[0] + fnmr[0]) / 2), None, curve.n_positive, curve.n_negative)
    alpha = float(-d[i - 1] / (d[i] - d[i - 1]))
    value = float(fmr[i - 1] + alpha * (fmr[i] - fmr[i - 1]))
    lo, hi = float(t[i - 1]), float(t[i])
    if math.isinf(lo):
        threshold = hi
    elif math.isinf(hi):
        threshold = lo
    else:
        threshold = lo + alpha * (hi - lo)
    return EqualErrorRate(value, threshold, curve.n_positive, curve.n_negative)


def fnmr_at_fmr(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    targets: Iterable[float] = (1e-2, 1e-3, 1e-4),
    min_errors: float = RULE_OF_THREE,
) -> list[OperatingPoint]:
    """FNMR at the lowest threshold whose FMR <= each target; ``None`` FNMR when there are fewer than
    ``ceil(min_errors / target)`` impostor comparisons (see ``OperatingPoint``)."""
    return operating_points(ScoreSet.of(genuine, "genuine"), ScoreSet.of(impostor, "impostor"), targets,
                            min_errors)


def tar_at_far(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    targets: Iterable[float] = (1e-2, 1e-3, 1e-4),
    min_errors: float = RULE_OF_THREE,
) -> list[tuple[float, float | None]]:
    """(target FAR, TAR = 1 - FNMR) pairs; TAR ``None`` where not measurable."""
    return [
        (p.target, None if p.false_negative_rate is None else 1.0 - p.false_negative_rate)
        for p in fnmr_at_fmr(genuine, impostor, targets, min_errors)
    ]
