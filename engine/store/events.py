"""SQL of the operations event log (the ``events`` table; the runtime side is ``engine.events``).

Rows carry only what aggregate statistics need: time, operation, outcome, partition, station (token
id), modalities presented, quality reason codes, latency, model versions, an error reason code and a
count (records touched by a job). Never a reference id, an attribute value or anything biometric.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["EventFilter", "EventRow", "insert_many", "prune", "select"]

COLUMNS = ("time", "op", "outcome", "partition", "station", "modalities", "reasons", "latency_ms",
           "models", "error", "count")


@dataclass(frozen=True)
class EventRow:
    """One operation attempt. ``modalities`` and ``models`` are comma-joined; ``reasons`` is
    comma-joined ``modality:REASON`` pairs of the samples that failed."""

    time: float
    op: str
    outcome: str
    partition: str = ""
    station: str = ""
    modalities: str = ""
    reasons: str = ""
    latency_ms: float = 0.0
    models: str = ""
    error: str = ""
    count: int = 0

    def as_tuple(self) -> tuple[object, ...]:
        return tuple(getattr(self, c) for c in COLUMNS)


@dataclass(frozen=True)
class EventFilter:
    """Which events a query selects (every field optional). Times are epoch seconds, ``start``
    inclusive and ``end`` exclusive."""

    start: float | None = None
    end: float | None = None
    partition: str | None = None
    station: str | None = None
    op: str | None = None
    outcome: str | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        for column, op, value in (("time", ">=", self.start), ("time", "<", self.end),
                                  ("partition", "=", self.partition), ("station", "=", self.station),
                                  ("op", "=", self.op), ("outcome", "=", self.outcome)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def insert_many(conn: sqlite3.Connection, rows: Sequence[EventRow]) -> None:
    conn.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                     [r.as_tuple() for r in rows])


def select(conn: sqlite3.Connection, flt: EventFilter, *, batch: int = 10_000) -> Iterator[EventRow]:
    """Matching events in time order, fetched in batches (a million rows never sit in one list)."""
    where, args = flt.where()
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events{where} ORDER BY time, id", args)
    while True:
        chunk = cur.fetchmany(batch)
        if not chunk:
            return
        for row in chunk:
            yield EventRow(float(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]),
                           str(row[6]), float(row[7]), str(row[8]), str(row[9]), int(row[10]))


def prune(conn: sqlite3.Connection, before: float) -> int:
    """Delete events older than ``before`` (retention); returns how many went."""
    return int(conn.execute("DELETE FROM events WHERE time < ?", (before,)).rowcount)
