"""The contenders of ``nasname bench``: one small interface (ann-benchmarks style) per search method.

``fit(gallery)`` builds from the gallery arrays, ``prepare(queries)`` converts the queries to the
contender's native input outside the timed region, ``query(j)`` answers query ``j`` (top-k labels,
best first) and is what is timed. Baselines: numpy brute force and FAISS with default settings
(and hnswlib for approximate search); engine contenders wrap ``engine.index`` classes through their
public ``TemplateIndex`` API (template objects in, labels out), so their figures include that cost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.bench.synthetic import FaceData, IrisData
from engine.errors import ConfigurationError
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef

__all__ = ["REGISTRY", "Contender", "make_contender"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
BENCH_MODEL = ModelRef("nasname-bench-synthetic", "1")
ADD_CHUNK = 20000  # templates per engine add() call: bounds the Python objects alive at once


class Contender(Protocol):
    def fit(self, data: Any) -> None: ...
    def prepare(self, data: Any) -> None: ...
    def query(self, j: int, k: int) -> I64: ...


def _topk(s: npt.NDArray[Any], k: int) -> I64:
    k = min(k, s.size)
    part = np.argpartition(-s, k - 1)[:k]
    return part[np.argsort(-s[part], kind="stable")].astype(np.int64)


# ---------------------------------------------------------------------------------------- face
class NumpyFace:
    """Brute force: one ``xb @ q`` (BLAS sgemv) and argpartition."""

    def fit(self, data: FaceData) -> None:
        self.xb = np.array(data.xb, dtype=np.float32, order="C", copy=True)  # own copy: memory is counted

    def prepare(self, data: FaceData) -> None:
        self.xq = data.xq

    def query(self, j: int, k: int) -> I64:
        return _topk(self.xb @ self.xq[j], k)


class FaissFace:
    """FAISS with default settings: ``IndexFlatIP`` (exact) or ``IndexHNSWFlat(d, 32)`` inner product
    with FAISS's default efConstruction 40 / efSearch 16."""

    def __init__(self, kind: str = "flat") -> None:
        self.kind = kind

    def fit(self, data: FaceData) -> None:
        import faiss

        d = data.xb.shape[1]
        self.index: Any
        if self.kind == "flat":
            self.index = faiss.IndexFlatIP(d)
        else:
            self.index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        self.index.add(data.xb)

    def prepare(self, data: FaceData) -> None:
        self.xq = data.xq

    def query(self, j: int, k: int) -> I64:
        _, ids = self.index.search(self.xq[j : j + 1], k)
        return np.asarray(ids[0], dtype=np.int64)


class HnswlibFace:
    """hnswlib defaults (M=16, ef_construction=200, ef=10, raised to k when k > 10)."""

    def fit(self, data: FaceData) -> None:
        try:
            import hnswlib
        except ImportError as exc:  # reported as "not available" in the bench table
            raise ImportError("hnswlib is not installed (pip install hnswlib, or the [test] extra; "
                              "it builds with a C++ compiler)") from exc

        n, d = data.xb.shape
        self.index = hnswlib.Index(space="ip", dim=d)
        self.index.init_index(max_elements=n)
        self.index.add_items(data.xb, np.arange(n))

    def prepare(self, data: FaceData) -> None:
        self.xq = data.xq

    def query(self, j: int, k: int) -> I64:
        self.index.set_ef(max(10, k))
        labels, _ = self.index.knn_query(self.xq[j : j + 1], k=k)
        return np.asarray(labels[0], dtype=np.int64)


class EngineFace:
    """``engine.index`` face index of one option (exact, fp16, sq8, hnsw, ivf) via its public API."""

    def __init__(self, kind: str = "exact") -> None:
        self.kind = kind

    def fit(self, data: FaceData) -> None:
        factory: Any = importlib.import_module("engine.index.factory")
        spec = factory.IndexSpec(self.kind, dim=data.xb.shape[1])
        self.index = factory.make_index(Modality.FACE, BENCH_MODEL, spec)
        for lo in range(0, data.xb.shape[0], ADD_CHUNK):
            rows = data.xb[lo : lo + ADD_CHUNK]
            labels = np.arange(lo, lo + rows.shape[0], dtype=np.int64)
            self.index.add(labels, [FaceTemplate(v, BENCH_MODEL) for v in rows])

    def prepare(self, data: FaceData) -> None:
        self.templates = [FaceTemplate(v, BENCH_MODEL) for v in data.xq]

    def query(self, j: int, k: int) -> I64:
        _, labels = self.index.search([self.templates[j]], k)
        return np.asarray(labels[0], dtype=np.int64)


class ClusterFace(EngineFace):
    """The same face index sharded over ``shards`` Ray actors on a local Ray cluster
    (``engine.cluster``): scatter-gather + exact merge. The shards' memory is in their own
    processes, so this contender's memory growth shows only the driver's."""

    def __init__(self, kind: str = "exact", shards: int = 2) -> None:
        super().__init__(kind)
        self.shards = shards

    def fit(self, data: FaceData) -> None:
        from engine.cluster.backend import connect
        from engine.cluster.pool import ShardPool
        from engine.cluster.sharded import ShardedIndex
        from engine.cpus import threads
        from engine.index.factory import IndexSpec

        cpus = threads()
        connect("", num_cpus=cpus)
        self.pool = ShardPool(self.shards, shard_cpus=cpus / self.shards)
        self.sharded = ShardedIndex(self.pool, Modality.FACE, BENCH_MODEL,
                                    IndexSpec(self.kind, dim=data.xb.shape[1]))
        for lo in range(0, data.xb.shape[0], ADD_CHUNK):
            rows = data.xb[lo : lo + ADD_CHUNK]
            labels = np.arange(lo, lo + rows.shape[0], dtype=np.int64)
            self.sharded.add(labels, [FaceTemplate(v, BENCH_MODEL) for v in rows])

    def query(self, j: int, k: int) -> I64:
        _, labels = self.sharded.search([self.templates[j]], k)
        return np.asarray(labels[0], dtype=np.int64)

    def close(self) -> None:
        self.pool.close()


