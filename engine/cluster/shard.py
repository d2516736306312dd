"""One gallery shard: the face and iris indexes of one hash partition of the records, in a Ray actor.

The class is plain Python (no Ray import), wrapped with ``ray.remote`` by ``engine.cluster.pool``, so
it can be unit-tested in-process. The indexes inside are the single-node ones (``engine.index``):
numba, BLAS and FAISS do the scoring in the shard's process; Ray only places, calls and restarts it.
Records live in shard ``label mod shards``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.cpus import set_threads
from engine.errors import InvalidInput
from engine.index.base import Labels, SearchResult, TemplateIndex
from engine.index.factory import IndexSpec, load_index, make_index
from engine.types import Modality, ModelRef, Template

__all__ = ["GalleryShard"]


class GalleryShard:
    """Indexes of shard ``shard`` of ``shards``, one per modality, created on first use."""

    def __init__(self, shard: int, shards: int, threads: int = 0) -> None:
        if not 0 <= shard < shards:
            raise InvalidInput(f"shard {shard} of {shards}")
        self.shard, self.shards = shard, shards
        set_threads(threads or None)  # the CPUs Ray gave this actor, not the whole node's
        self._indexes: dict[Modality, TemplateIndex] = {}

    def ping(self) -> int:
        return self.shard

    def _index(self, modality: Modality, model: ModelRef | None = None, spec: IndexSpec | None = None
               ) -> TemplateIndex | None:
        index = self._indexes.get(modality)
        if index is None and model is not None and spec is not None:
            index = self._indexes[modality] = make_index(modality, model, spec)
        return index

    def _own(self, labels: Labels) -> None:
        if labels.size and np.any(np.mod(labels, self.shards) != self.shard):
            raise InvalidInput(f"labels routed to shard {self.shard} of {self.shards} do not belong to it")

    def add(self, modality: Modality, model: ModelRef, spec: IndexSpec, labels: Labels,
            templates: list[Template]) -> int:
        self._own(labels)
        index = self._index(modality, model, spec)
        assert index is not None
        index.add(labels, templates)
        return len(index)

    def remove(self, modality: Modality, labels: Labels) -> None:
        index = self._index(modality)
        if index is not None:
            index.remove(labels)

    def search(self, modality: Modality, queries: list[Template], k: int, allowed: Labels | None
               ) -> SearchResult:
        index = self._index(modality)
        if index is None:
            nq = len(queries)
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        return index.search(queries, k, allowed)

    def score(self, modality: Modality, query: Template, labels: Labels) -> np.ndarray[Any, Any]:
        index = self._index(modality)
        if index is None:
            return np.full(labels.size, np.nan, dtype=np.float32)
        return index.score(query, labels)

    def size(self, modality: Modality) -> int:
        index = self._index(modality)
        return 0 if index is None else len(index)

    def snapshot(self, modality: Modality) -> bytes:
        """The modality's index as snapshot file bytes (``TemplateIndex.save``), b"" when empty."""
        index = self._index(modality)
        if index is None:
            return b""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "shard.npz"
            index.save(path)
            return path.read_bytes()

    def restore(self, modality: Modality, model: ModelRef, data: bytes) -> int:
        """Replace the modality's index by one read from ``snapshot`` bytes; returns its size."""
        if not data:
            self._indexes.pop(modality, None)
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "shard.npz"
            path.write_bytes(data)
            index = load_index(modality, model, path)
        self._indexes[modality] = index
        return len(index)

    def clear(self) -> None:
        """Drop every index (before a reload of this shard's slice)."""
        self._indexes.clear()
