"""pytest-benchmark suite for the metric code (``engine.metrics``): the hot paths of ``nasname
evaluate`` on large score sets (conventions of ``benchmarks/conftest.py``).

    .venv/bin/pytest benchmarks/bench_metrics.py -m "not slow"     # CI-sized: 1e5 impostor scores
    .venv/bin/pytest benchmarks/bench_metrics.py                   # + 1e7 (an all-pairs LFW run)
    add --benchmark-autosave / --benchmark-compare to compare versions
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest

from engine.metrics import det_curve, eer, fnir_at_fpir, fnmr_at_fmr, kfold_accuracy, search_outcomes

SIZES = [100_000, pytest.param(10_000_000, marks=pytest.mark.slow)]


@cache
def _scores(n_impostor: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    return rng.normal(0.7, 0.08, max(n_impostor // 100, 1000)), rng.normal(0.1, 0.1, n_impostor)


@pytest.mark.parametrize("n", SIZES)
def test_eer(benchmark: Any, n: int) -> None:
    gen, imp = _scores(n)
    assert 0.0 < benchmark(eer, gen, imp).eer < 0.01


@pytest.mark.parametrize("n", SIZES)
def test_det_curve(benchmark: Any, n: int) -> None:
    gen, imp = _scores(n)
    assert benchmark(det_curve, gen, imp).thresholds.size > gen.size


@pytest.mark.parametrize("n", SIZES)
def test_fnmr_at_fmr(benchmark: Any, n: int) -> None:
    gen, imp = _scores(n)
    assert benchmark(fnmr_at_fmr, gen, imp, (1e-2, 1e-3, 1e-4))[0].measurable


@pytest.mark.parametrize("shape", [(2_000, 1_000), pytest.param((20_000, 5_000), marks=pytest.mark.slow)])
def test_search_outcomes_and_fnir(benchmark: Any, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    n_probe, n_gallery = shape
    s = rng.normal(0.1, 0.1, (n_probe, n_gallery))
    mates = np.where(np.arange(n_probe) % 2 == 0, rng.integers(0, n_gallery, n_probe), -1)
    s[mates >= 0, mates[mates >= 0]] += 0.6

    def run() -> Any:
        return fnir_at_fpir(search_outcomes(s, mates), (0.01, 0.003, 0.001))

    assert benchmark(run)[0].false_negative_rate is not None


@pytest.mark.parametrize("n", [6_000, pytest.param(600_000, marks=pytest.mark.slow)])
def test_kfold_accuracy(benchmark: Any, n: int) -> None:
    rng = np.random.default_rng(2)
    same = np.arange(n) % 2 == 0
    s = np.where(same, rng.normal(0.7, 0.1, n), rng.normal(0.2, 0.1, n))
    assert benchmark(kfold_accuracy, s, same, np.arange(n) % 10).mean > 0.9
