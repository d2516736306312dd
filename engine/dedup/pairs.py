"""Candidate pairs of one modality above a similarity threshold, one block of probe rows at a time.

Positions are rows of one modality's template array (``engine.dedup.data.ModalityData``): the primary
set's rows come first (positions ``0 .. k_a-1``), the reference set's after them. A block is the probe
rows ``[lo, hi)`` of the primary set scored against every position ``j > i`` (so the primary set's
pairs are computed once each, the upper triangle, and in batch mode the reference set follows in the
same column range). Every kernel returns ``(i, j, sim)`` arrays with ``i < j``.

Exact kernels: face = blocked float32 GEMM (OpenBLAS sgemm) over column tiles, thresholded per tile;
iris = ``engine.index.hamming.best_scores`` (masked popcount over every shift, numba) over column tiles.
Fast kernels: face = FAISS IVF-Flat (inner product) top-``k`` per probe; iris = coarse-to-fine (the
shortlist kernel ``engine.index.iris_shortlist`` over sampled columns, then the exact kernel on each
probe's shortlist). Fast kernels can miss pairs: the job measures their pair recall against the exact
kernel on a sample of probe rows of the same data (``recall_sample``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.dedup.data import ModalityData
from engine.errors import InvalidInput
from engine.index.hamming import best_scores, pad_words, pair_scores, shift_order
from engine.index.iris_shortlist import coarse_gallery, coarse_probe, coarse_shortlists
from engine.iris.matcher import MatchParams

__all__ = [
    "FaceExact",
    "FaceIVF",
    "IrisCoarseToFine",
    "IrisExact",
    "PairKernel",
    "Pairs",
    "make_kernel",
    "recall_sample",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Pairs = tuple[I64, I64, F32]

# Face: (block rows x column tile) float32 score tile = 1024 x 16384 x 4 B = 64 MB at most.
FACE_BLOCK_ROWS = 1024
FACE_COL_TILE = 16384
# Iris: blocks of 128 probes (checkpoint granularity) scored 16 probes at a time: 16 probes' shift
# rows (16 x 31 x 2 x 256 B = 254 KB) stay in L2 while the columns stream past; 128 at once spill and
# measured 17% slower per pair (2.19 vs 2.56 M pairs per CPU-second, busy 2-core box). A tile of
# 16 probes x 65536 columns x 12 B of (sim, shift, bits) = 12.6 MB.
IRIS_BLOCK_ROWS = 128
IRIS_PROBE_CHUNK = 16
IRIS_COL_TILE = 65536
# float32 GEMM rounding: keep candidates this far under the threshold; fusion rescores them exactly.
FACE_SLACK = 1e-4


def _empty() -> Pairs:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)


def _cat(parts: list[Pairs]) -> Pairs:
    if not parts:
        return _empty()
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


class PairKernel(Protocol):
    """Scores probe positions ``[lo, hi)`` against positions ``j > i`` (up to the array end)."""

    block_rows: int
    exact: bool

    def block(self, lo: int, hi: int, threshold: float) -> Pairs: ...


class FaceExact:
    """Exact cosine pairs by blocked GEMM over the upper triangle."""

    exact = True

    def __init__(self, data: ModalityData, block_rows: int = FACE_BLOCK_ROWS, col_tile: int = FACE_COL_TILE):
        if data.vectors is None:
            raise InvalidInput("face kernel needs vectors", reason="INVALID_TEMPLATE")
        self.x = data.vectors
        self.block_rows = block_rows
        self.col_tile = col_tile
        # Score and mask tiles are reused: a fresh 64 MB array per tile costs page faults that
        # measured ~40% of the CPU time of the GEMM + threshold pass (busy 2-core box).
        self._scores = np.empty(0, dtype=np.float32)
        self._hits = np.empty(0, dtype=np.bool_)

    def block(self, lo: int, hi: int, threshold: float) -> Pairs:
        return self.rows(np.arange(lo, hi, dtype=np.int64), threshold)

    def _buffers(self, nq: int, w: int) -> tuple[F32, npt.NDArray[np.bool_]]:
        if self._scores.size < nq * w:
            self._scores = np.empty(nq * w, dtype=np.float32)
            self._hits = np.empty(nq * w, dtype=np.bool_)
        return self._scores[: nq * w].reshape(nq, w), self._hits[: nq * w].reshape(nq, w)

    def rows(self, probes: I64, threshold: float) -> Pairs:
        """Pairs of the given probe positions (ascending) with every later position."""
        m = self.x.shape[0]
        if probes.size == 0:
            return _empty()
        t = np.float32(threshold - FACE_SLACK)
        q = self.x[probes]
        parts: list[Pairs] = []
        for c0 in range(int(probes[0]) + 1, m, self.col_tile):
            c1 = min(m, c0 + self.col_tile)
            w = c1 - c0
            s, hit = self._buffers(q.shape[0], w)
            np.matmul(q, self.x[c0:c1].T, out=s)  # (nq, tile) sgemm
            np.greater_equal(s, t, out=hit)
            if c0 <= int(probes[-1]):  # tile overlaps the probes: keep j > i only
                hit &= np.arange(c0, c1)[None, :] > probes[:, None]
            flat = np.flatnonzero(hit)
            if flat.size:
                qi, cj = np.divmod(flat, w)
                parts.append((probes[qi], cj + c0, s.reshape(-1)[flat].copy()))
        return _cat(parts)


class IrisExact:
    """Exact masked, rotation-searched similarity (the engine's 1:1 numbers) over the upper triangle."""

    exact = True

    def __init__(
        self,
        data: ModalityData,
        params: MatchParams | None = None,
        block_rows: int = IRIS_BLOCK_ROWS,
        col_tile: int = IRIS_COL_TILE,
    ):
        if data.codes is None or data.masks is None:
            raise InvalidInput("iris kernel needs codes and masks", reason="INVALID_TEMPLATE")
        self.codes, self.masks, self.columns = data.codes, data.masks, data.columns
        self.params = params or MatchParams()
        self.bpc = self.codes.shape[1] // self.columns
        self.shifts = shift_order(self.params.max_shift, self.columns)
        self.gc, self.gm = pad_words(self.codes), pad_words(self.masks)
        self.n_typical = self.params.n_typical_for(self.codes.shape[1] * 8)
        self._roll: npt.NDArray[np.int64] | None = None
        self.block_rows = block_rows
        self.col_tile = col_tile

    def prepare(self, probes: I64) -> tuple[Any, Any]:
        """(nq, S, W) shifted probe words."""
        nq, nbytes = probes.size, self.codes.shape[1]
        if self._roll is None:  # the byte permutation of every shift (shifted_rows' convention)
            self._roll = (np.arange(nbytes)[None, :] - self.shifts[:, None] * self.bpc) % nbytes
        w = self.gc.shape[1]
        pc = pad_words(self.codes[probes][:, self._roll].reshape(-1, nbytes)).reshape(nq, -1, w)
        pm = pad_words(self.masks[probes][:, self._roll].reshape(-1, nbytes)).reshape(nq, -1, w)
        return pc, pm

    def block(self, lo: int, hi: int, threshold: float) -> Pairs:
        return self.rows(np.arange(lo, hi, dtype=np.int64), threshold)

    def rows(self, probes: I64, threshold: float) -> Pairs:
        m = self.codes.shape[0]
        if probes.size == 0:
            return _empty()
        parts: list[Pairs] = []
        for p0 in range(0, probes.size, IRIS_PROBE_CHUNK):
            chunk = probes[p0 : p0 + IRIS_PROBE_CHUNK]
            pc, pm = self.prepare(chunk)
            for c0 in range(int(chunk[0]) + 1, m, self.col_tile):
                c1 = min(m, c0 + self.col_tile)
                cols = np.arange(c0, c1, dtype=np.int64)
                s, _, _ = best_scores(pc, pm, self.gc, self.gm, cols, self.n_typical)
                hit = (s >= threshold) & (cols[None, :] > chunk[:, None])
                qi, cj = np.nonzero(hit)
                if qi.size:
                    parts.append((chunk[qi], cols[cj], s[qi, cj]))
        return _cat(parts)

    def score_pairs(self, i: I64, j: I64, chunk: int = 4096) -> F32:
        """Exact similarity of each pair (i[k], j[k]): the probes are prepared once per chunk of
        distinct ``i`` and every pair is scored in one parallel kernel call
        (``engine.index.hamming.pair_scores``)."""
        out = np.empty(i.size, dtype=np.float32)
        if i.size == 0:
            return out
        probes, slot = np.unique(i, return_inverse=True)
        slot = slot.reshape(-1)
        for lo in range(0, probes.size, chunk):
            hi = min(probes.size, lo + chunk)
            sel = np.nonzero((slot >= lo) & (slot < hi))[0]
            pc, pm = self.prepare(probes[lo:hi])
            out[sel] = pair_scores(pc, pm, self.gc, self.gm, slot[sel] - lo, j[sel], self.n_typical)
        return out


class IrisCoarseToFine:
    """Coarse shortlist (256 bits of evenly spread columns, every ``coarse_shift_step``-th shift) of
    ``shortlist`` positions per probe among ``j > lo``, then exact rescoring of the shortlist. Misses
    a pair when the mate is not in the probe's coarse shortlist (measured, never assumed)."""

    exact = False

    def __init__(
        self,
        data: ModalityData,
        params: MatchParams | None = None,
        *,
        shortlist: int = 16,
        coarse_shift_step: int = 2,
        block_rows: int = 128,
    ):
        self.exact_kernel = IrisExact(data, params)
        ek = self.exact_kernel
        self.coarse_shifts = ek.shifts[ek.shifts % coarse_shift_step == 0]
        self.cg, self.cm = coarse_gallery(ek.codes, ek.masks, ek.columns, ek.bpc)
        self.shortlist = shortlist
        self.block_rows = block_rows

    def block(self, lo: int, hi: int, threshold: float) -> Pairs:
        ek = self.exact_kernel
        m = ek.codes.shape[0]
        hi = min(hi, m - 1)
        if hi <= lo:
            return _empty()
        probes = np.arange(lo, hi, dtype=np.int64)
        prepared = [
            coarse_probe(ek.codes[i], ek.masks[i], self.coarse_shifts, ek.columns, ek.bpc)
            for i in probes.tolist()
        ]
        pcT = np.stack([p[0] for p in prepared])
        pmT = np.stack([p[1] for p in prepared])
        cand_rows = np.arange(lo + 1, m, dtype=np.int64)
        k = min(self.shortlist, cand_rows.size)
        # per probe: row numbers of (at least) its k best rows by coarse score
        lists = coarse_shortlists(pcT, pmT, self.cg, self.cm, 0, cand_rows, k)
        qi = np.repeat(probes, [len(x) for x in lists])
        cj = np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)
        keep = cj > qi
        qi, cj = qi[keep], cj[keep]
        s = ek.score_pairs(qi, cj)
        hit = s >= threshold
        return qi[hit], cj[hit], s[hit]


