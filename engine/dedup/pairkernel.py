"""Exact iris similarity of arbitrary (probe, item) pairs in one parallel kernel call.

``engine.index.hamming.best_scores`` scores probes against one shared list of gallery rows; scoring a
coarse shortlist (different rows per probe) or the fusion stage's scattered pairs through it costs one
parallel-region launch per probe, which dominated the fast mode (measured: 2k probes, ~30 ms each on
the busy 2-core box). This kernel takes the prepared shift rows of a set of probes and a flat list of
(probe slot, item row) pairs; the per-pair arithmetic is the index's own ``_best`` / ``_clip01``, so
the numbers are identical to the 1:N kernel and the 1:1 matcher.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

from engine.index.hamming import KERNEL_LOCK, _best, _clip01

__all__ = ["pair_scores"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


@nb.njit(parallel=True, nogil=True, fastmath=True, cache=True)
def _pair_scores(
    pc: Any, pm: Any, gc: Any, gm: Any, slot: Any, item: Any, inv_n0: float, out: Any
) -> None:  # pragma: no cover - jitted
    for k in nb.prange(slot.shape[0]):
        q = slot[k]
        out[k] = np.float32(_clip01(_best(pc, pm, q, gc, gm, item[k], inv_n0)[0]))


def pair_scores(pc: U64, pm: U64, gc: U64, gm: U64, slot: I64, item: I64, n_typical: float) -> F32:
    """Similarity of pair k = prepared probe ``slot[k]`` (``pc``/``pm`` (nq, S, W)) vs gallery row
    ``item[k]`` (``gc``/``gm`` (n, W)). Returns (len(slot),) float32 in [0, 1]."""
    out = np.empty(slot.shape[0], dtype=np.float32)
    if slot.size:
        with KERNEL_LOCK:
            _pair_scores(
                pc,
                pm,
                gc,
                gm,
                np.ascontiguousarray(slot, dtype=np.int64),
                np.ascontiguousarray(item, dtype=np.int64),
                1.0 / n_typical,
                out,
            )
    return out
