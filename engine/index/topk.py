"""Top-k selection over blocks of similarity scores (plain numpy, no Python loop per element).

The scan kernels produce scores block by block; keeping a running top-k per query with a threshold
(the current k-th best) means that after the first block almost nothing passes the ``>`` test, so the
per-block cost is one vectorised comparison instead of an ``argpartition`` of the whole block.

Shapes: ``D`` float32 (nq, k) sorted descending per row, ``I`` int64 (nq, k); padding is ``-inf`` /
``-1``. Ties at the k-th place are resolved arbitrarily (callers tolerate that, as FAISS does).
"""

from __future__ import annotations

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


class RunningTopK:
    """Accumulates the top-``k`` of ``nq`` queries over successive score blocks.

    ``add(S, base)`` takes a block ``S`` (nq, m) whose columns are rows ``base .. base+m-1`` of the
    scanned array. ``result()`` returns (D, I) with I as *row numbers* of the scanned array.
    """

    def __init__(self, nq: int, k: int) -> None:
        self.k = k
        self.D = np.full((nq, k), -np.inf, dtype=np.float32)
        self.I = np.full((nq, k), -1, dtype=np.int64)
        # k-th best so far per query: a candidate must beat it strictly to matter.
        self.thr = np.full((nq, 1), -np.inf, dtype=np.float32)

    def add(self, S: F32, base: int) -> None:
        nq, m = S.shape
        if m == 0:
            return
        hit = np.greater(S, self.thr)
        n_hit = int(np.count_nonzero(hit))
        if n_hit == 0:
            return
        if n_hit > 4 * self.k * nq and m > self.k:
            # Early blocks (threshold still low): reduce each row to its own top-k first.
            bD, bI = topk_rows(S, self.k)
            valid = bI >= 0
            bI = np.where(valid, bI + base, -1)
            self._merge_dense(bD, bI)
            return
        r, c = np.nonzero(hit)
        self._merge_sparse(r, S[r, c], c.astype(np.int64) + base)

    def _merge_dense(self, bD: F32, bI: I64) -> None:
        D = np.concatenate([self.D, bD], axis=1)
        I = np.concatenate([self.I, bI], axis=1)
        self._keep(D, I)

    def _merge_sparse(self, r: npt.NDArray[np.intp], vals: F32, rows: I64) -> None:
        nq = self.D.shape[0]
        # Scatter the few candidates into a (nq, w) pad next to the current best, then keep top-k.
        counts = np.bincount(r, minlength=nq)
        w = int(counts.max())
        padD = np.full((nq, w), -np.inf, dtype=np.float32)
        padI = np.full((nq, w), -1, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(r.size) - starts[r]  # np.nonzero returns r sorted, so this is the slot
        padD[r, pos] = vals
        padI[r, pos] = rows
        self._merge_dense(padD, padI)

    def _keep(self, D: F32, I: I64) -> None:
        k = self.k
        if D.shape[1] > k:
            part = np.argpartition(-D, k - 1, axis=1)[:, :k]
            D = np.take_along_axis(D, part, axis=1)
            I = np.take_along_axis(I, part, axis=1)
        order = np.argsort(-D, axis=1, kind="stable")
        self.D = np.ascontiguousarray(np.take_along_axis(D, order, axis=1))
        self.I = np.ascontiguousarray(np.take_along_axis(I, order, axis=1))
        self.thr = self.D[:, k - 1 : k].copy()

    def result(self) -> tuple[F32, I64]:
        I = self.I.copy()
        I[~np.isfinite(self.D)] = -1
        return self.D.copy(), I