class FaceIVF:
    """FAISS IVF-Flat (inner product), ``nprobe`` of ``nlist`` lists, top-``k`` per probe."""

    exact = False

    def __init__(self, data: ModalityData, *, k: int = 32, nprobe: int = 16, block_rows: int = 4096):
        import faiss

        if data.vectors is None:
            raise InvalidInput("face kernel needs vectors", reason="INVALID_TEMPLATE")
        x = data.vectors
        n, d = x.shape
        nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
        quantizer = faiss.IndexFlatIP(d)
        self.index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        # Deterministic training sample (resume must rebuild the same index).
        rng = np.random.default_rng(0)
        train = x[np.sort(rng.choice(n, size=min(n, 256 * nlist), replace=False))]
        self.index.train(train)
        self.index.add(x)
        self.index.nprobe = min(nprobe, nlist)
        self.x = x
        self.k = min(k, n)
        self.block_rows = block_rows

    def block(self, lo: int, hi: int, threshold: float) -> Pairs:
        sims, idx = self.index.search(self.x[lo:hi], self.k)
        qi = np.repeat(np.arange(lo, hi, dtype=np.int64), self.k)
        cj, s = idx.reshape(-1).astype(np.int64), sims.reshape(-1).astype(np.float32)
        keep = (cj > qi) & (s >= threshold - FACE_SLACK)
        return qi[keep], cj[keep], s[keep]


