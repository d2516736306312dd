"""Identify on the face index (pytest-benchmark), CI-sized: N = 10k (and 100k, marked slow).

Each engine configuration is measured next to the numpy brute-force and FAISS-default baselines on
the same seeded gallery. ``extra_info`` carries rank-1 agreement with exact search and, for the
concurrent case, requests per second under 32 callers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from benchmarks.identify_common import (
    Contender,
    EngineFace,
    FaissDefault,
    Gallery,
    NumpyBrute,
    make_gallery,
    rank1_agreement,
)
from engine.index.face import FaceIndexOptions, IndexKind

K = 10
NQ = 128
SIZES = [10_000, pytest.param(100_000, marks=pytest.mark.slow)]
CONTENDERS = {
    "nasname-exact": lambda: EngineFace(FaceIndexOptions()),
    "nasname-fp16": lambda: EngineFace(FaceIndexOptions(kind=IndexKind.FP16)),
    "numpy-brute": NumpyBrute,
    "faiss-default-flat": lambda: FaissDefault("flat"),
}

_galleries: dict[int, Gallery] = {}
_reference: dict[int, np.ndarray] = {}


def gallery(n: int) -> Gallery:
    if n not in _galleries:
        _galleries[n] = make_gallery(n, 128, NQ, seed=0)
        g = _galleries[n]
        S = g.xq @ g.xb.T  # exact rank-1 reference for agreement
        _reference[n] = g.labels[np.argmax(S, axis=1)][:, None]
    return _galleries[n]


@pytest.fixture(params=list(CONTENDERS))
def contender(request: pytest.FixtureRequest) -> Iterator[tuple[str, Contender]]:
    c = CONTENDERS[request.param]()
    yield request.param, c
    c.close()


@pytest.mark.parametrize("n", SIZES)
def test_identify_single(benchmark, contender: tuple[str, Contender], n: int) -> None:
    name, c = contender
    g = gallery(n)
    c.build(g)
    labels = np.stack([c.one(j, K) for j in range(NQ)])
    agreement = rank1_agreement(labels, _reference[n])
    benchmark.extra_info.update({"n": n, "rank1_agreement": agreement})
    queries = itertools.cycle(range(NQ))
    benchmark(lambda: c.one(next(queries), K))
    assert agreement >= (0.999 if name != "nasname-fp16" else 0.99)


@pytest.mark.parametrize("n", SIZES)
def test_identify_concurrent_32(benchmark, contender: tuple[str, Contender], n: int) -> None:
    """One round = 2 * 32 requests from 32 threads; extra_info.qps = requests per second."""
    _, c = contender
    c.build(gallery(n))
    pool = ThreadPoolExecutor(32)
    requests = 2 * 32

    def round_() -> None:
        list(pool.map(lambda j: c.one(j % NQ, K), range(requests)))

    try:
        benchmark.pedantic(round_, rounds=3, warmup_rounds=1)
    finally:
        pool.shutdown()
    benchmark.extra_info.update({"n": n, "qps": requests / benchmark.stats.stats.median})
