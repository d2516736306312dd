"""The gallery's index backend: ``local`` (indexes in this process, the default) or ``ray`` (sharded).

    [cluster]
    backend = "ray"            # "local" (default: no Ray needed) | "ray"
    address = ""               # "" = start a local Ray cluster; "ray://head:10001" or "auto" = join one
    shards = 4                 # shard actors (record label mod shards)
    shard_cpus = 1.0           # CPUs reserved per shard actor (its scan threads)

The hook into the gallery is the index factory and loader it is built with (``Gallery.open``):
``RayBackend.index_factory`` wraps the single-node factory so each modality's index becomes a
``ShardedIndex`` over the same shard actors, and ``bind(store)`` gives the shards the store of record
to reload from after a restart (read through ``Store.scan``, its public paging read).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from engine.cluster.pool import ShardPool, SliceSource, _ray, shard_of
from engine.cluster.sharded import ShardedIndex
from engine.errors import ConfigurationError
from engine.index.base import Labels, TemplateIndex
from engine.index.factory import IndexSpec
from engine.records import RecordStatus
from engine.types import FaceTemplate, IrisTemplate, Modality, ModelRef, Template

if TYPE_CHECKING:
    from engine.config import ClusterConfig

__all__ = ["RayBackend", "connect", "store_source"]

log = logging.getLogger(__name__)

_PAGE = 20_000  # records per store page while reloading a shard


def connect(address: str = "", *, num_cpus: int | None = None) -> None:
    """Connect this process to Ray: join the cluster at ``address``, or start a local one ("")."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    log.info("connected to Ray (%s)", address or "local cluster")


def store_source(store: Any) -> SliceSource:
    """A shard's slice of the active templates, read page by page from the store of record."""

    def pages(shard: int, shards: int) -> Iterator[tuple[Modality, Labels, list[Template]]]:
        for states in store.pages(_PAGE):
            mine = [s for s in states if s.status is RecordStatus.ACTIVE
                    and int(shard_of(np.array([s.label]), shards)[0]) == shard]
            for modality in Modality:
                have = [s for s in mine if modality in s.templates]
                if have:
                    yield (modality, np.array([s.label for s in have], dtype=np.int64),
                           [s.templates[modality] for s in have])

    return pages


def _spec(example: Template, face_index: str, iris_index: str) -> IndexSpec:
    if isinstance(example, FaceTemplate):
        return IndexSpec(face_index, dim=example.vector.size)
    if isinstance(example, IrisTemplate):
        return IndexSpec(iris_index, nbytes=example.code.size, columns=example.columns)
    raise ConfigurationError(f"no sharded index for {type(example).__name__}")


class RayBackend:
    """Shard actors for one gallery, and the index factory / loader that put its indexes on them."""

    def __init__(self, pool: ShardPool, face_index: str = "exact", iris_index: str = "exact") -> None:
        self.pool = pool
        self.face_index, self.iris_index = face_index, iris_index

    @classmethod
    def start(cls, config: ClusterConfig, face_index: str = "exact", iris_index: str = "exact"
              ) -> RayBackend:
        connect(config.address)
        pool = ShardPool(config.shards, shard_cpus=config.shard_cpus, call_timeout_s=config.timeout_s)
        return cls(pool, face_index, iris_index)

    def index_factory(self, modality: Modality, example: Template) -> TemplateIndex:
        return ShardedIndex(self.pool, modality, example.model,
                            _spec(example, self.face_index, self.iris_index))

    def index_loader(self, modality: Modality, model: ModelRef, path: Path | BinaryIO) -> TemplateIndex:
        return ShardedIndex.load(self.pool, modality, model, path)

    def bind(self, store: Any) -> None:
        """Where restarted shards reload their slice from: the gallery's store of record."""
        self.pool.source = store_source(store)

    def close(self) -> None:
        self.pool.close()
