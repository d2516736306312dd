"""FAISS-backed storage for the compressed / approximate face index kinds (fp16, sq8, hnsw, ivf).

Each FAISS index holds vectors under *row numbers* 0, 1, 2... in insertion order; a numpy array maps
row -> label (record id) and a dict maps label -> live row. Removal marks the row dead at once (a
tombstone, excluded from every search by an ``IDSelectorBitmap``), and dead rows are purged in bulk
when they pass ``compact_fraction`` (flat codes and IVF: ``remove_ids``; HNSW cannot remove, so it is
rebuilt from its stored vectors). Replacing a label = tombstone the old row + append a new one.

fp16 / sq8 are exhaustive scans that FAISS runs on one thread per query, so the rows are split into
``shards`` (label mod shards) scanned in parallel threads (FAISS releases the GIL); measured 18 ms ->
10.5 ms for one query over 1M x 128 fp16 on 2 cores. Batches of fp16 queries (the micro-batcher's)
bypass FAISS's per-query scan: each shard thread runs blocked sgemm over its codes widened to float32
in cache (``RowIndex.search_batch``). Other batches are scanned shard after shard, each parallel over
queries inside FAISS (OpenMP), to avoid oversubscribing the cores.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faiss as _faiss
import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError, IntegrityError
from engine.index.blas import set_openblas_threads
from engine.index.flat import scan_ip
from engine.index.topk import topk_rows

__all__ = ["RowIndex", "ShardedBackend", "make_backend", "restore_backend"]

# The bundled faiss stubs are partial (no SearchParametersHNSW, DirectMap...): use it untyped.
faiss: Any = _faiss

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def _new_faiss(kind: str, d: int, opts: Any) -> Any:
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "fp16":
        return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
    if kind == "sq8":
        return faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(opts.hnsw_m), ip)
        index.hnsw.efConstruction = int(opts.hnsw_ef_construction)
        return index
    if kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, int(opts.ivf_nlist), ip)
        index.own_fields = True
        quantizer.this.disown()
        # Hashtable direct map: reconstruct by row id (1:1 scores) and still allow remove_ids.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index
    raise ConfigurationError(f"no FAISS backend for face index kind {kind!r}")


class RowIndex:
    """One FAISS index over rows with tombstones; see the module docstring."""

    def __init__(self, kind: str, d: int, opts: Any, index: Any = None) -> None:
        self.kind, self.d, self.opts = kind, d, opts
        self.index = index if index is not None else _new_faiss(kind, d, opts)
        self.row_label = np.empty(0, dtype=np.int64)  # label of every row ever added (dead included)
        self.alive = np.empty(0, dtype=bool)
        self.row: dict[int, int] = {}
        self.n_dead = 0
        self._bitmap: npt.NDArray[np.uint8] | None = None  # cached packed ``alive`` (None = stale)

    def __len__(self) -> int:
        return len(self.row)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, xb: F32) -> None:
        self.index.train(np.ascontiguousarray(xb, dtype=np.float32))

    def add(self, labels: I64, xb: F32) -> None:
        self._kill(labels)
        start = self.row_label.size
        rows = np.arange(start, start + labels.size, dtype=np.int64)
        if self.kind == "ivf":
            self.index.add_with_ids(np.ascontiguousarray(xb, dtype=np.float32), rows)
        else:
            self.index.add(np.ascontiguousarray(xb, dtype=np.float32))
        self.row_label = np.concatenate([self.row_label, labels])
        self.alive = np.concatenate([self.alive, np.ones(labels.size, dtype=bool)])
        self.row.update(zip(labels.tolist(), rows.tolist(), strict=True))
        self._bitmap = None

    def remove(self, labels: I64) -> None:
        if self._kill(labels) and self.n_dead > self.opts.compact_fraction * max(1, self.row_label.size):
            self.compact()

    def _kill(self, labels: I64) -> int:
        dead = [r for r in (self.row.pop(label, None) for label in labels.tolist()) if r is not None]
        if dead:
            self.alive[dead] = False
            self.n_dead += len(dead)
            self._bitmap = None
        return len(dead)

    def compact(self) -> None:
        """Purge tombstoned rows from the FAISS index (O(n); after bulk deletions)."""
        if self.n_dead == 0:
            return
        if self.kind == "hnsw":
            live = np.flatnonzero(self.alive)
            xb = self.index.reconstruct_batch(live) if live.size else np.empty((0, self.d), np.float32)
            labels = self.row_label[live]
            self.index = _new_faiss(self.kind, self.d, self.opts)
            self.row_label = np.empty(0, dtype=np.int64)
            self.alive = np.empty(0, dtype=bool)
            self.row, self.n_dead = {}, 0
            if labels.size:
                self.add(labels, xb)
            return
        dead = np.flatnonzero(~self.alive).astype(np.int64)
        if self.kind == "ivf":
            # a Hashtable direct map accepts only an explicit id array
            self.index.remove_ids(faiss.IDSelectorArray(dead.size, faiss.swig_ptr(dead)))
            # IVF keeps its explicit row ids, so rows keep their numbers; only the tombstones go.
            self.n_dead = 0
            self.row_label[dead] = -1
            return
        self.index.remove_ids(faiss.IDSelectorBatch(dead))
        # Flat codes compact in order: survivor rows are renumbered 0..m-1.
        keep = self.alive
        self.row_label = self.row_label[keep]
        self.alive = np.ones(self.row_label.size, dtype=bool)
        self.row = dict(zip(self.row_label.tolist(), range(self.row_label.size), strict=True))
        self.n_dead = 0
        self._bitmap = None

    def _selector(self, allowed: I64 | None) -> tuple[Any, Any]:
        """(selector, keep-alive objects) for live rows, further limited to ``allowed`` labels."""
        if allowed is None and self.n_dead == 0:
            return None, None
        if allowed is None:
            if self._bitmap is None:
                self._bitmap = np.packbits(self.alive, bitorder="little")
            bits = self._bitmap
        else:
            bits = np.packbits(self.alive & np.isin(self.row_label, allowed), bitorder="little")
        sel = faiss.IDSelectorBitmap(self.alive.size, faiss.swig_ptr(bits))
        return sel, bits

    def search(self, xq: F32, k: int, allowed: I64 | None) -> tuple[F32, I64]:
        """Top-k (similarities, labels) among live rows (and ``allowed`` labels)."""
        if self.index.ntotal == 0:
            return topk_rows(np.empty((xq.shape[0], 0), np.float32), k)
        sel, keep = self._selector(allowed)
        if self.kind == "hnsw":
            params: Any = faiss.SearchParametersHNSW()
            params.efSearch = max(int(self.opts.hnsw_ef_search), k)
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = int(self.opts.ivf_nprobe)
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        D, R = self.index.search(np.ascontiguousarray(xq, dtype=np.float32), k, params=params)
        del keep  # the bitmap had to outlive the search call
        labels = np.where(R >= 0, self.row_label[np.maximum(R, 0)], -1)
        D = np.where(labels >= 0, D, -np.inf).astype(np.float32)
        return D, labels.astype(np.int64)

    def search_batch(self, xq: F32, k: int, allowed: I64 | None) -> tuple[F32, I64]:
        """``search`` for a batch of fp16 queries as blocked sgemm over the FAISS codes (widened to
        float32 block by block, ``engine.index.flat.scan_ip``): the base is read once per batch
        instead of once per query. Same scores as FAISS's fp16 scan up to float rounding."""
        n = int(self.index.ntotal)
        if n == 0:
            return topk_rows(np.empty((xq.shape[0], 0), np.float32), k)
        codes = faiss.rev_swig_ptr(self.index.codes.data(), n * self.d * 2)
        X = np.frombuffer(codes, dtype=np.uint16, count=n * self.d).reshape(n, self.d)
        mask: Bool | None = None
        if allowed is not None:
            mask = self.alive & np.isin(self.row_label, allowed)
        elif self.n_dead:
            mask = self.alive
        D, R = scan_ip(X, np.ascontiguousarray(xq, dtype=np.float32), k, mask)
        return D, np.where(R >= 0, self.row_label[np.maximum(R, 0)], -1)

    def vectors(self, labels: I64) -> tuple[F32, Bool]:
        rows = np.array([self.row.get(label, -1) for label in labels.tolist()], dtype=np.int64)
        present = rows >= 0
        out = np.zeros((labels.size, self.d), dtype=np.float32)
        if present.any():
            out[present] = self.index.reconstruct_batch(rows[present])
        return out, present

    def all_items(self) -> tuple[I64, F32]:
        live = np.flatnonzero(self.alive)
        xb = self.index.reconstruct_batch(live) if live.size else np.empty((0, self.d), np.float32)
        return self.row_label[live], xb

    def state(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        return {
            f"{prefix}faiss": faiss.serialize_index(self.index),
            f"{prefix}row_label": self.row_label,
            f"{prefix}alive": self.alive,
        }

    @classmethod
    def from_state(cls, kind: str, d: int, opts: Any, arrays: dict[str, npt.NDArray[Any]],
                   prefix: str) -> RowIndex:
        ri = cls(kind, d, opts, index=faiss.deserialize_index(arrays[f"{prefix}faiss"]))
        ri.row_label = np.asarray(arrays[f"{prefix}row_label"], dtype=np.int64)
        ri.alive = np.asarray(arrays[f"{prefix}alive"], dtype=bool)
        if ri.row_label.size != ri.alive.size or ri.index.d != d:
            raise IntegrityError("face index snapshot: inconsistent FAISS shard")
        live = np.flatnonzero(ri.alive)
        ri.row = dict(zip(ri.row_label[live].tolist(), live.tolist(), strict=True))
        ri.n_dead = int(ri.alive.size - live.size)
        return ri


class ShardedBackend:
    """``shards`` RowIndexes (label mod shards); single queries scan the shards in parallel threads."""

    def __init__(self, kind: str, d: int, opts: Any, parts: list[RowIndex] | None = None) -> None:
        self.kind, self.d, self.opts = kind, d, opts
        n_shards = int(opts.shards) if kind in ("fp16", "sq8") else 1
        self.parts = parts or [RowIndex(kind, d, opts) for _ in range(n_shards)]
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def _shard_of(self, labels: I64) -> npt.NDArray[np.int64]:
        return np.mod(labels, len(self.parts))

    def add(self, labels: I64, xb: F32) -> None:
        if not self.parts[0].is_trained:
            sample = xb[:: max(1, xb.shape[0] // (64 * int(self.opts.ivf_nlist)))]
            self.parts[0].train(sample)
            for p in self.parts[1:]:  # every shard shares the same trained quantiser
                p.index = faiss.clone_index(self.parts[0].index)
        s = self._shard_of(labels)
        for i, p in enumerate(self.parts):
            m = s == i
            if m.any():
                p.add(labels[m], xb[m])

    def remove(self, labels: I64) -> None:
        s = self._shard_of(labels)
        for i, p in enumerate(self.parts):
            p.remove(labels[s == i])

    @property
    def batches_well(self) -> bool:
        """True when a batch of queries costs much less than the same queries one by one (fp16:
        blocked sgemm over the codes), so concurrent single queries are worth micro-batching."""
        return self.kind == "fp16"

    def search(self, xq: F32, k: int, allowed: I64 | None) -> tuple[F32, I64]:
        batched = self.batches_well and xq.shape[0] > 1
        if len(self.parts) == 1:
            part = self.parts[0]
            return part.search_batch(xq, k, allowed) if batched else part.search(xq, k, allowed)
        if xq.shape[0] == 1 or batched:
            pool = self._executor()
            fn = RowIndex.search_batch if batched else RowIndex.search
            futures = [pool.submit(fn, p, xq, k, allowed) for p in self.parts]
            results = [f.result() for f in futures]
        else:
            results = [p.search(xq, k, allowed) for p in self.parts]
        D = np.concatenate([r[0] for r in results], axis=1)
        L = np.concatenate([r[1] for r in results], axis=1)
        Dk, cols = topk_rows(D, k)
        return Dk, np.where(cols >= 0, np.take_along_axis(L, np.maximum(cols, 0), axis=1), -1)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                # omp_set_num_threads is per calling thread in OpenMP: the shard threads scan alone
                # (one query each) instead of opening a parallel region whose idle thread spins.
                self._pool = ThreadPoolExecutor(len(self.parts), thread_name_prefix="face-shard",
                                                initializer=faiss.omp_set_num_threads, initargs=(1,))
                if self.batches_well:
                    # the batched fp16 scan is sgemm in each shard thread: shards are the
                    # parallelism, as for the exact kind (engine.index.flat)
                    set_openblas_threads(1)
            return self._pool

    def vectors(self, labels: I64) -> tuple[F32, Bool]:
        out = np.zeros((labels.size, self.d), dtype=np.float32)
        present = np.zeros(labels.size, dtype=bool)
        s = self._shard_of(labels)
        for i, p in enumerate(self.parts):
            m = s == i
            if m.any():
                out[m], present[m] = p.vectors(labels[m])
        return out, present

    def all_items(self) -> tuple[I64, F32]:
        items = [p.all_items() for p in self.parts]
        return np.concatenate([a for a, _ in items]), np.concatenate([b for _, b in items])

    def state(self) -> dict[str, npt.NDArray[Any]]:
        out: dict[str, npt.NDArray[Any]] = {"kind": np.array(self.kind), "shards": np.array(len(self.parts))}
        for i, p in enumerate(self.parts):
            out.update(p.state(f"s{i}_"))
        return out


def make_backend(d: int, options: Any) -> ShardedBackend:
    return ShardedBackend(str(options.kind), d, options)


def restore_backend(name: str, d: int, options: Any, arrays: dict[str, npt.NDArray[Any]]) -> ShardedBackend:
    if name != ShardedBackend.__name__:
        raise IntegrityError(f"face index snapshot: unknown backend {name!r}")
    kind = str(arrays["kind"])
    if kind != str(options.kind):
        raise IntegrityError(f"face index snapshot: backend kind {kind!r} != options kind {options.kind!r}")
    parts = [RowIndex.from_state(kind, d, options, arrays, f"s{i}_") for i in range(int(arrays["shards"]))]
    return ShardedBackend(kind, d, options, parts)
