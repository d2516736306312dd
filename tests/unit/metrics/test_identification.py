"""1:N measures on hand-computed cases and degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import InvalidInput
from engine.metrics import cmc, fnir_at_fpir, fnir_fpir_curve, fpir_fnir, rank_hit_rate, search_outcomes
from engine.metrics.identification import NOT_FOUND

# 3 gallery entries; searches: mated to col 0 (rank 1), mated to col 1 (rank 2), mated failed probe,
# mated whose mate was not enrolled, non-mated top 0.7, non-mated failed.
SCORES = np.array([
    [0.9, 0.2, 0.1],
    [0.8, 0.6, 0.3],
    [0.0, 0.0, 0.0],
    [0.4, 0.3, 0.2],
    [0.1, 0.7, 0.2],
    [0.0, 0.0, 0.0],
])
MATES = np.array([0, 1, 2, -2, -1, -1])
FAILED = np.array([False, False, True, False, False, True])


def test_search_outcomes_ranks_scores_and_failures() -> None:
    o = search_outcomes(SCORES, MATES, FAILED)
    assert o.mated_scores.tolist() == [0.9, 0.6, -math.inf, -math.inf]
    assert o.mated_ranks.tolist() == [1, 2, NOT_FOUND, NOT_FOUND]
    assert o.nonmated_top.tolist() == [0.7, -math.inf]
    assert (o.n_mated, o.n_nonmated) == (4, 2)


def test_ties_rank_the_mate_pessimistically() -> None:
    o = search_outcomes([[0.5, 0.5, 0.1]], [0])
    assert o.mated_ranks.tolist() == [2]


def test_fpir_fnir_at_threshold_with_rank() -> None:
    o = search_outcomes(SCORES, MATES, FAILED)
    # t=0.5: non-mated 0.7 is a false positive (1/2); mated: only the first is found at rank 1 (3/4 miss)
    assert fpir_fnir(o, 0.5, rank=1) == (0.5, 0.75)
    assert fpir_fnir(o, 0.5, rank=2) == (0.5, 0.5)
    assert fpir_fnir(o, 0.95, rank=2) == (0.0, 1.0)
    assert fpir_fnir(o, -1e9, rank=5) == (0.5, 0.5)  # failures are never hits / false positives


def test_rank_hit_rates_and_cmc() -> None:
    o = search_outcomes(SCORES, MATES, FAILED)
    assert rank_hit_rate(o, 1) == 0.25
    assert rank_hit_rate(o, 10) == 0.5
    assert cmc(o, 3).tolist() == [0.25, 0.5, 0.5]


def test_fnir_at_fpir_hand_computed() -> None:
    rng = np.random.default_rng(1)
    nonmated = rng.permutation(np.arange(1000) / 1000.0)  # best scores of 1000 non-mated searches
    mated = np.array([0.995, 0.5, 0.9999])
    n_g = 4
    scores = np.zeros((1003, n_g))
    scores[:3, 0] = mated
    scores[3:, 1] = nonmated
    mates = np.array([0, 0, 0] + [-1] * 1000)
    o = search_outcomes(scores, mates)
    p01, p003, p001 = fnir_at_fpir(o, (0.01, 0.003, 0.001))
    assert p01.measurable and p01.false_negative_rate == pytest.approx(1 / 3)
    assert p01.false_positive_rate == pytest.approx(0.01)
    # 0.003 allows 3 of 1000: threshold just above 0.996 -> only 0.9999 is found; 1000 = 3/0.003 suffices
    assert p003.measurable and p003.needed_negatives == 1000
    assert p003.false_negative_rate == pytest.approx(2 / 3)
    assert 0.996 < p003.threshold <= 0.997  # type: ignore[operator]
    assert not p001.measurable and p001.false_negative_rate is None and p001.needed_negatives == 3000
    c = fnir_fpir_curve(o)
    assert c.false_positive[0] == 1.0 and c.false_negative[-1] == 1.0


def test_degenerate_all_failures_to_enroll() -> None:
    o = search_outcomes(np.zeros((3, 2)), [-2, -2, -2])
    assert rank_hit_rate(o, 1) == 0.0
    assert fpir_fnir(o, 0.0)[1] == 1.0
    assert math.isnan(fpir_fnir(o, 0.0)[0])  # no non-mated searches
    (p,) = fnir_at_fpir(o, (0.01,))
    assert not p.measurable and p.note == "no non-mated attempts"


def test_empty_gallery_and_no_mated_searches() -> None:
    o = search_outcomes(np.zeros((2, 0)), [-1, -1])
    assert o.nonmated_top.tolist() == [-math.inf, -math.inf]
    assert math.isnan(rank_hit_rate(o, 1))
    assert np.isnan(cmc(o, 2)).all()


def test_bad_inputs_raise_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        search_outcomes(np.zeros((2, 2)), [0])
    with pytest.raises(InvalidInput):
        search_outcomes(np.zeros((1, 2)), [5])
    with pytest.raises(InvalidInput):
        rank_hit_rate(search_outcomes(np.zeros((1, 1)), [0]), 0)
