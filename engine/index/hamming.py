"""Masked, rotation-tolerant Hamming kernels (numba) behind the iris index and the pairwise matcher.

Data layout. A packed iris code of ``nbytes`` bytes is zero-padded to ``W = ceil(nbytes / 8)`` uint64
words (the padding has mask 0, so it never counts). A gallery is two C-contiguous ``(n, W)`` uint64
arrays (codes, masks). A probe is prepared once per query as ``(S, W)`` rows, one per circular shift
(``shifted_rows``): these 31 x 2 x 256 bytes stay in L1 while the gallery streams past.

Score. For a shift with ``n`` bits valid in both masks and ``d`` of them different, Daugman's
normalised distance is ``HD_norm = 0.5 - (0.5 - d / n) * sqrt(n / n_typical)`` and the similarity is
``1 - HD_norm``; the best (highest) similarity over the shifts is kept, clipped to [0, 1]. ``n = 0``
gives similarity 0.0 (nothing comparable is never evidence of a match).

Why this shape. Measured on the shared 2-core Xeon (AVX-512 VPOPCNTDQ) at N = 1M, 2048-bit codes,
31 shifts: numba with an LLVM ``ctpop`` intrinsic, loop per item then per shift then per word,
compiles to ``vpopcntq`` on ymm registers; 0.15-0.19 s per probe in the quietest moments, 0.3 s and
more while the machine was shared (numpy ``bitwise_count``, same work: ~9 s). The variants tried
(shifts in vector lanes, items in vector lanes, forced 512-bit vectors via NUMBA_CPU_FEATURES, fully
unrolled words, integer-only comparison) were no faster. One popcount per word for the mask overlap
and one for the disagreements is the floor of this formulation.

Scans are split in chunks (``prange``) over numba's threads; small candidate sets are scored on the
calling thread instead, because waking numba's worker took 4-9 ms on the busy machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba as nb
import numpy as np
import numpy.typing as npt
from numba import types
from numba.extending import intrinsic

from engine.cpus import numba_threads

__all__ = [
    "KERNEL_LOCK",
    "best_scores",
    "pad_words",
    "pair_scores",
    "shift_order",
    "shifted_rows",
    "topk_scan",
]

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

_F = TypeVar("_F", bound=Callable[..., Any])


def _njit(**options: Any) -> Callable[[_F], _F]:
    """``numba.njit`` with the decorated function's own signature kept for mypy."""
    return cast(Callable[[_F], _F], nb.njit(**options))


