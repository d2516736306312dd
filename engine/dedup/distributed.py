"""N:N pair blocks as Ray tasks: the job's plan, checkpoints and outputs unchanged, blocks computed
on the Ray cluster this process is connected to (``engine.cluster.backend.connect``).

A dedup job walks its plan of row blocks in order, appends each block's candidate pairs to its
candidates file and checkpoints after whole blocks (``engine.dedup.jobs``). ``RayBlocks`` keeps that
walk: it only runs the next ``window`` blocks as Ray tasks ahead of the one the job is waiting for,
and hands results back in plan order. So the candidates file, the checkpoints and therefore the
clusters are byte for byte those of a single-node run, and a resumed job (crash, cancel) starts at
the first block not checkpointed, as single-node. Each modality's templates go into Ray's object
store once; a task scores one block with the same kernel (``engine.dedup.pairs.make_kernel``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.cluster.pool import _ray
from engine.dedup.data import ModalityData
from engine.dedup.pairs import Pairs, make_kernel
from engine.errors import NasnameError, Unavailable

__all__ = ["BlockTask", "RayBlocks"]


@dataclass(frozen=True)
class BlockTask:
    """Block ``b`` of the plan: rows ``lo..hi`` of ``data`` (one modality) against every later row."""

    kind: str
    mode: str
    data: ModalityData
    lo: int
    hi: int
    threshold: float


def _score_block(kind: str, mode: str, data: ModalityData, lo: int, hi: int, threshold: float) -> Pairs:
    return make_kernel(kind, data, mode).block(lo, hi, threshold)


class RayBlocks:
    """Runs plan blocks as Ray tasks, ``window`` ahead of the block being waited for."""

    def __init__(self, window: int = 4, task_cpus: float = 1.0) -> None:
        ray = _ray()
        if not ray.is_initialized():
            raise Unavailable("not connected to a Ray cluster (engine.cluster.connect)",
                              reason="CLUSTER_UNAVAILABLE")
        self.ray = ray
        self.window = max(1, window)
        self._remote = ray.remote(_score_block).options(num_cpus=task_cpus, max_retries=2)
        self._pending: dict[int, Any] = {}
        self._refs: dict[int, Any] = {}  # id(data) -> object ref of that modality's templates
        self.submitted = 0

    def block(self, b: int, task_of: Callable[[int], BlockTask | None]) -> Pairs:
        """The pairs of block ``b``; first submits blocks ``b .. b + window - 1`` not yet running
        (``task_of`` returns None past the plan's end)."""
        for j in range(b, b + self.window):
            if j in self._pending:
                continue
            task = task_of(j)
            if task is None:
                break
            key = id(task.data)
            if key not in self._refs:
                self._refs[key] = self.ray.put(task.data)
            self._pending[j] = self._remote.remote(task.kind, task.mode, self._refs[key], task.lo, task.hi,
                                                   task.threshold)
            self.submitted += 1
        ref = self._pending.pop(b)
        try:
            pairs: Pairs = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, NasnameError):
                raise cause from None
            raise
        return pairs

    def close(self) -> None:
        """Cancel blocks run ahead that nobody will wait for (a cancelled or failed job)."""
        for ref in self._pending.values():
            try:
                self.ray.cancel(ref)
            except Exception:  # already finished
                continue
        self._pending.clear()
        self._refs.clear()
