"""``ShardedIndex``: one modality's index spread over the shard actors, as a ``TemplateIndex``.

The gallery uses it exactly like a single-node index (``engine.index.base``): adds and removes are
routed to the owning shard (``label mod shards``) after the store committed them, and a search is
scatter-gather with an exact merge: every shard returns its own exact top-k over its slice
(restricted to the ``allowed`` labels it owns), and the top-k of the union of those lists is the
single-node top-k (ties at the cut may be broken differently, as between two single-node runs).

A search never returns a silently incomplete answer: when a shard is dead, restarting, or does not
answer within the pool's timeout, the search raises ``Unavailable`` (reason ``SHARD_UNAVAILABLE``,
gRPC UNAVAILABLE) and the shard is restarted and reloaded from the store in the background.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from engine.cluster.pool import ShardFailure, ShardPool, shard_of
from engine.errors import IntegrityError, InvalidInput, NotFound
from engine.index.base import Labels, SearchResult
from engine.index.factory import IndexSpec
from engine.index.snapshot import atomic_savez
from engine.index.topk import topk_rows
from engine.types import Modality, ModelRef, Template

__all__ = ["ShardedIndex"]

SNAPSHOT_FORMAT = 1


class ShardedIndex:
    """The ``modality`` index of ``pool``'s shards; each shard holds an index made from ``spec``."""

    def __init__(self, pool: ShardPool, modality: Modality, model: ModelRef, spec: IndexSpec) -> None:
        self.pool = pool
        self.modality = modality
        self._model = model
        self.spec = spec
        pool.register(modality, model, spec)

    @property
    def model(self) -> ModelRef:
        return self._model

    def __len__(self) -> int:
        refs = [self.pool.actor(i).size.remote(self.modality) for i in range(self.pool.shards)]
        return int(sum(self._gather(refs)))

    def _gather(self, refs: list[Any], shards: list[int] | None = None) -> list[Any]:
        try:
            return self.pool.gather(refs, shards)
        except ShardFailure as exc:
            self.pool.restart_later(exc.shards)
            raise

    def _write(self, labels: Labels, call: Any) -> None:
        """Apply ``call(actor, shard labels mask)`` on each owning shard, under its lock; a shard
        that died is restarted at once (its reload reads the store, which already holds the write)."""
        owner = shard_of(labels, self.pool.shards)
        for i in np.unique(owner).tolist():
            with self.pool.lock(i):
                actor = self.pool.writable(i)
                if actor is None:
                    continue
                try:
                    self.pool.gather([call(actor, owner == i)], [i])
                except ShardFailure:
                    self.pool.restart(i)

    def add(self, labels: Labels, templates: list[Template]) -> None:
        lab = np.asarray(labels, dtype=np.int64)
        if lab.size != len(templates):
            raise InvalidInput(f"{lab.size} labels for {len(templates)} templates", reason="INVALID_LABELS")

        def call(actor: Any, mine: npt.NDArray[np.bool_]) -> Any:
            rows = np.flatnonzero(mine)
            return actor.add.remote(self.modality, self._model, self.spec, lab[rows],
                                    [templates[r] for r in rows.tolist()])

        self._write(lab, call)

    def remove(self, labels: Labels) -> None:
        lab = np.asarray(labels, dtype=np.int64)
        self._write(lab, lambda actor, mine: actor.remove.remote(self.modality, lab[mine]))

    def search(self, queries: list[Template], k: int, allowed: Labels | None = None) -> SearchResult:
        nq = len(queries)
        shards = list(range(self.pool.shards))
        if allowed is not None:
            allow = np.asarray(allowed, dtype=np.int64)
            owner = shard_of(allow, self.pool.shards)
            parts = {i: allow[owner == i] for i in shards}
            shards = [i for i in shards if parts[i].size]  # a shard with no allowed label has no hit
        refs = [self.pool.actor(i).search.remote(self.modality, queries, k,
                                                 None if allowed is None else parts[i]) for i in shards]
        results = self._gather(refs, shards)
        if not results:
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        D = np.concatenate([r[0] for r in results], axis=1)
        L = np.concatenate([r[1] for r in results], axis=1)
        Dk, cols = topk_rows(D, k)
        return Dk, np.where(cols >= 0, np.take_along_axis(L, np.maximum(cols, 0), axis=1), -1)

    def score(self, query: Template, labels: Labels) -> npt.NDArray[np.float32]:
        lab = np.asarray(labels, dtype=np.int64)
        out = np.full(lab.size, np.nan, dtype=np.float32)
        owner = shard_of(lab, self.pool.shards)
        shards = np.unique(owner).tolist()
        refs = [self.pool.actor(i).score.remote(self.modality, query, lab[owner == i]) for i in shards]
        for i, s in zip(shards, self._gather(refs, shards), strict=True):
            out[owner == i] = s
        return out

    def close(self) -> None:
        """Called by the gallery at close: the shard actors stop once every modality closed."""
        self.pool.release(self.modality)

    # ------------------------------------------------------------------------------ snapshots
    def save(self, path: Path | BinaryIO) -> None:
        """One file holding each shard's own snapshot (so a restart of the gallery does not rebuild
        from the store); read back by :meth:`load` with the same shard count."""
        shards = list(range(self.pool.shards))
        blobs = self._gather([self.pool.actor(i).snapshot.remote(self.modality) for i in shards], shards)
        meta = {"format": SNAPSHOT_FORMAT, "shards": self.pool.shards, "modality": self.modality.value,
                "model_id": self._model.model_id, "model_version": self._model.version,
                "kind": self.spec.kind, "shape": self.spec.shape}
        arrays: dict[str, npt.NDArray[Any]] = {
            f"shard{i}": np.frombuffer(b, dtype=np.uint8) for i, b in zip(shards, blobs, strict=True)}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        if isinstance(path, Path):
            atomic_savez(path, arrays)
        else:  # a stream: the gallery seals it (engine.store.sealed)
            np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, pool: ShardPool, modality: Modality, model: ModelRef, path: Path | BinaryIO
             ) -> ShardedIndex:
        """Read a :meth:`save` file into ``pool``'s shards. Raises NotFound, or IntegrityError when
        the file is not a sharded snapshot of this shard count (the gallery then rebuilds)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("format") != SNAPSHOT_FORMAT or meta.get("shards") != pool.shards:
                    raise IntegrityError(f"snapshot {_name(path)} is not a {pool.shards}-shard snapshot")
                blobs = [z[f"shard{i}"].tobytes() for i in range(pool.shards)]
        except FileNotFoundError:
            raise NotFound(f"no sharded snapshot at {path}", reason="SNAPSHOT_NOT_FOUND") from None
        except (OSError, ValueError, KeyError) as exc:
            raise IntegrityError(f"unreadable sharded snapshot {path}: {exc}") from exc
        if ModelRef(meta["model_id"], meta["model_version"]) != model:
            raise IntegrityError(f"sharded snapshot {_name(path)} holds another model than {model}")
        index = cls(pool, modality, model, IndexSpec(str(meta["kind"]), **meta["shape"]))
        shards = list(range(pool.shards))
        index._gather([pool.actor(i).restore.remote(modality, model, blobs[i]) for i in shards], shards)
        return index


def _name(path: Path | BinaryIO) -> str:
    return path.name if isinstance(path, Path) else "(stream)"
