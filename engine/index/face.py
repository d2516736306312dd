"""The face index: 1:N search of L2-normalised float embeddings by inner product (= cosine).

``FaceIndex`` implements ``engine.index.base.TemplateIndex``. Storage and search are chosen by
``FaceIndexOptions.kind``:

    exact  float32, exact (default)          sharded sgemv/sgemm scan + top-k, ``engine.index.flat``
    fp16   float16 storage, exhaustive       FAISS ScalarQuantizer fp16, scanned in parallel shards
    sq8    8-bit scalar quantiser            FAISS ScalarQuantizer 8bit (trained), parallel shards
    hnsw   graph (approximate)               FAISS HNSWFlat, deletions as tombstones + compaction
    ivf    inverted lists (approximate)      FAISS IVFFlat, exact re-ranking not needed (flat codes)

Approximate kinds are only ever used when configured; their recall against ``exact`` is measured in
``tests/unit/index`` and ``benchmarks/``. Kinds that need training (sq8, ivf) behave exactly (exact
float32 store) until ``train_size`` templates are present, then train once and convert.

A restriction to ``allowed`` labels is answered by scoring those vectors directly when the list is
small (one id, a family), and by a masked/selected scan of the whole index when it is large (a
partition). Either way only allowed labels can appear in the result.

Concurrency: exact and fp16 single-query searches that need a full scan (unrestricted, or a large
partition) from many threads are micro-batched (``engine.index.batcher``): one worker runs them as one batched
scan (sgemm: a batch of 32 costs ~2-3 ms per query at 1M x 128 against ~16 ms alone). FAISS kinds
have no batched fast path and are searched in the callers' threads (FAISS releases the GIL).
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
import zipfile
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from engine.cpus import threads
from engine.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidInput,
    ModelMismatch,
    NotFound,
    Unavailable,
)
from engine.index.base import Labels, SearchResult
from engine.index.batcher import MicroBatcher
from engine.index.flat import ExactBackend
from engine.index.snapshot import atomic_savez
from engine.index.topk import topk_rows
from engine.types import FaceTemplate, ModelRef, Template

__all__ = ["FaceIndex", "FaceIndexOptions", "IndexKind"]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

SNAPSHOT_FORMAT = 1


class IndexKind(StrEnum):
    EXACT = "exact"
    FP16 = "fp16"
    SQ8 = "sq8"
    HNSW = "hnsw"
    IVF = "ivf"


@dataclass(frozen=True)
class FaceIndexOptions:
    """How the face index stores and searches. Defaults: exact float32.

    shards: parallel scan slices for fp16/sq8 (FAISS scans one query on one thread). None (default)
    = one per CPU available to the process (``engine.cpus``).
    hnsw_m / hnsw_ef_construction / hnsw_ef_search: HNSW graph degree and beam widths.
    ivf_nlist / ivf_nprobe: IVF coarse cells and cells visited per query.
    train_size: templates needed before sq8/ivf train (exact search until then).
    compact_fraction: dead (tombstoned) rows of a FAISS kind are purged past this fraction.
    micro_batch / batch_max / batch_wait_ms: concurrent single-query full scans of the exact and fp16
    kinds are served in batches of up to batch_max by one worker (``engine.index.batcher``), waiting
    under load for the callers of the last batch to come back, at most batch_wait_ms or a quarter of
    the last batch's search time, whichever is longer.
    batch_max: None (default) = 32 per available CPU, within [32, 256] (a shard scans each batch).
    exact_shards: scan threads of the exact kind. None (default) = one per available CPU
    (``engine.cpus``, which also honours the ``threads`` override; up to 64); 0 or 1 =
    one OpenBLAS call per scan using OpenBLAS's own threads. With >= 2, numpy's OpenBLAS is set to
    ONE thread PROCESS-WIDE when the index first searches (logged; figures and reasons in
    ``engine.index.flat``), and galleries of >= 32k templates are scanned in that many threads.
    """

    kind: IndexKind = IndexKind.EXACT
    shards: int | None = None
    hnsw_m: int = 32
    hnsw_ef_construction: int = 128
    hnsw_ef_search: int = 128
    ivf_nlist: int = 1024
    ivf_nprobe: int = 32
    train_size: int = 50000
    compact_fraction: float = 0.2
    micro_batch: bool = True
    exact_shards: int | None = None
    batch_max: int | None = None
    batch_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        cpus = threads()
        if self.shards is None:
            object.__setattr__(self, "shards", cpus)
        if self.batch_max is None:
            object.__setattr__(self, "batch_max", max(32, min(256, 32 * cpus)))
        try:
            object.__setattr__(self, "kind", IndexKind(self.kind))
        except ValueError:
            raise ConfigurationError(
                f"unknown face index kind {self.kind!r}; expected one of {', '.join(IndexKind)}"
            ) from None
        positive = ("shards", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nlist",
                    "ivf_nprobe", "train_size", "batch_max")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigurationError(f"face index option {name} must be >= 1")
        if not 0.0 < self.compact_fraction <= 1.0:
            raise ConfigurationError("face index option compact_fraction must be in (0, 1]")
        if self.exact_shards is None:
            object.__setattr__(self, "exact_shards", min(64, cpus))
        if (self.exact_shards or 0) < 0:
            raise ConfigurationError("face index option exact_shards must be >= 0")
        if not 0.0 <= self.batch_wait_ms <= 100.0:
            raise ConfigurationError("face index option batch_wait_ms must be in [0, 100]")
        if self.kind is IndexKind.IVF and self.train_size < self.ivf_nlist:
            raise ConfigurationError("ivf needs train_size >= ivf_nlist")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        # properties of the machine, not of the snapshot: re-chosen on load (a FAISS snapshot keeps
        # its own shard count in its arrays)
        for name in ("exact_shards", "shards", "batch_max"):
            del out[name]
        return out


class Backend(Protocol):
    """Storage + search strategy behind a FaceIndex (labels are record ids throughout)."""

    def __len__(self) -> int: ...

    def add(self, labels: I64, xb: F32) -> None: ...

    def remove(self, labels: I64) -> None: ...

    def search(self, xq: F32, k: int, allowed: I64 | None) -> tuple[F32, I64]: ...

    def vectors(self, labels: I64) -> tuple[F32, npt.NDArray[np.bool_]]:
        """Stored vectors (decoded to float32) of ``labels`` and a present mask (absent rows are 0)."""
        ...

    def all_items(self) -> tuple[I64, F32]:
        """Every (label, vector), e.g. to convert into another backend."""
        ...

    def state(self) -> dict[str, npt.NDArray[Any]]: ...


def _as_labels(labels: Any, what: str = "labels") -> I64:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInput(f"{what} must be a 1-D array of int64 record ids", reason="INVALID_LABELS")
    return arr.astype(np.int64, copy=False)


class FaceIndex:
    """1:N index of face templates of one model. Thread-safety as in ``engine.index.base``."""

    # Restrictions up to this many labels (or 1/16 of the index) are scored directly rather than by
    # a masked scan of the whole index: gathering m vectors costs O(m), the scan O(n).
    SMALL_ALLOWED = 4096
    # Largest k accepted: results are dense (nq, k) arrays, so k is bounded like any request size.
    MAX_K = 100_000

    def __init__(self, model: ModelRef, dim: int, options: FaceIndexOptions | None = None) -> None:
        if dim < 1:
            raise ConfigurationError("face index dimension must be >= 1")
        self._model = model
        self.dim = dim
        self.options = options or FaceIndexOptions()
        self._backend: Backend = self._new_backend(initial=True)
        self._batcher: MicroBatcher | None = None
        self._batcher_lock = threading.Lock()

    # ----------------------------------------------------------------------------- protocol
    @property
    def model(self) -> ModelRef:
        return self._model

    def __len__(self) -> int:
        return len(self._backend)

    def add(self, labels: Labels, templates: list[Template]) -> None:
        lab = _as_labels(labels)
        if lab.size != len(templates):
            raise InvalidInput(f"{lab.size} labels for {len(templates)} templates", reason="INVALID_LABELS")
        if lab.size and int(lab.min()) < 0:
            raise InvalidInput("labels (record ids) must be >= 0; -1 marks a missing result",
                               reason="INVALID_LABELS")
        if np.unique(lab).size != lab.size:
            raise InvalidInput("duplicate labels in one add", reason="INVALID_LABELS")
        if lab.size == 0:
            return
        self._backend.add(lab, self._matrix(templates))
        self._maybe_train()

    def remove(self, labels: Labels) -> None:
        lab = _as_labels(labels)
        if lab.size:
            self._backend.remove(lab)

    def search(self, queries: list[Template], k: int, allowed: Labels | None = None) -> SearchResult:
        if not 1 <= k <= self.MAX_K:
            raise InvalidInput(f"k must be in [1, {self.MAX_K}]", reason="INVALID_K")
        xq = self._matrix(queries)
        if xq.shape[0] == 0 or len(self._backend) == 0:
            return _empty(xq.shape[0], k)
        allow = None
        if allowed is not None:
            allow = np.unique(_as_labels(allowed, "allowed"))
            if allow.size == 0:
                return _empty(xq.shape[0], k)
            if allow.size <= max(self.SMALL_ALLOWED, len(self._backend) // 16):
                return self._search_listed(xq, k, allow)
        # Only BLAS scans gain from batching: exact, and fp16 (its batches run as sgemm over the codes
        # widened block by block). The other FAISS kinds score each query with per-vector kernels (no
        # batch path), so they run in the caller threads.
        batches = isinstance(self._backend, ExactBackend) or bool(getattr(self._backend, "batches_well",
                                                                          False))
        batcher = self._get_batcher() if xq.shape[0] == 1 and batches else None
        if batcher is not None:
            # Every exact full scan goes through the one batching worker: besides batching, this
            # keeps concurrent callers from fighting over the cores (measured on the busy box, 20k x
            # 128: 32 threads each calling numpy sgemv ~3 requests/s in total, the worker ~280/s).
            D, I = batcher.search(xq[0], k, allow)
            return D[None, :], I[None, :]
        return self._backend.search(xq, k, allow)

    def score(self, query: Template, labels: Labels) -> npt.NDArray[np.float32]:
        q = self._matrix([query])[0]
        lab = _as_labels(labels)
        X, present = self._backend.vectors(lab)
        s: F32 = (X @ q).astype(np.float32)
        s[~present] = np.nan
        return s

    def save(self, path: Path | BinaryIO) -> None:
        meta = {
            "format": SNAPSHOT_FORMAT,
            "model_id": self._model.model_id,
            "model_version": self._model.version,
            "dim": self.dim,
            "options": self.options.to_json(),
            "backend": type(self._backend).__name__,
        }
        arrays = dict(self._backend.state())
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: Path | BinaryIO) -> FaceIndex:
        """Read a snapshot written by ``save`` (a path or a seekable stream). Raises NotFound /
        IntegrityError."""
        name = Path(path).name if isinstance(path, str | Path) else "stream"
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
            if meta.get("format") != SNAPSHOT_FORMAT:
                raise IntegrityError(f"unsupported face index snapshot format {meta.get('format')!r}")
            index = cls(ModelRef(meta["model_id"], meta["model_version"]), int(meta["dim"]),
                        FaceIndexOptions(**meta["options"]))
            index._backend = index._restore_backend(meta["backend"], arrays)
        except FileNotFoundError:
            raise NotFound(f"no face index snapshot at {name}", reason="SNAPSHOT_NOT_FOUND") from None
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise IntegrityError(f"unreadable face index snapshot {name}: {exc}") from exc
        return index

    def close(self) -> None:
        """Stop the micro-batching worker (searches still work, unbatched, afterwards)."""
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
            self.options = replace(self.options, micro_batch=False)
        if batcher is not None:
            batcher.close()

    # ----------------------------------------------------------------------------- internals
    def _get_batcher(self) -> MicroBatcher | None:
        with self._batcher_lock:
            if not self.options.micro_batch:
                return None
            if self._batcher is None:
                # The worker holds only a weak reference, so a dropped index is collected and its
                # worker thread stopped by the finalizer.
                method = weakref.WeakMethod(self._search_batch)

                def search_batch(xq: F32, k: int, allowed: list[Any]) -> tuple[F32, I64]:
                    bound = method()
                    if bound is None:
                        raise Unavailable("face index was closed")
                    return bound(xq, k, allowed)

                self._batcher = MicroBatcher(search_batch, max_batch=int(self.options.batch_max or 1),
                                             max_wait_s=self.options.batch_wait_ms / 1000.0,
                                             name="face-batcher")
                weakref.finalize(self, self._batcher.close, 0.0)
            return self._batcher

    def _search_batch(self, xq: F32, k: int, allowed: list[I64 | None]) -> tuple[F32, I64]:
        """One batched search where row i is restricted to ``allowed[i]`` (None = everything)."""
        groups: dict[bytes | None, list[int]] = {}
        for i, a in enumerate(allowed):
            # keyed by content (exact bytes, so equal partitions share one scan; no hash collisions)
            groups.setdefault(None if a is None else a.tobytes(), []).append(i)
        if len(groups) == 1:
            return self._backend.search(xq, k, allowed[0])
        if isinstance(self._backend, ExactBackend):
            return self._backend.search_each(xq, k, allowed)
        D = np.empty((xq.shape[0], k), dtype=np.float32)
        I = np.empty((xq.shape[0], k), dtype=np.int64)
        for rows in groups.values():
            D[rows], I[rows] = self._backend.search(xq[rows], k, allowed[rows[0]])
        return D, I

    def _matrix(self, templates: list[Template]) -> F32:
        """(m, d) float32 matrix of the templates, after checking their model and dimension."""
        xs = []
        for t in templates:
            if not isinstance(t, FaceTemplate):
                raise ModelMismatch(f"face index of {self._model} given a {t.modality_kind} template")
            if t.model != self._model:
                raise ModelMismatch(f"template of model {t.model} given to the face index of {self._model}")
            if t.vector.shape != (self.dim,):
                raise ModelMismatch(
                    f"template of dimension {t.vector.shape[0]} given to a {self.dim}-d face index"
                )
            xs.append(t.vector)
        if not xs:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack(xs), dtype=np.float32)

    def _search_listed(self, xq: F32, k: int, allow: I64) -> SearchResult:
        X, present = self._backend.vectors(allow)
        X, lab = X[present], allow[present]
        if lab.size == 0:
            return _empty(xq.shape[0], k)
        D, cols = topk_rows(xq @ X.T, k)
        return D, np.where(cols >= 0, lab[np.maximum(cols, 0)], -1)

    def _new_backend(self, initial: bool) -> Backend:
        kind = self.options.kind
        if kind is IndexKind.EXACT or (initial and kind in (IndexKind.SQ8, IndexKind.IVF)):
            return ExactBackend(self.dim, int(self.options.exact_shards or 0))
        from engine.index import faiss_backends as fb  # FAISS is only loaded for approximate kinds

        backend: Backend = fb.make_backend(self.dim, self.options)
        return backend

    def _maybe_train(self) -> None:
        if not isinstance(self._backend, ExactBackend) or self.options.kind is IndexKind.EXACT:
            return
        if len(self._backend) < self.options.train_size:
            return
        labels, xb = self._backend.all_items()
        backend = self._new_backend(initial=False)
        backend.add(labels, xb)  # trains on the data first when the kind needs it
        log.info("face index converted to %s after %d templates", self.options.kind.value, labels.size)
        self._backend = backend

    def _restore_backend(self, name: str, arrays: dict[str, npt.NDArray[Any]]) -> Backend:
        if name == ExactBackend.__name__:
            return ExactBackend.from_state(self.dim, arrays, int(self.options.exact_shards or 0))
        from engine.index import faiss_backends as fb

        backend: Backend = fb.restore_backend(name, self.dim, self.options, arrays)
        return backend


def _empty(nq: int, k: int) -> SearchResult:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
