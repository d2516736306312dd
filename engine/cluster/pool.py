"""The shard actors of a Ray-sharded gallery: start, call, and restart-and-reload when one dies.

``ShardPool`` owns ``shards`` ``GalleryShard`` actors (record ``label`` lives in shard
``label mod shards``). A dead actor (process killed, node lost) is replaced by a fresh one that is
filled again from the store of record through a ``SliceSource`` (the gallery's store, read through its
public ``scan``), so an index never becomes the only copy of anything.

Consistency while a shard reloads: every write to a shard and its reload hold that shard's lock, and
the gallery routes a write to the indexes only after the store committed it. So a reload either reads
the store after the commit (the write is in the slice) or runs before the write is applied (the write
follows, in order). Searches never wait for a reload: they fail with ``Unavailable`` meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from engine.cluster.shard import GalleryShard
from engine.errors import NasnameError, Unavailable
from engine.index.base import Labels
from engine.index.factory import IndexSpec
from engine.types import Modality, ModelRef, Template

__all__ = ["ShardPool", "SliceSource", "shard_of"]

log = logging.getLogger(__name__)

# Calls one shard actor runs at once (searches from concurrent identify requests).
SHARD_CONCURRENCY = 64

# (shard, shards) -> batches of (modality, labels, templates): the active templates of that shard.
SliceSource = Callable[[int, int], Iterator[tuple[Modality, Labels, list[Template]]]]


def shard_of(labels: Labels, shards: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The shard of each record label (a hash partition: the label modulo the shard count)."""
    return np.mod(np.asarray(labels, dtype=np.int64), shards)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise Unavailable("the ray cluster backend needs the 'ray' package: pip install 'nasname[cluster]'",
                          reason="CLUSTER_UNAVAILABLE") from exc
    return ray


