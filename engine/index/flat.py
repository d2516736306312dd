"""Exact inner-product search over a contiguous float32 array (numpy/OpenBLAS), no FAISS.

Why not ``faiss.IndexFlatIP``: measured on the target 2-core box (1M x 128, faiss-cpu 1.15), FAISS
scans a single query on one thread (~45 ms) and keeps batches with nq*d < 128000 off BLAS. Here a
single query is one OpenBLAS ``sgemv`` over the whole array (threaded, memory-bound, ~16-18 ms), and
a batch is ``sgemm`` over row blocks that stay in cache, followed by a threshold-pruned running
top-k (``engine.index.topk``). Both release the GIL, so concurrent readers really run in parallel.

Sharding (``FaceIndexOptions.exact_shards``, default one per CPU): the rows are split into contiguous
ranges scanned by that many threads, with numpy's OpenBLAS set to ONE thread process-wide (OpenBLAS
has no per-call setting). Measured on the quiet 2-core box, 1M x 128, 32 queries per batch: 1.96
ms/query sharded vs 2.6 with OpenBLAS's own threads; single query 17 vs 16 ms. On the busy shared
box (load ~18) the difference is dramatic: at 20k, single query p50 0.7 ms sharded vs 36 ms, because
OpenBLAS's (and OpenMP's) worker threads spin-wait for each other when the CPUs are oversubscribed.
A server process should not use multi-threaded BLAS from many request threads anyway.

Rows live in one contiguous array with amortised growth; removal moves the last row into the hole
(O(1), no tombstones), so a scan never reads dead rows. Per-row overhead: the int64 label plus one
dict entry (label -> row), well under 1 KiB.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.index.blas import set_openblas_threads
from engine.index.fp16 import half_to_float
from engine.index.topk import RunningTopK, topk_rows

__all__ = ["DenseStore", "ExactBackend", "scan_ip", "scan_ip_sharded"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

# Rows per sgemm block in a batched scan: 16k x 128 x 4 B = 8 MB of base vectors and a (16k, nq)
# score block, a good fit for the 2 MB-per-core L2 + large L3 of the target CPU (measured 8k-32k
# equally good; 128k+ is slower).
BLOCK_ROWS = 16384


def scan_ip(xb: F32 | npt.NDArray[np.uint16], xq: F32, k: int,
            mask: Mask | list[Mask | None] | None = None) -> tuple[F32, I64]:
    """Exact top-``k`` inner products of ``xq`` (nq, d) against ``xb`` (n, d).

    Returns (D, R): similarities sorted descending and *row numbers* of ``xb`` (-1 / -inf padding).
    ``mask`` (n,) bool keeps only rows where it is True, for every query; a list gives one mask (or
    None) per query. ``xb`` may also hold IEEE half floats as uint16 (the fp16 kind's FAISS codes):
    each block is then widened to float32 in cache (``engine.index.fp16``) before its sgemm.
    """
    nq = xq.shape[0]
    n = xb.shape[0]
    top = RunningTopK(nq, k)
    if n == 0 or nq == 0:
        return top.result()
    half = xb.dtype == np.uint16
    if nq == 1 and not half:
        # One query: a single sgemv reads the base once at full memory bandwidth.
        s = xb @ xq[0]
        m0 = mask[0] if isinstance(mask, list) else mask
        if m0 is not None:
            s[~m0] = -np.inf
        top.add(s[:, None], 0)
        return top.result()
    xqT = np.ascontiguousarray(xq.T)
    scratch = np.empty((min(n, BLOCK_ROWS), xb.shape[1]), dtype=np.float32) if half else None
    for lo in range(0, n, BLOCK_ROWS):
        hi = min(n, lo + BLOCK_ROWS)
        if scratch is not None:
            block = scratch[: hi - lo]
            half_to_float(xb[lo:hi], block)  # type: ignore[arg-type]
        else:
            block = xb[lo:hi]  # type: ignore[assignment]
        # (m, nq) layout: measured ~20% faster than xq @ xb.T for small nq with OpenBLAS.
        S = block @ xqT
        if isinstance(mask, list):
            for j, m in enumerate(mask):
                if m is not None:
                    S[~m[lo:hi], j] = -np.inf
        elif mask is not None:
            S[~mask[lo:hi]] = -np.inf
        top.add(S, lo)
    return top.result()


def scan_ip_sharded(pool: ThreadPoolExecutor, shards: int, xb: F32 | npt.NDArray[np.uint16], xq: F32,
                    k: int,
                    mask: Mask | list[Mask | None] | None = None) -> tuple[F32, I64]:
    """``scan_ip`` split into ``shards`` contiguous row ranges scanned in ``pool`` threads, merged.
    Meant for single-threaded BLAS (see ``engine.index.blas``): the shards are the parallelism."""
    n = xb.shape[0]
    if shards < 2 or n < 2 * BLOCK_ROWS:
        return scan_ip(xb, xq, k, mask)
    bounds = np.linspace(0, n, shards + 1).astype(np.int64)

    def part(i: int) -> tuple[F32, I64]:
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        if isinstance(mask, list):
            m: Mask | list[Mask | None] | None = [None if a is None else a[lo:hi] for a in mask]
        else:
            m = None if mask is None else mask[lo:hi]
        D, R = scan_ip(xb[lo:hi], xq, k, m)
        return D, np.where(R >= 0, R + lo, -1)

    parts = list(pool.map(part, range(shards)))
    D = np.concatenate([p[0] for p in parts], axis=1)
    R = np.concatenate([p[1] for p in parts], axis=1)
    Dk, cols = topk_rows(D, k)
    Rk = np.where(cols >= 0, np.take_along_axis(R, np.maximum(cols, 0), axis=1), -1)
    return Dk, Rk


class DenseStore:
    """Contiguous (n, d) rows of one dtype with their int64 labels; O(1) add, replace and remove."""

    def __init__(self, d: int, dtype: type[np.floating] = np.float32, capacity: int = 1024) -> None:
        self.d = d
        self._x = np.empty((max(1, capacity), d), dtype=dtype)
        self._labels = np.empty(max(1, capacity), dtype=np.int64)
        self._n = 0
        self._row: dict[int, int] = {}

    @classmethod
    def adopt(cls, labels: I64, X: npt.NDArray[np.floating]) -> DenseStore:
        """A store that takes ownership of ``X`` (n, d) and ``labels`` (n,) as they are (no copy: a
        1M x 128 snapshot opens without a second 512 MB buffer). Raises ValueError if inconsistent."""
        if X.ndim != 2 or labels.shape != (X.shape[0],):
            raise ValueError("vectors and labels do not match")
        store = cls(X.shape[1], X.dtype.type, capacity=1)
        store._x = np.require(X, requirements=["C", "W"])
        store._labels = np.require(labels, requirements=["C", "W"])
        store._n = X.shape[0]
        store._row = dict(zip(labels.tolist(), range(X.shape[0]), strict=True))
        if len(store._row) != store._n:
            raise ValueError("duplicate labels")
        return store

    def __len__(self) -> int:
        return self._n

    @property
    def xb(self) -> npt.NDArray[np.floating]:
        """View of the live rows (n, d); invalidated by the next add/remove."""
        return self._x[: self._n]

    @property
    def labels(self) -> I64:
        """View of the live labels (n,), row-aligned with ``xb``."""
        return self._labels[: self._n]

    def _reserve(self, n: int) -> None:
        if n <= self._x.shape[0]:
            return
        cap = max(n, int(self._x.shape[0] * 1.5) + 1)
        x = np.empty((cap, self.d), dtype=self._x.dtype)
        x[: self._n] = self._x[: self._n]
        lab = np.empty(cap, dtype=np.int64)
        lab[: self._n] = self._labels[: self._n]
        self._x, self._labels = x, lab

    def add(self, labels: I64, X: npt.NDArray[np.floating]) -> None:
        """Add rows; a label already present has its row overwritten. Labels must be unique."""
        lab = labels.tolist()
        existing = [i for i, label in enumerate(lab) if label in self._row]
        if existing:
            rows = [self._row[lab[i]] for i in existing]
            self._x[rows] = X[existing]
            keep = np.ones(len(lab), dtype=bool)
            keep[existing] = False
            labels, X = labels[keep], X[keep]
            lab = labels.tolist()
        m = len(lab)
        if m == 0:
            return
        self._reserve(self._n + m)
        self._x[self._n : self._n + m] = X
        self._labels[self._n : self._n + m] = labels
        self._row.update(zip(lab, range(self._n, self._n + m), strict=True))
        self._n += m

    def remove(self, labels: I64) -> int:
        """Remove the given labels (unknown ones ignored). Returns how many were removed."""
        removed = 0
        for label in labels.tolist():
            row = self._row.pop(label, None)
            if row is None:
                continue
            last = self._n - 1
            if row != last:
                moved = int(self._labels[last])
                self._x[row] = self._x[last]
                self._labels[row] = moved
                self._row[moved] = row
            self._n = last
            removed += 1
        return removed

    def rows_of(self, labels: I64) -> npt.NDArray[np.intp]:
        """Row of each label, -1 for labels not present."""
        get = self._row.get
        return np.fromiter((get(label, -1) for label in labels.tolist()), dtype=np.intp, count=len(labels))

    def mask_of(self, allowed: I64) -> Mask:
        """(n,) bool: rows whose label is in ``allowed`` (vectorised; numpy picks a table lookup when
        labels are dense record ids)."""
        return np.isin(self.labels, allowed)

    def shrink(self) -> None:
        """Release spare capacity (after bulk removal or before a long idle period)."""
        if self._x.shape[0] > max(1024, 2 * self._n):
            self._x = self._x[: max(1, self._n)].copy()
            self._labels = self._labels[: max(1, self._n)].copy()


class ExactBackend:
    """Exact float32 search over a ``DenseStore`` (see ``engine.index.flat``)."""

    def __init__(self, d: int, shards: int = 0) -> None:
        self.store = DenseStore(d, np.float32)
        self.shards = shards
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _scan(self, xq: F32, k: int, mask: Mask | list[Mask | None] | None) -> tuple[F32, I64]:
        if self.shards >= 2:
            with self._pool_lock:
                if self._pool is None:
                    # The shard threads are the parallelism; small galleries are scanned on one
                    # thread, which also keeps OpenBLAS workers from spinning (module docstring).
                    set_openblas_threads(1)
                    self._pool = ThreadPoolExecutor(self.shards, thread_name_prefix="face-exact-shard")
            if len(self.store) >= 2 * BLOCK_ROWS:
                return scan_ip_sharded(self._pool, self.shards, self.store.xb, xq, k, mask)
        return scan_ip(self.store.xb, xq, k, mask)

    def __len__(self) -> int:
        return len(self.store)

    def add(self, labels: I64, xb: F32) -> None:
        self.store.add(labels, xb)

    def remove(self, labels: I64) -> None:
        self.store.remove(labels)

    def search(self, xq: F32, k: int, allowed: I64 | None) -> tuple[F32, I64]:
        mask = None if allowed is None else self.store.mask_of(allowed)
        D, R = self._scan(xq, k, mask)
        return D, np.where(R >= 0, self.store.labels[R], -1)

    def search_each(self, xq: F32, k: int, allowed: list[I64 | None]) -> tuple[F32, I64]:
        """Like ``search`` with one restriction per query row, all in one scan."""
        cache: dict[bytes, Mask] = {}
        masks: list[Mask | None] = []
        for a in allowed:
            if a is None:
                masks.append(None)
                continue
            key = a.tobytes()
            if key not in cache:
                cache[key] = self.store.mask_of(a)
            masks.append(cache[key])
        D, R = self._scan(xq, k, masks)
        return D, np.where(R >= 0, self.store.labels[R], -1)

    def vectors(self, labels: I64) -> tuple[F32, npt.NDArray[np.bool_]]:
        rows = self.store.rows_of(labels)
        present = rows >= 0
        out = np.zeros((labels.size, self.store.d), dtype=np.float32)
        out[present] = self.store.xb[rows[present]]
        return out, present

    def all_items(self) -> tuple[I64, F32]:
        return self.store.labels.copy(), np.asarray(self.store.xb, dtype=np.float32).copy()

    def state(self) -> dict[str, npt.NDArray[Any]]:
        return {"labels": self.store.labels, "vectors": self.store.xb}

    @classmethod
    def from_state(cls, d: int, state: dict[str, npt.NDArray[Any]], shards: int = 0) -> ExactBackend:
        b = cls(d, shards)
        b.store = DenseStore.adopt(np.asarray(state["labels"], dtype=np.int64),
                                   np.asarray(state["vectors"], dtype=np.float32))
        return b