def make_kernel(kind: str, data: ModalityData, mode: str, params: MatchParams | None = None) -> PairKernel:
    """The kernel of a modality ``kind`` (face / iris) for ``mode`` (exact / fast)."""
    if mode not in ("exact", "fast"):
        raise InvalidInput(f"mode must be exact or fast, got {mode!r}", reason="INVALID_REQUEST")
    if kind == "face":
        return FaceExact(data) if mode == "exact" or len(data) < 2048 else FaceIVF(data)
    return IrisExact(data, params) if mode == "exact" else IrisCoarseToFine(data, params)


@dataclass(frozen=True)
class RecallSample:
    """Pairs the exact kernel finds from the sampled probe rows, and how many of them the fast one found."""

    exact_pairs: int
    found: int

    @property
    def recall(self) -> float:
        return 1.0 if self.exact_pairs == 0 else self.found / self.exact_pairs


def recall_sample(
    exact: FaceExact | IrisExact, fast_pairs: Pairs, probes: I64, threshold: float
) -> RecallSample:
    """Pair recall of a fast kernel's output ``fast_pairs`` (of a block containing ``probes``) against
    the exact kernel on the same probes and threshold."""
    ei, ej, es = exact.rows(np.sort(probes), threshold)
    keep = es >= threshold
    want = set(zip(ei[keep].tolist(), ej[keep].tolist(), strict=True))
    fi, fj, fs = fast_pairs
    got = set(zip(fi[fs >= threshold].tolist(), fj[fs >= threshold].tolist(), strict=True))
    return RecallSample(len(want), len(want & got))
