"""De-duplication N:N pair kernels (pytest-benchmark), CI-sized, on seeded synthetic templates with
planted duplicates (``engine.dedup.scale``). ``extra_info``: pairs found, planted pairs recovered, and
for fast kernels the pair recall against the exact kernel on sampled probes of the same data.

    .venv/bin/pytest benchmarks/bench_dedup.py -m "not slow"
Full-size figures (extrapolated when stopped by the budget, and said so) come from the command:
    python -m engine.dedup scale --kind face --n 100000
    python -m engine.dedup scale --kind iris --n 20000 [--mode fast]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.dedup.data import ModalityData
from engine.dedup.pairs import FaceExact, IrisExact, Pairs, make_kernel, recall_sample
from engine.dedup.scale import planted_faces, planted_irises

FACE_THRESHOLD = 0.6
IRIS_THRESHOLD = 0.68  # ~FMR 1e-7 on these synthetic codes (0.62 lets ~5e-4 of impostor pairs in)

_data: dict[tuple[str, int], tuple[ModalityData, np.ndarray[Any, Any]]] = {}


def _get(kind: str, n: int) -> tuple[ModalityData, np.ndarray[Any, Any]]:
    if (kind, n) not in _data:
        make = planted_faces if kind == "face" else planted_irises
        _data[(kind, n)] = make(n, planted=n // 100, seed=1)
    return _data[(kind, n)]


def _all_blocks(kern: Any, n: int, threshold: float) -> Pairs:
    parts = [kern.block(lo, min(n, lo + kern.block_rows), threshold) for lo in range(0, n, kern.block_rows)]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _record(benchmark: Any, found: Pairs, truth: np.ndarray[Any, Any]) -> None:
    got = set(zip(found[0].tolist(), found[1].tolist(), strict=True))
    benchmark.extra_info["pairs_found"] = len(got)
    benchmark.extra_info["planted_found"] = sum((int(a), int(b)) in got for a, b in truth)
    benchmark.extra_info["planted"] = len(truth)


@pytest.mark.parametrize("n", [20_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_face_exact_nn(benchmark: Any, n: int) -> None:
    data, truth = _get("face", n)
    kern = FaceExact(data)
    found = benchmark.pedantic(_all_blocks, args=(kern, n, FACE_THRESHOLD), rounds=1, iterations=1)
    _record(benchmark, found, truth)
    assert benchmark.extra_info["planted_found"] == len(truth)


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("n", [2_000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_iris_nn(benchmark: Any, n: int, mode: str) -> None:
    data, truth = _get("iris", n)
    kern = make_kernel("iris", data, mode)
    found = benchmark.pedantic(_all_blocks, args=(kern, n, IRIS_THRESHOLD), rounds=1, iterations=1)
    _record(benchmark, found, truth)
    if mode == "fast":
        probes = np.arange(0, n, 4)  # uniform: seeding with planted rows would bias recall up
        sel = np.isin(found[0], probes)
        rs = recall_sample(
            IrisExact(data), (found[0][sel], found[1][sel], found[2][sel]), probes, IRIS_THRESHOLD
        )
        benchmark.extra_info["pair_recall"] = rs.recall
        benchmark.extra_info["recall_exact_pairs"] = rs.exact_pairs
