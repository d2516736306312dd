"""Coarse shortlist stage of the fast iris search: a few sampled columns, every shift, masked.

A gallery item's *coarse code* is its bytes at ``coarse_columns`` angular columns spread evenly around
the iris (every ``columns / coarse_columns``-th column), with the same columns of its mask. A probe is
prepared for every shift ``s`` by taking its columns ``c - s`` (the same roll convention as the exact
matcher), so rotation is still searched in steps of one column, over far fewer bits: 32 columns x 8
bits = 256 bits instead of 2048. Iris bits are strongly correlated along the angle (Daugman measures
~249 degrees of freedom in 2048 bits), so columns far apart carry most of the information of the whole
code; the exact masked rescoring of the shortlist (``engine.index.hamming``) restores exact scores.

Coarse score per shift: ``(n - 2d) / sqrt(n)`` over the ``n`` mutually valid coarse bits with ``d``
disagreements, i.e. Daugman's normalised deviation from 0.5 (rank-equivalent to ``1 - HD_norm``),
maximised over shifts. The kernel puts the shifts in vector lanes (no horizontal sum per shift).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

from engine.cpus import numba_threads
from engine.index.hamming import KERNEL_LOCK, _njit, _popcount

__all__ = ["coarse_columns_of", "coarse_gallery", "coarse_probe", "coarse_shortlists"]

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

LANES = 8  # shifts are padded to a multiple of this (padding lanes have mask 0 -> score 0)
COARSE_BYTES = 32  # 256 bits = 4 uint64 words: the kernel is written for exactly four words


def coarse_columns_of(columns: int, bytes_per_column: int) -> npt.NDArray[np.int64]:
    """The sampled column numbers, evenly spread: as many whole columns as fit in 32 bytes."""
    m = max(1, min(columns, COARSE_BYTES // bytes_per_column))
    return (np.arange(m, dtype=np.int64) * columns) // m


def _take(picked: U8) -> U64:
    """Picked bytes (..., <= 32) zero padded to exactly 32 bytes -> (..., 4) uint64."""
    out = np.zeros((*picked.shape[:-1], COARSE_BYTES), dtype=np.uint8)
    out[..., : picked.shape[-1]] = picked
    return out.view(np.uint64)


def _byte_index(cols: npt.NDArray[np.int64], bytes_per_column: int) -> npt.NDArray[np.int64]:
    per = min(bytes_per_column, COARSE_BYTES)  # a column wider than 32 bytes: its first 32 bytes
    return (cols[..., :, None] * bytes_per_column + np.arange(per)).reshape(*cols.shape[:-1], -1)


def coarse_gallery(codes: U8, masks: U8, columns: int, bytes_per_column: int) -> tuple[U64, U64]:
    """Coarse (n, 4) uint64 codes and masks of gallery rows (n, nbytes) uint8."""
    idx = _byte_index(coarse_columns_of(columns, bytes_per_column), bytes_per_column)
    return _take(codes[:, idx]), _take(masks[:, idx])


def coarse_probe(code: U8, mask: U8, shifts: npt.NDArray[np.int64], columns: int, bytes_per_column: int
                 ) -> tuple[U64, U64]:
    """Coarse probe rows for every shift, *transposed* to (4, S_padded) uint64 (shifts in lanes)."""
    cols = coarse_columns_of(columns, bytes_per_column)
    src_cols = (cols[None, :] - shifts[:, None]) % columns  # (S, m): probe column seen at each sample
    idx = _byte_index(src_cols, bytes_per_column)  # (S, bytes)
    pc, pm = _take(code[idx]), _take(mask[idx])  # (S, 4)
    sp = -(-len(shifts) // LANES) * LANES
    outc = np.zeros((4, sp), dtype=np.uint64)
    outm = np.zeros((4, sp), dtype=np.uint64)
    outc[:, : len(shifts)] = pc.T
    outm[:, : len(shifts)] = pm.T
    return outc, outm


NBINS = 1024  # score histogram: a/sqrt(n) lies in [-16, 16] for 256 bits; bins of 1/32
_BIN_SCALE = NBINS / 32.0


@_njit(parallel=True, nogil=True, fastmath=True, cache=True)
def _coarse_scan(pcT: Any, pmT: Any, gc: Any, gm: Any, rows: Any, use_rows: bool, n_items: int,
                 scores: Any, hist: Any) -> None:  # pragma: no cover - jitted
    # pcT/pmT: (nq, 4, SP); gc/gm: (n, 4); scores (nq, n_items); hist (chunks, nq, NBINS) zeroed.
    # The four words are written out so that the loop over shifts vectorises with every count in
    # registers. Selection is by histogram threshold, not a heap: one increment per item, no branches.
    nch = hist.shape[0]
    nq, _, SP = pcT.shape
    for c in nb.prange(nch):
        lo = c * n_items // nch
        hi = (c + 1) * n_items // nch
        tmp = np.empty(LANES, dtype=np.float32)
        for j in range(lo, hi):
            i = rows[j] if use_rows else j
            g0, g1, g2, g3 = gc[i, 0], gc[i, 1], gc[i, 2], gc[i, 3]
            k0, k1, k2, k3 = gm[i, 0], gm[i, 1], gm[i, 2], gm[i, 3]
            for q in range(nq):
                # Full 3-D indexing, no per-item slices (a slice is a refcounted view in numba).
                best = np.float32(-16.0)
                for blk in range(SP // LANES):
                    # Constant trip count: LLVM vectorises it whole, with no remainder loop.
                    for lane in range(LANES):
                        s = blk * LANES + lane
                        m0 = pmT[q, 0, s] & k0
                        m1 = pmT[q, 1, s] & k1
                        m2 = pmT[q, 2, s] & k2
                        m3 = pmT[q, 3, s] & k3
                        n = _popcount(m0) + _popcount(m1) + _popcount(m2) + _popcount(m3)
                        d = (_popcount((pcT[q, 0, s] ^ g0) & m0) + _popcount((pcT[q, 1, s] ^ g1) & m1)
                             + _popcount((pcT[q, 2, s] ^ g2) & m2) + _popcount((pcT[q, 3, s] ^ g3) & m3))
                        nf = np.float32(n)
                        # Scratch row, then a separate max: LLVM vectorises the loop only so.
                        tmp[lane] = (nf - np.float32(2.0) * np.float32(d)) / np.sqrt(nf + np.float32(1e-3))
                    for lane in range(LANES):
                        best = max(best, tmp[lane])
                scores[q, j] = best
                b = min(NBINS - 1, max(0, int((best + np.float32(16.0)) * np.float32(_BIN_SCALE))))
                hist[c, q, b] += 1


def coarse_shortlists(pcT: U64, pmT: U64, gc: U64, gm: U64, n_items: int, rows: I64 | None, K: int
                      ) -> list[I64]:
    """Gallery row numbers of at least ``min(K, m)`` best rows by coarse score, for each of ``nq``
    probes (``pcT``/``pmT``: (nq, 4, SP) from ``coarse_probe``): the rows whose score reaches the
    histogram bin where the count from the top first reaches ``K`` (so a few more than K)."""
    nq = pcT.shape[0]
    m = n_items if rows is None else int(rows.shape[0])
    if m == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(nq)]
    nch = max(1, min(m, 2 * numba_threads()))
    scores = np.empty((nq, m), dtype=np.float32)
    hist = np.zeros((nch, nq, NBINS), dtype=np.int64)
    sel = np.zeros(1, dtype=np.int64) if rows is None else rows
    with KERNEL_LOCK:
        _coarse_scan(pcT, pmT, gc, gm, sel, rows is not None, m, scores, hist)
    from_top = np.cumsum(hist.sum(axis=0)[:, ::-1], axis=1)  # (nq, NBINS): count in bins >= NBINS-1-x
    out = []
    for q in range(nq):
        top_bin = NBINS - 1 - int(np.searchsorted(from_top[q], min(K, m)))
        edge = np.float32(top_bin / _BIN_SCALE - 16.0 - 1e-4)  # a hair low: keep the whole bin
        pos = np.flatnonzero(scores[q] >= edge).astype(np.int64)
        out.append(pos if rows is None else rows[pos])
    return out
