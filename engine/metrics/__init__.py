"""Accuracy measures of a biometric system (ISO/IEC 19795-1, NIST FRTE 1:N), vectorised numpy.

Conventions shared by every function here:

* Scores are similarities, higher = more alike (``engine.types``). A comparison is *accepted* when
  ``score >= threshold`` (a score equal to the threshold is a match).
* ``-inf`` in a score array means "this attempt produced no usable comparison" (failure to acquire or
  to enroll, an empty candidate list). Such an entry counts in the denominator of every rate and is
  never accepted at any threshold, so the rates are *generalised* rates (ISO 19795-1 GFMR/GFNMR):
  a failure is a miss for a mated attempt and cannot be a false match for a non-mated one.
  ``NaN`` is refused (``InvalidInput``).
* A rate that has no denominator (no genuine / no impostor attempts) is ``NaN`` (``None`` in reports).
* An operating point at a target false-positive rate ``f`` is *measurable* only when there are at
  least ``ceil(3 / f)`` negative attempts (the "rule of 3": with zero observed errors that many trials
  bound the true rate below ``f`` at ~95 % confidence). Otherwise its miss rate is reported as
  ``None`` with the number of comparisons it would need.

Modules: ``verification`` (1:1: FMR/FNMR, DET, EER, FNMR at FMR, TAR at FAR), ``identification``
(1:N: FPIR/FNIR with rank, FNIR at FPIR, CMC / rank-k hit rate), ``accuracy`` (k-fold verification
accuracy, LFW protocol).
"""

from __future__ import annotations

from engine.metrics.accuracy import KFoldAccuracy, best_accuracy_threshold, kfold_accuracy
from engine.metrics.core import ErrorCurve, OperatingPoint
from engine.metrics.identification import (
    SearchOutcomes,
    cmc,
    fnir_at_fpir,
    fnir_fpir_curve,
    fpir_fnir,
    rank_hit_rate,
    search_outcomes,
)
from engine.metrics.verification import EqualErrorRate, det_curve, eer, fmr_fnmr, fnmr_at_fmr, tar_at_far

__all__ = [
    "EqualErrorRate",
    "ErrorCurve",
    "KFoldAccuracy",
    "OperatingPoint",
    "SearchOutcomes",
    "best_accuracy_threshold",
    "cmc",
    "det_curve",
    "eer",
    "fmr_fnmr",
    "fnir_at_fpir",
    "fnir_fpir_curve",
    "fnmr_at_fmr",
    "fpir_fnir",
    "kfold_accuracy",
    "rank_hit_rate",
    "search_outcomes",
    "tar_at_far",
]
