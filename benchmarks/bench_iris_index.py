"""Iris 1:N search speed (pytest-benchmark) on seeded synthetic 2048-bit codes, +-15 shifts:
engine exact and fast at N = 10k (and 100k, marked slow), single probe per call.

    .venv/bin/pytest benchmarks/bench_iris_index.py --benchmark-only -s

``extra_info`` carries the fast path's recall of the exact top-1 over 100 mated probes. The 1M
figures (with numpy and FAISS baselines) come from ``python -m benchmarks.iris_scale``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from benchmarks.iris_common import EngineIris, IrisGallery, make_gallery
from engine.index.iris import IrisIndexOptions

SIZES = [10_000, pytest.param(100_000, marks=pytest.mark.slow)]
_cache: dict[int, tuple[IrisGallery, EngineIris, EngineIris, float]] = {}


def _setup(n: int) -> tuple[IrisGallery, EngineIris, EngineIris, float]:
    if n not in _cache:
        g = make_gallery(n, 100, seed=5)
        exact = EngineIris("exact", IrisIndexOptions(kind="exact"))
        fast = EngineIris("fast", IrisIndexOptions(kind="fast", exact_below=0))
        exact.build(g)
        fast.build(g)
        De, Ie = exact.batch_query(g.probe_codes, g.probe_masks, 1)
        Df, If = fast.batch_query(g.probe_codes, g.probe_masks, 1)
        recall = float(np.mean((If[:, 0] == Ie[:, 0]) | (np.abs(Df[:, 0] - De[:, 0]) < 1e-6)))
        _cache[n] = (g, exact, fast, recall)
    return _cache[n]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["exact", "fast"])
def test_iris_identify_one_probe(benchmark: Any, n: int, kind: str) -> None:
    g, exact, fast, recall = _setup(n)
    c = exact if kind == "exact" else fast
    probes = itertools.cycle(range(len(g.probe_codes)))

    def one() -> np.ndarray:
        i = next(probes)
        return c.query(g.probe_codes[i], g.probe_masks[i], 10)[1]

    one()
    I = benchmark(one)
    assert I.shape == (1, 10)
    benchmark.extra_info.update({"n": n, "kind": kind, "fast_recall_at_1": recall})
    if kind == "fast":
        assert recall >= 0.99
