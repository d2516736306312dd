"""Top-k selection over blocks of similarity scores (numpy, and one compiled streaming kernel).

The scan kernels produce scores block by block; keeping a running top-k per query with a threshold
(the current k-th best) means that after the first rows almost nothing passes the ``>`` test, so the
per-block cost is one comparison per score (``RunningTopK``, a compiled streaming pass).
``topk_rows`` selects over one whole score matrix at once (merges of shard results).

Shapes: ``D`` float32 (nq, k) sorted descending per row, ``I`` int64 (nq, k); padding is ``-inf`` /
``-1``. Ties at the k-th place are resolved arbitrarily (callers tolerate that, as FAISS does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numba as nb
import numpy as np
import numpy.typing as npt

__all__ = ["RunningTopK", "topk_rows"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def topk_rows(S: F32, k: int, ids: I64 | None = None) -> tuple[F32, I64]:
    """Top-``k`` of every row of ``S`` (nq, m): scores and column numbers (or ``ids[col]``), sorted
    descending, padded with ``-inf`` / ``-1`` when ``m < k``. ``-inf`` scores are padding too."""
    nq, m = S.shape
    kk = min(k, m)
    D = np.full((nq, k), -np.inf, dtype=np.float32)
    I = np.full((nq, k), -1, dtype=np.int64)
    if kk == 0 or nq == 0:
        return D, I
    if kk < m:
        part = np.argpartition(S, m - kk, axis=1)[:, m - kk :]
    else:
        part = np.broadcast_to(np.arange(m), (nq, m))
    vals = np.take_along_axis(S, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    D[:, :kk] = vals
    I[:, :kk] = cols if ids is None else ids[cols]
    I[:, :kk][~np.isfinite(vals)] = -1
    return D, I


@nb.njit(nogil=True, cache=True)  # type: ignore[misc]
def _stream_block(S: F32, base: int, D: F32, I: I64) -> None:  # pragma: no cover - compiled
    """Fold the scores ``S`` (m, nq) of rows ``base .. base+m-1`` into every query's sorted top-k.

    One pass over the block in memory order: a score enters only if it beats that query's current
    k-th best, which after the first few hundred rows almost never happens (about k*ln(m/k)
    insertions per query over m rows of random order), so the cost is one compare per score."""
    m, nq = S.shape
    k = D.shape[1]
    thr = D[:, k - 1].copy()
    for i in range(m):
        for j in range(nq):
            v = S[i, j]
            if v > thr[j]:
                p = k - 1
                while p > 0 and D[j, p - 1] < v:  # equal scores keep the earlier row first
                    D[j, p] = D[j, p - 1]
                    I[j, p] = I[j, p - 1]
                    p -= 1
                D[j, p] = v
                I[j, p] = base + i
                thr[j] = D[j, k - 1]


_stream_block_typed = cast(Callable[[F32, int, F32, I64], None], _stream_block)


class RunningTopK:
    """Accumulates the top-``k`` of ``nq`` queries over successive score blocks.

    ``add(S, base)`` takes a block ``S`` (m, nq) -- the layout ``block @ xq.T`` produces -- whose
    row ``i`` holds every query's score of scanned row ``base + i``. ``result()`` returns (D, I)
    with I as *row numbers* of the scanned array.

    Why a compiled streaming kernel: with numpy, the first blocks (threshold still low) needed an
    argpartition per query and later blocks a compare, a count and a nonzero pass each; the profile
    of 32 concurrent callers at 1M put ~27% of the busy time there. One fused pass reads the block
    once (``benchmarks/bench_topk.py`` measures both side by side).
    """

    def __init__(self, nq: int, k: int) -> None:
        self.k = k
        self.D = np.full((nq, k), -np.inf, dtype=np.float32)
        self.I = np.full((nq, k), -1, dtype=np.int64)

    def add(self, S: F32, base: int) -> None:
        if S.shape[0] == 0:
            return
        if S.ndim != 2 or S.shape[1] != self.D.shape[0]:
            raise ValueError("score block must be (rows, queries)")
        _stream_block_typed(np.ascontiguousarray(S, dtype=np.float32), int(base), self.D, self.I)

    def result(self) -> tuple[F32, I64]:
        I = self.I.copy()
        I[~np.isfinite(self.D)] = -1
        return self.D.copy(), I