class ShardPool:
    """``shards`` shard actors on the Ray cluster this process is connected to (``connect``)."""

    def __init__(self, shards: int, *, shard_cpus: float = 1.0, call_timeout_s: float = 60.0,
                 source: SliceSource | None = None) -> None:
        if shards < 1:
            raise Unavailable("a sharded gallery needs at least one shard")
        self.ray = _ray()
        if not self.ray.is_initialized():
            raise Unavailable("not connected to a Ray cluster (engine.cluster.connect)",
                              reason="CLUSTER_UNAVAILABLE")
        self.shards = shards
        self.shard_cpus = shard_cpus
        self.call_timeout_s = call_timeout_s
        self.source = source
        self._specs: dict[Modality, tuple[ModelRef, IndexSpec]] = {}
        self._locks = [threading.RLock() for _ in range(shards)]
        self._reloading: set[int] = set()
        self._users: set[Modality] = set()
        self._closed = False
        self._state_lock = threading.Lock()
        self.restarts = 0
        self._cls = self.ray.remote(GalleryShard)
        self._actors: list[Any] = [self._start(i) for i in range(shards)]
        self.gather([a.ping.remote() for a in self._actors])

    def _start(self, i: int) -> Any:
        threads = max(1, int(self.shard_cpus))
        # A threaded actor: concurrent searches reach the shard's index together, so its micro-batcher
        # can batch them (a default actor runs one call at a time). Writes never overlap searches:
        # the gallery's readers-writer lock on the head orders them, as for a local index.
        return self._cls.options(num_cpus=self.shard_cpus, max_restarts=0, max_concurrency=SHARD_CONCURRENCY
                                 ).remote(i, self.shards, threads)

    # ------------------------------------------------------------------------------ calls
    def actor(self, i: int) -> Any:
        with self._state_lock:
            if i in self._reloading:
                raise Unavailable(f"gallery shard {i} is being reloaded from the store; retry shortly",
                                  reason="SHARD_UNAVAILABLE")
            return self._actors[i]

    def writable(self, i: int) -> Any | None:
        """Shard ``i``'s actor for a write (caller holds ``lock(i)``), or None while a reload is
        pending: that reload takes the lock after this write's store commit, so it reads the write
        from the store and the write need not be sent."""
        with self._state_lock:
            return None if i in self._reloading else self._actors[i]

    def lock(self, i: int) -> threading.RLock:
        return self._locks[i]

    def register(self, modality: Modality, model: ModelRef, spec: IndexSpec) -> None:
        """The index kind of a modality, so a restarted shard can rebuild its indexes."""
        self._specs[modality] = (model, spec)
        self._users.add(modality)

    def release(self, modality: Modality) -> None:
        """The modality's index was closed; the actors stop when no index uses them any more."""
        self._users.discard(modality)
        if not self._users:
            self.close()

    def spec(self, modality: Modality) -> tuple[ModelRef, IndexSpec]:
        return self._specs[modality]

    def gather(self, refs: list[Any], shards: list[int] | None = None) -> list[Any]:
        """Results of ``refs`` (calls to shards ``shards``, default 0..n-1). Errors raised inside a
        shard come back as themselves; shards that died or did not answer within the timeout raise
        one ``ShardFailure`` naming them (never a partial list)."""
        ray = self.ray
        if not refs:
            return []
        shards = shards if shards is not None else list(range(len(refs)))
        _, late = ray.wait(refs, num_returns=len(refs), timeout=self.call_timeout_s)
        pending = set(late)
        failed = [i for ref, i in zip(refs, shards, strict=True) if ref in pending]
        results: list[Any] = []
        cause: BaseException | None = None
        for ref, i in zip(refs, shards, strict=True):
            if ref in pending:
                continue
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayTaskError as exc:
                inner = getattr(exc, "cause", None)
                if isinstance(inner, NasnameError):
                    raise inner from None
                raise
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                failed.append(i)
                cause = exc
        if failed:
            raise ShardFailure(sorted(failed), cause or TimeoutError(f"no answer in {self.call_timeout_s} s"))
        return results

    # ------------------------------------------------------------------------------ restart
    def restart(self, i: int, *, marked: bool = False) -> None:
        """Replace shard ``i`` by a new actor and fill it from the store of record (blocking).
        ``marked``: the caller already flagged the shard as reloading (``restart_later``)."""
        if self.source is None:
            if marked:
                with self._state_lock:
                    self._reloading.discard(i)
            raise Unavailable(f"gallery shard {i} failed and no store is bound to reload it",
                              reason="SHARD_UNAVAILABLE")
        with self._state_lock:
            self._reloading.add(i)
        try:
            with self._locks[i]:
                if self._closed:
                    return
                old = self._actors[i]
                try:
                    self.ray.kill(old, no_restart=True)
                except Exception:  # already dead
                    log.debug("shard %d was already gone", i)
                actor = self._start(i)
                self.ray.get(actor.ping.remote(), timeout=self.call_timeout_s)
                n = 0
                for modality, labels, templates in self.source(i, self.shards):
                    if modality not in self._specs:
                        continue
                    model, spec = self._specs[modality]
                    self.ray.get(actor.add.remote(modality, model, spec, labels, templates),
                                 timeout=self.call_timeout_s)
                    n += labels.size
                with self._state_lock:
                    self._actors[i] = actor
                    self.restarts += 1
                log.warning("gallery shard %d restarted and reloaded %d templates from the store", i, n)
        finally:
            with self._state_lock:
                self._reloading.discard(i)

    def restart_later(self, shards: list[int]) -> None:
        """Restart failed shards in the background (a failed search must not wait for a reload)."""
        for i in shards:
            with self._state_lock:
                if i in self._reloading or self._closed:
                    continue
                self._reloading.add(i)  # searches fail fast from now on, until the reload is done
            threading.Thread(target=self._restart_logged, args=(i,), name=f"shard-{i}-restart",
                             daemon=True).start()

    def _restart_logged(self, i: int) -> None:
        try:
            self.restart(i, marked=True)
        except Exception:
            if not self._closed:
                log.exception("restart of gallery shard %d failed", i)

    def kill(self, i: int) -> None:
        """Kill shard ``i``'s actor (tests and drills: what a lost node looks like)."""
        self.ray.kill(self._actors[i], no_restart=True)

    def close(self) -> None:
        self._closed = True
        for a in self._actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:
                log.debug("shard actor already gone at close")
        self._actors = []


class ShardFailure(Unavailable):
    """One or more shards died or did not answer in time; they are being restarted."""

    default_reason = "SHARD_UNAVAILABLE"

    def __init__(self, shards: list[int], cause: BaseException) -> None:
        super().__init__(f"gallery shard(s) {', '.join(map(str, shards)) or '?'} unavailable "
                         f"({type(cause).__name__}); restarting from the store, retry shortly")
        self.shards = shards
