"""The operations event log: every operation attempt (enroll, insert, identify, verify, adjudicate,
delete, and jobs such as dedup, backup and transfer) leaves one row for statistics and reports.

    log = EventLog(store.db, retention_days=400)
    log.record(EventRow(time.time(), "enroll", "refused_quality", partition="camp-a", ...))

What a row holds is in ``engine.store.events``: never a reference id, an attribute or biometrics.
Failed and refused captures are recorded too: they are where failure-to-enrol figures come from.

Cost on the operation's path: :meth:`EventLog.record` only appends to a bounded queue (about a
microsecond). A writer thread inserts what is queued in one transaction every ``flush_interval``
seconds, so an enrollment never waits for an extra fsync. The price is that a process kill loses at
most the last interval's events (statistics only: the records themselves are durable as always). When
the queue is full (the store stalled), events are dropped and counted in ``dropped``, never blocking.

Engine methods are wrapped with :func:`recorded`; the station (API token id) of the call comes from
the method's ``actor`` argument or, for read operations that take none, from the service's call
context (:func:`set_station_source`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, TypeVar

from engine.errors import AcquisitionFailed, InvalidInput, NasnameError, QualityRejected, SampleRejected
from engine.jobs import JobCancelled
from engine.periodic import Periodic
from engine.store import events as sql
from engine.store.db import Database
from engine.store.events import EventFilter, EventRow

__all__ = ["EventFilter", "EventLog", "EventRow", "JobEvent", "job_event", "recorded", "set_station_source",
           "station"]

log = logging.getLogger(__name__)

# The caller of the current operation (API token id) for operations that take no ``actor``: by
# the service's call context (set_station_source), else this context variable (tests, local tools).
station: ContextVar[str | None] = ContextVar("nasname_station", default=None)


def _no_call() -> str | None:
    return None


_station_source: Callable[[], str | None] = _no_call


def set_station_source(source: Callable[[], str | None]) -> None:
    """Where :func:`recorded` finds the caller when the operation has no ``actor`` argument."""
    global _station_source
    _station_source = source

_DAY = 86_400.0


class EventLog:
    """Asynchronous, batched writer of :class:`EventRow` into the store's database (one per engine)."""

    def __init__(self, db: Database, *, retention_days: float = 400.0, flush_interval: float = 0.5,
                 max_queue: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.retention_days = retention_days
        self._queue: queue.Queue[EventRow] = queue.Queue(maxsize=max_queue)
        self._clock = clock
        self.dropped = 0
        self._closed = False
        self._last_prune = 0.0
        self._writer = Periodic("nasname-events", flush_interval, self._tick)
        self._writer.start()

    def record(self, row: EventRow) -> None:
        """Queue one event (never blocks, never raises)."""
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                log.warning("operations event log queue full: %d events dropped so far", self.dropped)

    def _drain(self) -> list[EventRow]:
        rows: list[EventRow] = []
        while True:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                return rows

    def _write(self, rows: list[EventRow]) -> None:
        if not rows:
            return
        try:
            with self._db.write() as conn:
                sql.insert_many(conn, rows)
        except NasnameError as exc:  # a stalled or closed store: statistics are lost, not the records
            self.dropped += len(rows)
            log.warning("could not write %d operation events: %s [%s]", len(rows), exc, exc.reason)

    def _tick(self) -> None:
        self._write(self._drain())
        now = self._clock()
        if now - self._last_prune > _DAY:
            self._last_prune = now
            self.prune()

    def flush(self) -> None:
        """Write everything queued so far (for reports and tests that read right after writing)."""
        self._write(self._drain())

    def prune(self) -> int:
        """Apply retention: delete events older than ``retention_days``."""
        if self.retention_days <= 0:
            return 0
        try:
            with self._db.write() as conn:
                gone = sql.prune(conn, self._clock() - self.retention_days * _DAY)
        except NasnameError as exc:
            log.warning("event retention could not run: %s [%s]", exc, exc.reason)
            return 0
        if gone:
            log.info("event retention removed %d events older than %g days", gone, self.retention_days)
        return gone

    def select(self, flt: EventFilter | None = None) -> Iterator[EventRow]:
        """Matching events in time order (flushes first, so a caller sees its own events)."""
        self.flush()
        with self._db.read() as conn:
            yield from sql.select(conn, flt or EventFilter())

    def close(self) -> None:
        """Stop the writer and write what is queued (before the store closes). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        self.flush()


# -- jobs: backup, dedup, transfer --------------------------------------------------------------


class JobEvent:
    """What a job reports into its event: ``count`` = the records it handled (backed up, pushed to
    adjudication, sent or received); ``partition`` when it was restricted to one."""

    def __init__(self) -> None:
        self.count = 0
        self.partition = ""


@contextmanager
def job_event(log: EventLog | None, op: str, *, station: str = "local") -> Iterator[JobEvent]:
    """Record one event for a job run: outcome ``ok``, ``cancelled`` or ``failed`` (with the error's
    reason), its duration and ``count``. ``log`` None (no data directory): nothing is recorded."""
    ev = JobEvent()
    start = time.perf_counter()
    outcome, error = "failed", ""
    try:
        yield ev
        outcome = "ok"
    except BaseException as exc:
        outcome = "cancelled" if isinstance(exc, JobCancelled) else "failed"
        error = exc.reason if isinstance(exc, NasnameError) else type(exc).__name__
        raise
    finally:
        if log is not None:
            log.record(EventRow(time=time.time(), op=op, outcome=outcome, partition=ev.partition,
                                station=station, latency_ms=(time.perf_counter() - start) * 1000.0,
                                error=error, count=ev.count))


# -- the decorator for engine operations -------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def _modalities(samples: Iterable[Any] | None) -> str:
    if not samples:
        return ""
    return ",".join(sorted({str(getattr(s.modality, "value", s.modality)) for s in samples}))


def _models(result: Any) -> str:
    found = {str(s.model) for s in getattr(result, "samples", None) or () if getattr(s, "model", None)}
    return ",".join(sorted(found))


def _warnings(result: Any) -> str:
    """Quality reasons of accepted samples (warnings), as ``modality:REASON`` pairs. A frame dropped
    from a multi-frame capture (``SampleUse.REFUSED``) was not accepted: its reasons are not warnings."""
    pairs = []
    for s in getattr(result, "samples", None) or ():
        if str(getattr(getattr(s, "use", None), "value", "")) == "refused":
            continue
        quality = getattr(s, "quality", None)
        for reason in getattr(quality, "reasons", ()) or ():
            pairs.append(f"{s.modality.value}:{getattr(reason, 'value', reason)}")
    return ",".join(sorted(pairs))


def outcome_of(op: str, result: Any, arguments: Mapping[str, Any]) -> str:
    """The outcome word of a successful operation (the vocabulary reports count); ``arguments``: the
    call's, by name (an adjudication's outcome is its decision)."""
    if op == "adjudicate":
        decision = arguments.get("decision", "ok")
        return str(getattr(decision, "value", decision))
    if op == "enroll":
        pending = str(getattr(result.outcome, "value", "")) == "pending_adjudication"
        return "pending" if pending else "enrolled"
    if op == "verify":
        return "match" if result.match else "no_match"
    if op == "identify":
        return "candidates" if result.candidates else "no_candidate"
    if op == "insert":
        return "inserted"
    if op == "delete":
        return "deleted"
    return "ok"


def failure_of(exc: BaseException) -> tuple[str, str, str]:
    """(outcome, error reason, quality reasons) of a failed operation."""
    if isinstance(exc, SampleRejected):
        modality = str(exc.details.get("modality", ""))
        reasons = ",".join(f"{modality}:{r}" if modality else r for r in exc.reasons)
        outcome = "refused_quality" if isinstance(exc, QualityRejected) else (
            "failed_capture" if isinstance(exc, AcquisitionFailed) else "refused_quality")
        return outcome, exc.reason, reasons
    if isinstance(exc, InvalidInput):
        return "invalid", exc.reason, ""
    if isinstance(exc, NasnameError):
        return "error", exc.reason, ""
    return "error", type(exc).__name__, ""


def recorded(op: str) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Record one event per call of an engine method. The instance's ``events`` attribute is the
    :class:`EventLog` (None: nothing is recorded). ``samples``, ``partition``, ``actor`` and
    ``decision`` arguments are read by name; the outcome comes from the result or the exception."""

    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        signature = inspect.signature(method)

        def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            sink: EventLog | None = getattr(self, "events", None)
            if sink is None:
                return method(self, *args, **kwargs)
            bound = signature.bind_partial(self, *args, **kwargs).arguments
            start = time.perf_counter()
            outcome, error, reasons, models = "error", "", "", ""
            try:
                result = method(self, *args, **kwargs)
            except BaseException as exc:
                outcome, error, reasons = failure_of(exc)
                raise
            else:
                outcome = outcome_of(op, result, bound)
                models, reasons = _models(result), _warnings(result)
                return result
            finally:
                actor = bound.get("actor")
                who = actor if actor not in (None, "local") else (
                    _station_source() or station.get() or actor or "local")
                sink.record(EventRow(
                    time=time.time(), op=op, outcome=outcome,
                    partition=str(bound.get("partition") or ""), station=str(who),
                    modalities=_modalities(bound.get("samples")), reasons=reasons,
                    latency_ms=(time.perf_counter() - start) * 1000.0, models=models, error=error))

        functools.update_wrapper(wrapper, method)
        return wrapper

    return wrap
