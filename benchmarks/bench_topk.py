"""Running top-k over a scan's score blocks: the compiled streaming pass (``RunningTopK``) next to
the plain numpy way (an ``argpartition`` of each block, merged with the best so far), on the blocks
a 32-query batch over 256k rows of 128-d unit vectors produces (pytest-benchmark).

    .venv/bin/pytest benchmarks/bench_topk.py

Compare the medians of ``streaming`` and ``numpy``: the selection's share of a batched scan.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine.index.flat import BLOCK_ROWS
from engine.index.topk import RunningTopK, topk_rows

K = 10
NQ = 32
ROWS = 16 * BLOCK_ROWS // 4  # 64k rows: 4 blocks


def _blocks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    xq = rng.standard_normal((NQ, 128)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    out = []
    for _ in range(0, ROWS, BLOCK_ROWS):
        xb = rng.standard_normal((BLOCK_ROWS, 128)).astype(np.float32)
        xb /= np.linalg.norm(xb, axis=1, keepdims=True)
        out.append(np.ascontiguousarray(xb @ xq.T))  # (m, nq), as engine.index.flat.scan_ip makes
    return out


def _streaming(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    top = RunningTopK(NQ, K)
    for b, S in enumerate(blocks):
        top.add(S, b * BLOCK_ROWS)
    return top.result()


def _numpy(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    D = np.full((NQ, K), -np.inf, dtype=np.float32)
    I = np.full((NQ, K), -1, dtype=np.int64)
    for b, S in enumerate(blocks):
        bD, bI = topk_rows(S.T, K)
        D, cols = topk_rows(np.concatenate([D, bD], axis=1), K)
        both = np.concatenate([I, bI + b * BLOCK_ROWS], axis=1)
        I = np.take_along_axis(both, cols, axis=1)
    return D, I


CONTENDERS: dict[str, Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]]] = {
    "streaming": _streaming, "numpy": _numpy,
}


@pytest.mark.parametrize("how", list(CONTENDERS))
def test_running_topk(benchmark, how: str) -> None:
    blocks = _blocks()
    D, _ = benchmark.pedantic(CONTENDERS[how], args=(blocks,), rounds=15, warmup_rounds=2)
    ref_D, _ = _numpy(blocks)
    np.testing.assert_allclose(D, ref_D)  # the same scores chosen, whichever the way
    benchmark.extra_info.update(rows=ROWS, queries=NQ, k=K)