class _KernelLock:
    """Held around every parallel kernel call. numba's parallel regions are run one at a time:
    concurrent searches gain nothing, and not every numba threading layer may be entered from
    several Python threads at once. Entering also sets the calling thread's numba thread count (it
    is per thread in numba) to the CPUs this process may use (``engine.cpus``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            nb.set_num_threads(numba_threads())
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


KERNEL_LOCK = _KernelLock()
# Probe x item comparisons below which scoring stays on the calling thread (see _best_scores_serial).
SERIAL_BELOW = 8192


def _popcount_typing(typingctx: Any, x: Any) -> Any:
    """LLVM ``ctpop`` on a uint64 (numba has no popcount builtin); becomes popcnt / vpopcntq."""
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return sig, codegen


_popcount: Any = intrinsic(_popcount_typing)


def shift_order(max_shift: int, columns: int) -> npt.NDArray[np.int64]:
    """Shifts (in columns) tried for a comparison: 0, -1, +1, -2, +2, ... up to ``max_shift``, capped
    so that no rotation is tried twice. Ties between shifts go to the first, i.e. the smallest |s|."""
    r = max(0, min(int(max_shift), (columns - 1) // 2))
    out = [0]
    for s in range(1, r + 1):
        out += [-s, s]
    return np.asarray(out, dtype=np.int64)


def pad_words(rows: U8) -> U64:
    """``(n, nbytes)`` uint8 -> ``(n, ceil(nbytes/8))`` uint64 (zero padded, C-contiguous copy)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.uint8))
    n, nbytes = rows.shape
    w = -(-nbytes // 8)
    out = np.zeros((n, w * 8), dtype=np.uint8)
    out[:, :nbytes] = rows
    return out.view(np.uint64)


def shifted_rows(code: U8, mask: U8, shifts: npt.NDArray[np.int64], bytes_per_column: int) -> tuple[U64, U64]:
    """The probe rolled by each shift (``np.roll`` by ``s * bytes_per_column`` bytes), as ``(S, W)``
    uint64 code and mask rows. A gallery item rotated by ``+s`` columns is matched at shift ``s``."""
    nbytes = code.shape[-1]
    idx = (np.arange(nbytes)[None, :] - shifts[:, None] * bytes_per_column) % nbytes
    return pad_words(code[idx]), pad_words(mask[idx])


@_njit(inline="always", fastmath=True)
def _sim(d: int, n: int, inv_n0: float) -> float:
    # Unclipped 1 - HD_norm; 0.0 when nothing is comparable.
    if n == 0:
        return 0.0
    nf = float(n)
    return float(0.5 + (0.5 - float(d) / nf) * np.sqrt(nf * inv_n0))


@_njit(inline="always", fastmath=True)
def _best(pc: Any, pm: Any, q: int, gc: Any, gm: Any, i: int, inv_n0: float) -> tuple[float, int, int]:
    """Best unclipped similarity of gallery row ``i`` over probe ``q``'s shift rows; (sim, s, n).
    Indexed in full (no ``pc[q]`` slice: a slice is a refcounted view in numba)."""
    _, S, W = pc.shape
    best = -1.0
    best_s = 0
    best_n = 0
    for s in range(S):
        d = np.uint64(0)
        n = np.uint64(0)
        for w in range(W):
            m = pm[q, s, w] & gm[i, w]
            n += _popcount(m)
            d += _popcount((pc[q, s, w] ^ gc[i, w]) & m)
        v = _sim(int(d), int(n), inv_n0)
        if v > best:
            best = v
            best_s = s
            best_n = int(n)
    return best, best_s, best_n


@_njit(inline="always")
def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


@_njit(parallel=True, nogil=True, fastmath=True, cache=True)
def _best_scores(pc: Any, pm: Any, gc: Any, gm: Any, rows: Any, inv_n0: float,
                 out_sim: Any, out_shift: Any, out_bits: Any) -> None:  # pragma: no cover - jitted
    # Chunked like _topk_scan (a prange straight over the rows compiled to ~5x slower code).
    nq = pc.shape[0]
    m = rows.shape[0]
    nch = out_sim.shape[1] if m < 64 else 64
    for c in nb.prange(nch):
        for j in range(c * m // nch, (c + 1) * m // nch):
            i = rows[j]
            for q in range(nq):
                v, s, n = _best(pc, pm, q, gc, gm, i, inv_n0)
                out_sim[q, j] = _clip01(v)
                out_shift[q, j] = s
                out_bits[q, j] = n


@_njit(nogil=True, fastmath=True, cache=True)
def _best_scores_serial(pc: Any, pm: Any, gc: Any, gm: Any, rows: Any, inv_n0: float,
                        out_sim: Any, out_shift: Any, out_bits: Any) -> None:  # pragma: no cover - jitted
    # Same as _best_scores on the calling thread: waking numba's worker costs ~4-9 ms on this busy
    # 2-core machine (measured), more than scoring a few thousand rows.
    nq = pc.shape[0]
    for j in range(rows.shape[0]):
        i = rows[j]
        for q in range(nq):
            v, s, n = _best(pc, pm, q, gc, gm, i, inv_n0)
            out_sim[q, j] = _clip01(v)
            out_shift[q, j] = s
            out_bits[q, j] = n


@_njit(nogil=True, inline="always")
def _heap_replace_root(hd: Any, hi: Any, score: Any, label: int) -> None:
    """Min-heap of fixed size (root = current k-th best): replace the root and sift down."""
    k = hd.shape[0]
    hd[0] = score
    hi[0] = label
    j = 0
    while True:
        c = 2 * j + 1
        if c >= k:
            break
        if c + 1 < k and hd[c + 1] < hd[c]:
            c += 1
        if hd[c] < hd[j]:
            hd[c], hd[j] = hd[j], hd[c]
            hi[c], hi[j] = hi[j], hi[c]
            j = c
        else:
            break


@_njit(parallel=True, nogil=True, fastmath=True, cache=True)
def _topk_scan(pc: Any, pm: Any, gc: Any, gm: Any, rows: Any, use_rows: bool, n_items: int,
               inv_n0: float, heap_d: Any, heap_i: Any) -> None:  # pragma: no cover - jitted
    # heap_d/heap_i: (chunks, nq, k), pre-filled with -inf / -1; chunk c owns its slice.
    nch = heap_d.shape[0]
    nq = pc.shape[0]
    for c in nb.prange(nch):
        lo = c * n_items // nch
        hi = (c + 1) * n_items // nch
        for j in range(lo, hi):
            i = rows[j] if use_rows else j
            for q in range(nq):
                v = np.float32(_clip01(_best(pc, pm, q, gc, gm, i, inv_n0)[0]))
                if v > heap_d[c, q, 0]:
                    _heap_replace_root(heap_d[c, q], heap_i[c, q], v, i)


@_njit(parallel=True, nogil=True, fastmath=True, cache=True)
def _pair_scores(pc: Any, pm: Any, gc: Any, gm: Any, slot: Any, item: Any, inv_n0: float,
                 out: Any) -> None:  # pragma: no cover - jitted
    for k in nb.prange(slot.shape[0]):
        out[k] = np.float32(_clip01(_best(pc, pm, slot[k], gc, gm, item[k], inv_n0)[0]))


def pair_scores(pc: U64, pm: U64, gc: U64, gm: U64, slot: I64, item: I64, n_typical: float) -> F32:
    """Similarity of arbitrary pairs in one parallel call: pair k = prepared probe ``slot[k]``
    (``pc``/``pm`` (nq, S, W)) vs gallery row ``item[k]`` (``gc``/``gm`` (n, W)); (len(slot),)
    float32 in [0, 1], the same arithmetic as :func:`best_scores`. For scattered pairs (a coarse
    shortlist per probe, N:N fusion) where one ``best_scores`` launch per probe would dominate."""
    out = np.empty(slot.shape[0], dtype=np.float32)
    if slot.size:
        with KERNEL_LOCK:
            _pair_scores(pc, pm, gc, gm, np.ascontiguousarray(slot, dtype=np.int64),
                         np.ascontiguousarray(item, dtype=np.int64), 1.0 / n_typical, out)
    return out


def best_scores(pc: U64, pm: U64, gc: U64, gm: U64, rows: I64, n_typical: float
                ) -> tuple[F32, npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Score ``nq`` prepared probes (``pc``/``pm`` of shape (nq, S, W)) against gallery ``rows``.

    Returns (sim float32 (nq, len(rows)) in [0, 1], best shift *position* in the probe's shift list,
    bits compared at that shift), all (nq, len(rows)).
    """
    nq, m = pc.shape[0], rows.shape[0]
    sim = np.empty((nq, m), dtype=np.float32)
    shift = np.empty((nq, m), dtype=np.int32)
    bits = np.empty((nq, m), dtype=np.int32)
    if nq * m <= SERIAL_BELOW:
        _best_scores_serial(pc, pm, gc, gm, rows, 1.0 / n_typical, sim, shift, bits)
    elif m:
        with KERNEL_LOCK:
            _best_scores(pc, pm, gc, gm, rows, 1.0 / n_typical, sim, shift, bits)
    return sim, shift, bits


def topk_scan(pc: U64, pm: U64, gc: U64, gm: U64, n_items: int, rows: I64 | None, k: int,
              n_typical: float) -> tuple[F32, I64]:
    """Exact top-``k`` of ``nq`` prepared probes over the first ``n_items`` gallery rows (or over
    ``rows``). Returns candidate (scores, row numbers), each (nq, chunks * k), unsorted, padded with
    -inf / -1; the caller merges them (``engine.index.topk.topk_rows``)."""
    nq = pc.shape[0]
    m = n_items if rows is None else int(rows.shape[0])
    nch = max(1, min(m, 4 * numba_threads()))
    heap_d = np.full((nch, nq, k), -np.inf, dtype=np.float32)
    heap_i = np.full((nch, nq, k), -1, dtype=np.int64)
    if m:
        sel = np.zeros(1, dtype=np.int64) if rows is None else rows
        with KERNEL_LOCK:
            _topk_scan(pc, pm, gc, gm, sel, rows is not None, m, 1.0 / n_typical, heap_d, heap_i)
    D = np.ascontiguousarray(heap_d.transpose(1, 0, 2).reshape(nq, nch * k))
    I = np.ascontiguousarray(heap_i.transpose(1, 0, 2).reshape(nq, nch * k))
    return D, I
