"""The adjudication queue: pending records, their candidates, and the decisions taken on them.

A pending record is kept (encrypted templates and all) but is not searchable. Each adjudicator's
decision is appended (two-person review = two decisions); the *final* one resolves the case:
``distinct`` makes the record ACTIVE (it enters the indexes), ``same`` erases the pending record's
biometrics (status DELETED) because the person is already enrolled under a candidate's id; the case
row keeps the candidates, so the link between the two ids stays on record.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import Conflict, InvalidInput
from engine.store import audit, idempotency
from engine.store.values import Decision, PendingCase, RecordStatus, WriteResult

if TYPE_CHECKING:
    from engine.crypto import KeyRing
    from engine.store.db import Database
    from engine.store.idempotency import Idempotent

__all__ = ["DECISIONS", "AdjudicationMixin"]

DECISIONS = ("same", "distinct")
_MAX_CANDIDATES_BYTES = 64 * 1024


class AdjudicationMixin:
    """Adjudication methods of ``Store`` (kept in their own module for size)."""

    if TYPE_CHECKING:
        db: Database
        keyring: KeyRing

        def _live(self, conn: sqlite3.Connection, ref_id: str) -> tuple[int, RecordStatus]: ...
        def _set_status(self, conn: sqlite3.Connection, label: int, status: RecordStatus) -> int: ...
        def _erase(self, conn: sqlite3.Connection, label: int) -> int: ...

    @staticmethod
    def _open_case(conn: sqlite3.Connection, label: int, candidates: Sequence[Mapping[str, Any]],
                   now: float) -> None:
        try:
            text = json.dumps([dict(c) for c in candidates], sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput("candidates must be JSON-compatible mappings",
                               reason="INVALID_REQUEST") from exc
        if len(text) > _MAX_CANDIDATES_BYTES:
            raise InvalidInput("too many candidates for one pending record", reason="INVALID_REQUEST")
        conn.execute("INSERT INTO adjudication (record_id, candidates, created) VALUES (?, ?, ?)",
                     (label, text, now))

    def open_case(self, ref_id: str, candidates: Sequence[Mapping[str, Any]], *, actor: str
                  ) -> WriteResult:
        """Open an adjudication case on an existing ACTIVE record (e.g. a de-duplication finding): the
        record becomes PENDING (out of every index once the change is applied) with ``candidates`` (the
        engine's candidate JSON: ``ref_id``, ``fused``, ``scores``, ``llrs``), in one transaction with
        its change row and an audit row. Raises ``NotFound`` (unknown or deleted id), ``Conflict``
        (``NOT_ACTIVE``; ``CASE_OPEN``; ``ALREADY_ADJUDICATED``: the schema keeps one case per record,
        so a record decided once cannot be queued again), ``InvalidInput`` (bad candidates)."""
        if not actor:
            raise InvalidInput("opening a case needs an actor", reason="INVALID_REQUEST")
        now = time.time()
        with self.db.write() as conn:
            label, status = self._live(conn, ref_id)
            row = conn.execute("SELECT outcome FROM adjudication WHERE record_id = ?", (label,)).fetchone()
            if row is not None:
                open_ = row[0] is None
                what = "has an open" if open_ else "already had an"
                raise Conflict(f"record {ref_id} {what} adjudication case",
                               reason="CASE_OPEN" if open_ else "ALREADY_ADJUDICATED",
                               details={"ref_id": ref_id})
            if status is not RecordStatus.ACTIVE:
                raise Conflict(f"record {ref_id} is {status.value}, not active", reason="NOT_ACTIVE",
                               details={"ref_id": ref_id, "status": status.value})
            self._open_case(conn, label, candidates, now)
            seq = self._set_status(conn, label, RecordStatus.PENDING)
            audit.append(conn, actor, "open_case", ref_id,
                         {"from": status.value, "candidates": len(candidates)})
        return WriteResult(ref_id, label, seq)

    def pending(self, *, partition: str | None = None, limit: int = 100, after_label: int = 0
                ) -> list[PendingCase]:
        """Open cases (record still PENDING, no final decision), oldest label first; page with
        ``after_label = cases[-1].label``."""
        sql = ("SELECT r.id, r.ref_id, r.partition, a.created, a.candidates, a.outcome "
               "FROM adjudication a JOIN records r ON r.id = a.record_id "
               "WHERE a.outcome IS NULL AND r.status = 'pending' AND r.id > ?")
        args: list[Any] = [after_label]
        if partition is not None:
            sql, args = sql + " AND r.partition = ?", [*args, partition]
        with self.db.read() as conn:
            rows = conn.execute(sql + " ORDER BY r.id LIMIT ?", [*args, limit]).fetchall()
            return [self._case(conn, row) for row in rows]

    def case(self, ref_id: str) -> PendingCase | None:
        """The adjudication case of a record (open or resolved), None when it never had one."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT r.id, r.ref_id, r.partition, a.created, a.candidates, a.outcome "
                "FROM adjudication a JOIN records r ON r.id = a.record_id WHERE r.ref_id = ?",
                (ref_id,)).fetchone()
            return None if row is None else self._case(conn, row)

    @staticmethod
    def _case(conn: sqlite3.Connection, row: tuple[Any, ...]) -> PendingCase:
        label, ref_id, partition, created, candidates, outcome = row
        decisions = [Decision(str(a), str(d), str(c), float(t)) for a, d, c, t in conn.execute(
            "SELECT actor, decision, comment, time FROM decisions WHERE record_id = ? ORDER BY id", (label,))]
        return PendingCase(str(ref_id), int(label), str(partition), float(created), json.loads(candidates),
                           decisions, outcome)

    def decide(self, ref_id: str, decision: str, *, actor: str, comment: str = "", final: bool = True,
               idem: Idempotent | None = None) -> WriteResult | None:
        """Record one adjudicator's ``decision`` ("same" / "distinct") on a pending record. When
        ``final``, resolve the case (see module doc) and return the resulting change; else None.

        Raises ``NotFound`` (unknown id), ``Conflict`` (record not pending or case already closed),
        ``InvalidInput`` (bad decision). ``idem``: as for ``Store.insert``."""
        if decision not in DECISIONS:
            raise InvalidInput(f"decision must be one of {', '.join(DECISIONS)}", reason="INVALID_DECISION")
        if not actor:
            raise InvalidInput("a decision needs an actor", reason="INVALID_REQUEST")
        now = time.time()
        with self.db.write() as conn:
            idempotency.begin(conn, self.keyring, idem)
            label, status = self._live(conn, ref_id)
            row = conn.execute("SELECT outcome FROM adjudication WHERE record_id = ?", (label,)).fetchone()
            if status is not RecordStatus.PENDING or row is None or row[0] is not None:
                raise Conflict(f"record {ref_id} has no open adjudication case",
                               reason="NOT_PENDING", details={"ref_id": ref_id, "status": status.value})
            conn.execute("INSERT INTO decisions (record_id, actor, decision, comment, time) "
                         "VALUES (?, ?, ?, ?, ?)", (label, actor, decision, comment, now))
            audit.append(conn, actor, "decide", ref_id, {"decision": decision, "final": final})
            if not final:
                idempotency.finish(conn, self.keyring, idem, None)
                return None
            conn.execute("UPDATE adjudication SET outcome = ?, resolved = ? WHERE record_id = ?",
                         (decision, now, label))
            if decision == "distinct":
                seq = self._set_status(conn, label, RecordStatus.ACTIVE)
            else:
                seq = self._erase(conn, label)
            result = WriteResult(ref_id, label, seq)
            idempotency.finish(conn, self.keyring, idem, result)
        return result
