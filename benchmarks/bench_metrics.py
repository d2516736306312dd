"""pytest-benchmark suite for the metric code (``engine.metrics``): the hot paths of ``nasname
evaluate`` on large score sets.

    short (CI):  .venv/bin/pytest benchmarks/bench_metrics.py -o python_files='bench_*.py' \
                     --benchmark-only
    full (hand): NASNAME_BENCH_FULL=1 .venv/bin/pytest benchmarks/bench_metrics.py \
                     -o python_files='bench_*.py' --benchmark-only --benchmark-autosave
    compare:     ... --benchmark-compare   (against the last autosaved run)

Short mode uses 1e5 impostor scores, full mode 1e7 (the size of an all-pairs LFW run).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from engine.metrics import det_curve, eer, fnir_at_fpir, fnmr_at_fmr, kfold_accuracy, search_outcomes

FULL = os.environ.get("NASNAME_BENCH_FULL") == "1"
N_IMPOSTOR = 10_000_000 if FULL else 100_000
N_GENUINE = 100_000 if FULL else 5_000


@pytest.fixture(scope="module")
def scores() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    return rng.normal(0.7, 0.08, N_GENUINE), rng.normal(0.1, 0.1, N_IMPOSTOR)


def test_eer(benchmark: Any, scores: Any) -> None:
    gen, imp = scores
    result = benchmark(eer, gen, imp)
    assert 0.0 < result.eer < 0.01


def test_det_curve(benchmark: Any, scores: Any) -> None:
    gen, imp = scores
    curve = benchmark(det_curve, gen, imp)
    assert curve.thresholds.size > N_GENUINE


def test_fnmr_at_fmr(benchmark: Any, scores: Any) -> None:
    gen, imp = scores
    points = benchmark(fnmr_at_fmr, gen, imp, (1e-2, 1e-3, 1e-4))
    assert points[0].measurable


def test_search_outcomes_and_fnir(benchmark: Any) -> None:
    rng = np.random.default_rng(1)
    n_probe, n_gallery = (20_000, 5_000) if FULL else (2_000, 1_000)
    s = rng.normal(0.1, 0.1, (n_probe, n_gallery))
    mates = np.where(np.arange(n_probe) % 2 == 0, rng.integers(0, n_gallery, n_probe), -1)
    s[mates >= 0, mates[mates >= 0]] += 0.6

    def run() -> Any:
        return fnir_at_fpir(search_outcomes(s, mates), (0.01, 0.003, 0.001))

    points = benchmark(run)
    assert points[0].false_negative_rate is not None


def test_kfold_accuracy(benchmark: Any) -> None:
    rng = np.random.default_rng(2)
    n = 60_000 if FULL else 6_000
    same = np.arange(n) % 2 == 0
    s = np.where(same, rng.normal(0.7, 0.1, n), rng.normal(0.2, 0.1, n))
    result = benchmark(kfold_accuracy, s, same, np.arange(n) % 10)
    assert result.mean > 0.9