# ---------------------------------------------------------------------------------------- iris
def _words(x: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    pad = (-x.shape[1]) % 8
    if pad:
        x = np.concatenate([x, np.zeros((x.shape[0], pad), np.uint8)], axis=1)
    return np.ascontiguousarray(x).view(np.uint64)


class NumpyIris:
    """Brute force masked Hamming distance over +-``shifts`` columns, uint64 popcount
    (``np.bitwise_count``). ``normalise`` (default) scores as ``engine.iris.matcher`` does (Daugman's
    normalisation for the number of bits compared: ``0.5 + (0.5 - HD) * sqrt(n / n0)``,
    ``n0 = 911 * nbits / 2048``), so its top-k is the exact answer the engine indexes must match;
    otherwise 1 - fractional HD."""

    def __init__(self, shifts: int = 15, normalise: bool = True) -> None:
        self.shifts = shifts
        self.normalise = normalise

    def fit(self, data: IrisData) -> None:
        self.codes, self.masks = _words(data.codes).copy(), _words(data.masks).copy()
        self.step = data.codes.shape[1] // data.columns
        self.n0 = 911.0 * data.codes.shape[1] * 8 / 2048.0

    def prepare(self, data: IrisData) -> None:
        self.qcodes, self.qmasks = data.qcodes, data.qmasks

    def query(self, j: int, k: int) -> I64:
        best = np.full(self.codes.shape[0], -np.inf)
        for s in range(-self.shifts, self.shifts + 1):
            qc = _words(np.roll(self.qcodes[j], s * self.step)[None, :])
            qm = _words(np.roll(self.qmasks[j], s * self.step)[None, :])
            valid = self.masks & qm
            n = np.bitwise_count(valid).sum(axis=1, dtype=np.int64)
            d = np.bitwise_count((self.codes ^ qc) & valid).sum(axis=1, dtype=np.int64)
            hd = d / np.maximum(n, 1)
            sim = 0.5 + (0.5 - hd) * np.sqrt(n / self.n0) if self.normalise else 1.0 - hd
            np.maximum(best, np.where(n > 0, sim, 0.0), out=best)
        return _topk(np.clip(best, 0.0, 1.0) if self.normalise else best, k)


class FaissIris:
    """FAISS for binary codes with default settings: ``IndexBinaryFlat`` (exact) or
    ``IndexBinaryHNSW`` (approximate, M=32 default): plain Hamming distance (FAISS has no masks), min
    over the same rotations (each rotation is one query row)."""

    def __init__(self, shifts: int = 15, kind: str = "flat") -> None:
        self.shifts = shifts
        self.kind = kind

    def fit(self, data: IrisData) -> None:
        import faiss

        nbits = data.codes.shape[1] * 8
        flat = self.kind == "flat"
        self.index: Any = faiss.IndexBinaryFlat(nbits) if flat else faiss.IndexBinaryHNSW(nbits, 32)
        self.index.add(data.codes)
        self.step = data.codes.shape[1] // data.columns

    def prepare(self, data: IrisData) -> None:
        self.qcodes = data.qcodes

    def query(self, j: int, k: int) -> I64:
        rot = np.stack([np.roll(self.qcodes[j], s * self.step) for s in range(-self.shifts, self.shifts + 1)])
        dist, ids = self.index.search(rot, k)
        # merge the per-rotation top-k lists: best (smallest) distance per label
        order = np.argsort(dist.ravel(), kind="stable")
        labels = ids.ravel()[order]
        _, first = np.unique(labels, return_index=True)
        return np.asarray(labels[np.sort(first)][:k], dtype=np.int64)


class EngineIris:
    """``engine.index.iris.IrisIndex`` of one option (exact / fast) via its public API."""

    def __init__(self, kind: str = "exact") -> None:
        self.kind = kind

    def fit(self, data: IrisData) -> None:
        factory: Any = importlib.import_module("engine.index.factory")
        spec = factory.IndexSpec(self.kind, nbytes=data.codes.shape[1], columns=data.columns)
        self.index = factory.make_index(Modality.IRIS_LEFT, BENCH_MODEL, spec)
        for lo in range(0, data.codes.shape[0], ADD_CHUNK):
            hi = min(lo + ADD_CHUNK, data.codes.shape[0])
            templates = [IrisTemplate(data.codes[i], data.masks[i], data.columns, BENCH_MODEL)
                         for i in range(lo, hi)]
            self.index.add(np.arange(lo, hi, dtype=np.int64), templates)

    def prepare(self, data: IrisData) -> None:
        self.templates = [IrisTemplate(c, m, data.columns, BENCH_MODEL)
                          for c, m in zip(data.qcodes, data.qmasks, strict=True)]

    def query(self, j: int, k: int) -> I64:
        _, labels = self.index.search([self.templates[j]], k)
        return np.asarray(labels[0], dtype=np.int64)


REGISTRY: dict[str, Callable[..., Contender]] = {
    "numpy-face": NumpyFace,
    "faiss-face": FaissFace,
    "hnswlib-face": HnswlibFace,
    "engine-face": EngineFace,
    "cluster-face": ClusterFace,
    "numpy-iris": NumpyIris,
    "faiss-iris": FaissIris,
    "engine-iris": EngineIris,
}


def make_contender(key: str, params: dict[str, Any]) -> Contender:
    try:
        return REGISTRY[key](**params)
    except KeyError:
        raise ConfigurationError(f"unknown bench contender {key!r}") from None
