"""Micro-batching of concurrent single-query searches into one batched search.

Why: one query over 1M x 128 float32 is memory-bound (~16 ms to stream 512 MB); a batch of 32
streams the same bytes once and runs as sgemm, ~2-3 ms per query on the same 2 cores. So many
threads each asking for one search are served by one worker thread that gathers whatever has queued
(up to ``max_batch``), runs one batched search, and hands every caller its own row.

Latency policy: a lone request under light load is run at once (no added wait). Once batches of
more than one are being formed (load), the worker waits for the *demand* it last saw -- the previous
batch plus the requests that queued while it was computed -- to come back, until ``max_wait_s``
after the first request of the batch or ``wait_share`` times the previous batch's search time from
when the worker starts waiting, whichever ends later. Why: callers in a closed loop (stations
waiting for their answer, the benchmark's callers) return one by one after a batch, each needing
the GIL and a wake-up from a busy OS; a fixed 2 ms linger caught about a third of 32 such callers
on the shared box (mean batch 11), so the scan read the whole gallery three times as often as
needed. Waiting at most a quarter of a batch's own time costs a request at most that share of
latency and lets the batch fill (300k x 128 exact, 32 callers, same run: mean batch 13 -> 25,
CPU per request 2.96 -> 1.88 ms).

Per-query restriction: each request may carry an opaque ``allowed`` value (e.g. an array of
permitted labels) that is handed to the batch search function, one entry per row; that function
decides how to honour different restrictions within one batch (masks in one scan, or groups).

Per-query ``k``: the batch is searched with the largest k and each caller gets its first k columns
(rows are sorted, so that is its own top-k; ties at the cut may be broken differently than alone).
If the batched call raises, every request of the batch is retried alone, so an exception reaches
exactly the caller(s) whose query fails and the others still get their results.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput, Unavailable

__all__ = ["BatchSearch", "MicroBatcher"]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
# search(xq (nq, d) float32, k, allowed: one entry per row) -> (D (nq, k) float32, I (nq, k) int64)
BatchSearch = Callable[[F32, int, list[Any]], tuple[F32, I64]]


@dataclass
class _Request:
    xq: F32  # (d,)
    k: int
    allowed: Any
    t0: float
    done: threading.Event = field(default_factory=threading.Event)
    D: F32 | None = None
    I: I64 | None = None
    error: BaseException | None = None


class MicroBatcher:
    """Thread-safe front of a ``BatchSearch``: ``search(xq, k)`` blocks until its own result.

    ``max_batch``: queries per batched call. ``max_wait_s``: extra wait for a batch to fill that is
    always allowed; ``wait_share``: the longer wait allowed as a share of the last batch's search time.
    """

    def __init__(self, search: BatchSearch, *, max_batch: int = 64, max_wait_s: float = 0.002,
                 wait_share: float = 0.25, name: str = "batcher") -> None:
        if max_batch < 1 or max_wait_s < 0 or not 0 <= wait_share <= 1:
            raise InvalidInput("micro-batcher needs max_batch >= 1, max_wait_s >= 0 and wait_share "
                               "in [0, 1]")
        self._search = search
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.wait_share = wait_share
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last_batch = 0
        # requests the last batch served plus those that queued meanwhile: what to wait for next
        self._demand = 0
        self._last_search_s = 0.0
        # counters for benchmarks/monitoring (not biometric): batches run, queries served
        self.batches = 0
        self.queries = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def search(self, xq: F32, k: int, allowed: Any = None) -> tuple[F32, I64]:
        """Top-``k`` of one query ``xq`` (d,) under restriction ``allowed`` (passed through):
        (D (k,), I (k,)). Raises what the search raises, or ``Unavailable`` once closed."""
        if k < 1:
            raise InvalidInput("k must be >= 1", reason="INVALID_K")
        q = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1)
        req = _Request(q, k, allowed, time.perf_counter())
        with self._cond:
            if self._closed:
                raise Unavailable("face search batcher is shut down")
            self._queue.append(req)
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.D is not None and req.I is not None  # set together with done when no error
        return req.D, req.I

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker; queued requests fail with ``Unavailable``. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ worker
    def _take_batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                pending = list(self._queue)
                self._queue.clear()
                for r in pending:
                    r.error = Unavailable("face search batcher is shut down")
                    r.done.set()
                return None
            want = min(self.max_batch, self._demand)
            if len(self._queue) < want and self._last_batch > 1:
                # from now, not from the first request's arrival: requests that queued during the
                # last batch have already waited a whole batch, yet the rest are about to return
                deadline = max(self._queue[0].t0 + self.max_wait_s,
                               time.perf_counter() + self.wait_share * self._last_search_s)
                while len(self._queue) < want and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            n = min(self.max_batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._last_batch = n
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._serve(batch)
            except BaseException as exc:  # never leave a caller blocked forever
                for r in batch:
                    if not r.done.is_set():
                        r.error = exc
                        r.done.set()
                log.exception("micro-batcher worker failed")

    def _serve(self, batch: list[_Request]) -> None:
        kmax = max(r.k for r in batch)
        t0 = time.perf_counter()
        try:
            D, I = self._search(np.stack([r.xq for r in batch]), kmax, [r.allowed for r in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            # Find out whose query fails: each one alone, so errors reach only their own callers.
            for r in batch:
                self._serve_one(r)
            return
        with self._cond:
            self._last_search_s = time.perf_counter() - t0
            self._demand = len(batch) + len(self._queue)
        for row, r in enumerate(batch):
            r.D, r.I = D[row, : r.k].copy(), I[row, : r.k].copy()
            r.done.set()
        self.batches += 1
        self.queries += len(batch)

    def _serve_one(self, r: _Request) -> None:
        try:
            D, I = self._search(r.xq[None, :], r.k, [r.allowed])
            r.D, r.I = D[0].copy(), I[0].copy()
        except Exception as exc:
            r.error = exc
        r.done.set()
