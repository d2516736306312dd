"""1:N identification measures (NIST FRTE 1:N vocabulary): FPIR/FNIR at a threshold and rank, FNIR
at FPIR, rank-k hit rates (CMC).

A *mated* search has its mate in the gallery; a *non-mated* search does not. FPIR(t) = non-mated
searches whose best candidate scores >= t / all non-mated searches. FNIR(t, R) = mated searches whose
mate is not returned at rank <= R with score >= t / all mated searches. Failed searches (the probe gave
no template, or the mate could not be enrolled) carry score -inf: a miss when mated, never a false
positive when non-mated, counted in the denominators either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput
from engine.metrics.core import (
    RULE_OF_THREE,
    ErrorCurve,
    OperatingPoint,
    ScoreSet,
    error_curve,
    operating_points,
    rates_at,
)

__all__ = ["SearchOutcomes", "cmc", "fnir_at_fpir", "fnir_fpir_curve", "fpir_fnir", "rank_hit_rate",
           "search_outcomes"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Rank given to a mate that was not found at all (failed search, mate not enrolled).
NOT_FOUND = np.iinfo(np.int64).max


@dataclass(frozen=True)
class SearchOutcomes:
    """Per search: ``mated_scores`` / ``mated_ranks`` (1 = best; ``NOT_FOUND`` with score -inf when the
    search failed) for the mated searches, and ``nonmated_top`` (best score, -inf when failed or the
    gallery is empty) for the non-mated ones."""

    mated_scores: F64
    mated_ranks: I64
    nonmated_top: F64

    def __post_init__(self) -> None:
        if self.mated_scores.shape != self.mated_ranks.shape:
            raise InvalidInput("mated_scores and mated_ranks must have the same shape")

    @property
    def n_mated(self) -> int:
        return int(self.mated_scores.size)

    @property
    def n_nonmated(self) -> int:
        return int(self.nonmated_top.size)

    def _positives(self, rank: int) -> ScoreSet:
        if rank < 1:
            raise InvalidInput(f"rank must be >= 1, got {rank}")
        eff = np.where(self.mated_ranks <= rank, self.mated_scores, -np.inf)
        return ScoreSet.of(eff, "mated scores")

    def _negatives(self) -> ScoreSet:
        return ScoreSet.of(self.nonmated_top, "non-mated scores")


def search_outcomes(
    scores: npt.ArrayLike, mate_column: npt.ArrayLike, failed: npt.ArrayLike | None = None
) -> SearchOutcomes:
    """Outcomes of searches from a full probe x gallery similarity matrix.

    ``scores``: (n_searches, n_gallery). ``mate_column``: (n_searches,) int, the gallery column of the
    mate, ``-1`` for a non-mated search, ``-2`` for a mated search whose mate could not be enrolled
    (always a miss). ``failed``: (n_searches,) bool, the probe gave no template (its row is ignored).
    Ties are resolved pessimistically: the mate's rank is the number of gallery entries scoring >= it.
    """
    s = np.asarray(scores, dtype=np.float64)
    mates = np.asarray(mate_column, dtype=np.int64)
    if s.ndim != 2 or mates.shape != (s.shape[0],):
        raise InvalidInput(f"scores must be (n, g) and mate_column (n,), got {s.shape} and {mates.shape}")
    if np.isnan(s).any():
        raise InvalidInput("scores contain NaN")
    if (mates < -2).any() or (mates >= s.shape[1]).any():
        raise InvalidInput("mate_column out of range")
    bad = np.zeros(s.shape[0], bool) if failed is None else np.asarray(failed, dtype=bool)
    if bad.shape != mates.shape:
        raise InvalidInput("failed must have one flag per search")

    mated = mates != -1
    usable = mated & ~bad & (mates >= 0)
    m_scores = np.full(int(mated.sum()), -np.inf)
    m_ranks = np.full(m_scores.size, NOT_FOUND, dtype=np.int64)
    pos = np.flatnonzero(usable[mated])  # positions among mated searches
    rows = np.flatnonzero(usable)
    if rows.size:
        mate_scores = s[rows, mates[rows]]
        m_scores[pos] = mate_scores
        m_ranks[pos] = (s[rows] >= mate_scores[:, None]).sum(axis=1)

    nm_rows = ~mated
    top = np.full(int(nm_rows.sum()), -np.inf)
    ok = ~bad[nm_rows]
    if s.shape[1] and ok.any():
        top[ok] = s[nm_rows][ok].max(axis=1)
    return SearchOutcomes(m_scores, m_ranks, top)


def fpir_fnir(outcomes: SearchOutcomes, threshold: float, rank: int = 1) -> tuple[float, float]:
    """(FPIR, FNIR at rank <= ``rank``) at ``threshold``; NaN where a class is empty."""
    return rates_at(outcomes._positives(rank), outcomes._negatives(), threshold)


def fnir_fpir_curve(outcomes: SearchOutcomes, rank: int = 1) -> ErrorCurve:
    """FPIR (``false_positive``) and FNIR (``false_negative``) at every distinct threshold."""
    return error_curve(outcomes._positives(rank), outcomes._negatives())


def fnir_at_fpir(
    outcomes: SearchOutcomes,
    targets: Iterable[float] = (0.01, 0.003, 0.001),
    rank: int = 1,
    min_errors: float = RULE_OF_THREE,
) -> list[OperatingPoint]:
    """FNIR at the lowest threshold whose FPIR <= each target (``None`` when not measurable)."""
    return operating_points(outcomes._positives(rank), outcomes._negatives(), targets, min_errors)


def rank_hit_rate(outcomes: SearchOutcomes, k: int) -> float:
    """Share of mated searches whose mate is at rank <= k with no threshold (failures are misses);
    NaN without mated searches."""
    if k < 1:
        raise InvalidInput(f"k must be >= 1, got {k}")
    if outcomes.n_mated == 0:
        return float("nan")
    return float(np.count_nonzero(outcomes.mated_ranks <= k) / outcomes.n_mated)


def cmc(outcomes: SearchOutcomes, max_rank: int) -> F64:
    """Cumulative match characteristic: hit rate at ranks 1..max_rank, shape (max_rank,)."""
    if max_rank < 1:
        raise InvalidInput(f"max_rank must be >= 1, got {max_rank}")
    if outcomes.n_mated == 0:
        return np.full(max_rank, np.nan)
    ranks = outcomes.mated_ranks[outcomes.mated_ranks <= max_rank]
    counts = np.bincount(ranks, minlength=max_rank + 1)[1:]
    return np.cumsum(counts) / float(outcomes.n_mated)

