"""Append-only audit log with a SHA-256 hash chain.

Each row stores ``hash = sha256(prev_hash || canonical JSON of (seq, time, actor, action, ref_id,
details))`` and the previous row's hash (32 zero bytes for the first row). Editing any row's content,
or deleting or reordering rows in the middle, breaks the chain at that row, which :func:`verify`
reports. (Truncating the newest rows is not detectable from the file alone; an external copy of the
head hash, e.g. in backups, covers that.) ``details`` must hold no biometric or personal data.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from engine.store.values import AuditReport

__all__ = ["append", "entries", "entries_of", "verify"]

_GENESIS = bytes(32)


def _digest(prev: bytes, seq: int, when: float, actor: str, action: str, ref_id: str | None,
            details: str) -> bytes:
    body = json.dumps([seq, repr(when), actor, action, ref_id, details], separators=(",", ":"))
    return hashlib.sha256(prev + body.encode()).digest()


def append(conn: sqlite3.Connection, actor: str, action: str, ref_id: str | None = None,
           details: Mapping[str, Any] | None = None) -> int:
    """Add one row inside the caller's write transaction (so the audited change and its audit row
    commit together). Returns the row's sequence number."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev_seq, prev = (int(row[0]), bytes(row[1])) if row else (0, _GENESIS)
    # AUTOINCREMENT never reuses a number, so seq = last + 1 unless rows were removed (the chain
    # then fails anyway); ask SQLite for the real next value to stay exact.
    seq_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
    seq = max(prev_seq, int(seq_row[0]) if seq_row else 0) + 1
    when = time.time()
    text = json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"))
    digest = _digest(prev, seq, when, actor, action, ref_id, text)
    conn.execute(
        "INSERT INTO audit (seq, time, actor, action, ref_id, details, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, when, actor, action, ref_id, text, prev, digest),
    )
    return seq


def entries(conn: sqlite3.Connection, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Rows with ``seq > after`` in order, as plain dicts (``details`` decoded)."""
    rows = conn.execute(
        "SELECT seq, time, actor, action, ref_id, details FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [_entry(r) for r in rows]


def entries_of(conn: sqlite3.Connection, ref_id: str, *, limit: int = 500) -> list[dict[str, Any]]:
    """The newest ``limit`` rows about ``ref_id``, oldest first (index ``audit_by_ref``)."""
    rows = conn.execute(
        "SELECT seq, time, actor, action, ref_id, details FROM audit WHERE ref_id = ? "
        "ORDER BY seq DESC LIMIT ?", (ref_id, limit)).fetchall()
    return [_entry(r) for r in reversed(rows)]


def _entry(r: tuple[Any, ...]) -> dict[str, Any]:
    return {"seq": r[0], "time": r[1], "actor": r[2], "action": r[3], "ref_id": r[4],
            "details": json.loads(r[5])}


def verify(conn: sqlite3.Connection) -> AuditReport:
    """Recompute the chain over every row (streams; constant memory)."""
    prev = _GENESIS
    count = 0
    cursor = conn.execute(
        "SELECT seq, time, actor, action, ref_id, details, prev_hash, hash FROM audit ORDER BY seq")
    for seq, when, actor, action, ref_id, details, stored_prev, stored in cursor:
        count += 1
        expected = _digest(prev, int(seq), float(when), str(actor), str(action), ref_id, str(details))
        if bytes(stored_prev) != prev or bytes(stored) != expected:
            return AuditReport(rows=count, first_bad_seq=int(seq))
        prev = expected
    return AuditReport(rows=count, first_bad_seq=None)
