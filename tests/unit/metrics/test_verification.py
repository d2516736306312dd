"""1:1 measures on hand-computed cases, degenerate inputs, and a brute-force cross-check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.metrics import det_curve, eer, fmr_fnmr, fnmr_at_fmr, tar_at_far

GEN = [0.8, 0.9]
IMP = [0.1, 0.85]


def test_fmr_fnmr_at_threshold_counts_ties_as_matches() -> None:
    assert fmr_fnmr(GEN, IMP, 0.85) == (0.5, 0.5)  # 0.85 impostor accepted, 0.8 genuine rejected
    assert fmr_fnmr(GEN, IMP, 0.8) == (0.5, 0.0)
    assert fmr_fnmr(GEN, IMP, 0.95) == (0.0, 1.0)
    assert fmr_fnmr(GEN, IMP, -5.0) == (1.0, 0.0)


def test_det_points_hand_computed() -> None:
    c = det_curve(GEN, IMP)
    assert c.thresholds.tolist() == [-math.inf, 0.1, 0.8, 0.85, 0.9, math.inf]
    assert c.false_positive.tolist() == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    assert c.false_negative.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0]
    assert (c.n_positive, c.n_negative) == (2, 2)


def test_eer_hand_computed_crossing_on_a_step() -> None:
    r = eer(GEN, IMP)
    assert r.eer == pytest.approx(0.5)
    assert r.threshold == pytest.approx(0.85)


def test_eer_interpolates_between_steps() -> None:
    # thresholds -inf,1,2,3,4,+inf: d = FNMR-FMR = -1,-1,-1/6,+1/6? computed below by hand
    gen = [2.0, 4.0, 4.0]  # n=3
    imp = [1.0, 3.0]  # n=2
    # t=2: FMR=1/2, FNMR=0 -> d=-1/2 ; t=3: FMR=1/2, FNMR=1/3 -> d=-1/6 ; t=4: FMR=0, FNMR=1/3 -> d=1/3
    # alpha = (1/6)/(1/3+1/6) = 1/3 ; EER = 1/2 + 1/3*(0-1/2) = 1/3 ; threshold 3 + 1/3
    r = eer(gen, imp)
    assert r.eer == pytest.approx(1 / 3)
    assert r.threshold == pytest.approx(3 + 1 / 3)


def test_eer_perfect_separation_is_zero() -> None:
    r = eer([0.7, 0.9], [0.1, 0.2, 0.3])
    assert r.eer == 0.0
    assert 0.3 < r.threshold <= 0.7  # type: ignore[operator]


def test_eer_all_scores_equal_is_one_half() -> None:
    assert eer([0.5, 0.5], [0.5, 0.5, 0.5]).eer == pytest.approx(0.5)


def test_eer_without_impostors_or_genuines_is_nan() -> None:
    assert math.isnan(eer([0.5], []).eer)
    assert math.isnan(eer([], [0.5]).eer)
    assert eer([], [0.5]).as_dict()["eer"] is None
    assert fmr_fnmr([0.5], [], 0.0)[0] != fmr_fnmr([0.5], [], 0.0)[0]  # NaN FMR


def test_failed_attempts_count_as_misses_never_as_false_matches() -> None:
    gen = [0.9, -math.inf]  # one genuine comparison failed
    imp = [0.1, -math.inf]
    assert fmr_fnmr(gen, imp, -1e9) == (0.5, 0.5)
    c = det_curve(gen, imp)
    assert c.false_negative[0] == 0.5 and c.false_positive[0] == 0.5


def test_nan_scores_are_refused() -> None:
    with pytest.raises(InvalidInput):
        eer([0.5, math.nan], [0.1])


def test_fnmr_at_fmr_hand_computed_and_measurability() -> None:
    imp = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    gen = np.array([0.9955, 0.9985, 0.5])
    (p1, p2, p3) = fnmr_at_fmr(gen, imp, (1e-2, 1e-3, 1e-4))
    # FMR<=1e-2 allows 10 impostors: threshold just above 0.989 -> gen 0.5 rejected
    assert p1.measurable and p1.false_positive_rate == pytest.approx(0.01)
    assert p1.false_negative_rate == pytest.approx(1 / 3)
    assert 0.989 < p1.threshold <= 0.990  # type: ignore[operator]
    # 1e-3 needs 3000 impostors by the rule of 3: not measurable with 1000
    assert not p2.measurable and p2.false_negative_rate is None and p2.needed_negatives == 3000
    assert p3.n_negative == 1000 and p3.needed_negatives == 30000 and "30000" in p3.note
    assert tar_at_far(gen, imp, (1e-2,)) == [(1e-2, pytest.approx(2 / 3))]


def test_fnmr_at_fmr_with_ties_stays_at_or_below_target() -> None:
    imp = [0.5] * 10 + [0.1] * 990
    (p,) = fnmr_at_fmr([0.6, 0.05], imp, (1e-2,))
    # the 10 tied impostors at 0.5 are exactly 1 %: they may be accepted
    assert p.false_positive_rate == pytest.approx(0.01)
    assert p.false_negative_rate == pytest.approx(0.5)
    (q,) = fnmr_at_fmr([0.6, 0.4], [0.5] * 11 + [0.1] * 989, (1e-2,))
    assert q.false_positive_rate == 0.0  # 11 tied: all must go


def test_fnmr_at_fmr_degenerate() -> None:
    (p,) = fnmr_at_fmr([0.5], [], (1e-2,))
    assert not p.measurable and p.note == "no non-mated attempts"
    (q,) = fnmr_at_fmr([], np.zeros(400), (1e-2,))
    assert not q.measurable and q.false_negative_rate is None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=12),
    st.lists(st.integers(0, 6), min_size=1, max_size=12),
)
def test_det_matches_brute_force(gen: list[int], imp: list[int]) -> None:
    g, i = np.array(gen, float) / 6, np.array(imp, float) / 6
    c = det_curve(g, i)
    for t, fp, fn in zip(c.thresholds, c.false_positive, c.false_negative, strict=True):
        assert fp == np.mean(i >= t) and fn == np.mean(g < t)
    r = eer(g, i).eer
    assert 0.0 <= r <= 1.0
    assert np.min(np.maximum(c.false_positive, c.false_negative)) >= r - 1e-12


def test_large_inputs_are_vectorised() -> None:
    rng = np.random.default_rng(0)
    imp = rng.normal(0.0, 0.1, 2_000_000)
    gen = rng.normal(0.6, 0.1, 20_000)
    r = eer(gen, imp)
    assert 0.001 < r.eer < 0.002  # two unit-sd-apart... d'=6: EER = Phi(-3) = 0.00135
    assert r.eer == pytest.approx(0.00135, abs=3e-4)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=30),
    st.lists(st.integers(0, 20), min_size=1, max_size=400),
    st.sampled_from([0.5, 0.1, 0.01]),
)
def test_operating_point_is_the_lowest_threshold_meeting_the_target(
    gen: list[int], imp: list[int], target: float
) -> None:
    g, i = np.array(gen, float), np.array(imp, float)
    (p,) = fnmr_at_fmr(g, i, (target,), min_errors=0.0)
    assert p.threshold is not None and p.false_positive_rate is not None
    assert p.false_positive_rate <= target + 1e-12
    assert p.false_positive_rate == np.mean(i >= p.threshold)
    assert p.false_negative_rate == np.mean(g < p.threshold)
    # any lower score that could serve as threshold would exceed the target
    lower = np.unique(np.concatenate([g, i]))
    lower = lower[lower < p.threshold]
    assert all(np.mean(i >= t) > target for t in lower)


def test_thinned_curve_keeps_ends_and_order() -> None:
    rng = np.random.default_rng(5)
    c = det_curve(rng.normal(1, 1, 5000), rng.normal(0, 1, 50000))
    t = c.thinned(300)
    assert t.thresholds.size <= 300 + 2 and t.thresholds[0] == -math.inf and t.thresholds[-1] == math.inf
    assert np.all(np.diff(t.thresholds) > 0)
    assert np.all(np.diff(t.false_positive) <= 0) and np.all(np.diff(t.false_negative) >= 0)
    d = c.as_dict(max_points=100)
    assert d["thresholds"][0] is None and d["n_negative"] == 50000
