"""The adjudication queue: pending records, their candidates, and the decisions taken on them.

A pending record is kept (encrypted templates and all) but is not searchable. Each adjudicator's
decision is appended (two-person review = two decisions); the *final* one resolves the case:
``distinct`` makes the record ACTIVE (it enters the indexes), ``same`` erases the pending record's
biometrics (status DELETED) because the person is already enrolled under the mate's id (kept with the
decision). A record may have several cases over time (an admin reopens a ``distinct`` decision with a
reason), at most one open at a time;
:meth:`AdjudicationMixin.history` lists them all.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import Conflict, InvalidInput, NotFound
from engine.store import audit, idempotency
from engine.store.values import CaseEvent, Decision, PendingCase, RecordStatus, WriteResult

if TYPE_CHECKING:
    from engine.crypto import KeyRing
    from engine.store.db import Database
    from engine.store.idempotency import Idempotent

__all__ = ["DECISIONS", "AdjudicationMixin"]

DECISIONS = ("same", "distinct")
_MAX_CANDIDATES_BYTES = 64 * 1024



# The columns ``_case`` reads, from a case joined to its record; and what makes a case open (the
# record still PENDING, no final decision). One text for the queue, its pages and a record's case.
_JOINED = "FROM adjudication a JOIN records r ON r.id = a.record_id "
_CASES = "SELECT r.id, r.ref_id, r.partition, a.created, a.candidates, a.outcome, a.id " + _JOINED
_OPEN = "a.outcome IS NULL AND r.status = 'pending'"

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
                   now: float, *, actor: str = "", reason: str = "") -> None:
        try:
            text = json.dumps([dict(c) for c in candidates], sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput("candidates must be JSON-compatible mappings",
                               reason="INVALID_REQUEST") from exc
        if len(text) > _MAX_CANDIDATES_BYTES:
            raise InvalidInput("too many candidates for one pending record", reason="INVALID_REQUEST")
        conn.execute("INSERT INTO adjudication (record_id, candidates, created, opened_by, reason) "
                     "VALUES (?, ?, ?, ?, ?)", (label, text, now, actor, reason))

    def open_case(self, ref_id: str, candidates: Sequence[Mapping[str, Any]], *, actor: str,
                  reason: str = "") -> WriteResult:
        """Open an adjudication case on an existing ACTIVE record (e.g. a de-duplication finding): the
        record becomes PENDING (out of every index once the change is applied) with ``candidates`` (the
        engine's candidate JSON: ``ref_id``, ``fused``, ``scores``, ``llrs``), in one transaction with
        its change row and an audit row. Raises ``NotFound`` (unknown or deleted id), ``Conflict``
        (``NOT_ACTIVE``; ``CASE_OPEN``; ``ALREADY_ADJUDICATED``: decided records come back only through
        :meth:`reopen`), ``InvalidInput`` (bad candidates)."""
        if not actor:
            raise InvalidInput("opening a case needs an actor", reason="INVALID_REQUEST")
        now = time.time()
        with self.db.write() as conn:
            label, status = self._live(conn, ref_id)
            row = conn.execute("SELECT outcome FROM adjudication WHERE record_id = ? "
                               "ORDER BY id DESC LIMIT 1", (label,)).fetchone()
            if row is not None:
                # a decided record is queued again only by an admin's reopen() with a reason, so that
                # de-duplication runs do not put the same decided pair back in front of adjudicators
                open_ = row[0] is None
                what = "has an open" if open_ else "already had an"
                raise Conflict(f"record {ref_id} {what} adjudication case" + ("" if open_ else
                               "; an admin can reopen it with a reason"),
                               reason="CASE_OPEN" if open_ else "ALREADY_ADJUDICATED",
                               details={"ref_id": ref_id})
            if status is not RecordStatus.ACTIVE:
                raise Conflict(f"record {ref_id} is {status.value}, not active", reason="NOT_ACTIVE",
                               details={"ref_id": ref_id, "status": status.value})
            self._open_case(conn, label, candidates, now, actor=actor, reason=reason)
            seq = self._set_status(conn, label, RecordStatus.PENDING)
            audit.append(conn, actor, "open_case", ref_id,
                         {"from": status.value, "candidates": len(candidates)})
        return WriteResult(ref_id, label, seq)

    def reopen(self, ref_id: str, *, actor: str, reason: str) -> WriteResult:
        """Reopen the last case of a record decided ``distinct`` (now ACTIVE): a new case with the same
        candidates, the record PENDING again, ``reason`` kept. A ``same`` decision erased the
        biometrics, so it cannot be reopened (the person enrolls again). Raises ``NotFound``,
        ``Conflict`` (``NOT_DECIDED``, ``CASE_OPEN``, ``BIOMETRICS_ERASED``), ``InvalidInput``."""
        if not actor or not reason.strip():
            raise InvalidInput("reopening a case needs an actor and a reason", reason="MISSING_REASON")
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute("SELECT id, status FROM records WHERE ref_id = ?", (ref_id,)).fetchone()
            if row is None:
                raise NotFound(f"reference id {ref_id} not found", details={"ref_id": ref_id})
            label, status = int(row[0]), RecordStatus(row[1])
            last = conn.execute("SELECT candidates, outcome FROM adjudication WHERE record_id = ? "
                                "ORDER BY id DESC LIMIT 1", (label,)).fetchone()
            if last is None:
                raise Conflict(f"record {ref_id} was never adjudicated", reason="NOT_DECIDED",
                               details={"ref_id": ref_id})
            if last[1] is None:
                raise Conflict(f"record {ref_id} has an open adjudication case", reason="CASE_OPEN",
                               details={"ref_id": ref_id})
            if last[1] == "same" or status is RecordStatus.DELETED:
                raise Conflict(f"record {ref_id} was decided 'same' and its biometrics were erased; enroll "
                               "the person again instead", reason="BIOMETRICS_ERASED",
                               details={"ref_id": ref_id})
            self._open_case(conn, label, json.loads(last[0]), now, actor=actor, reason=reason.strip())
            seq = self._set_status(conn, label, RecordStatus.PENDING)
            audit.append(conn, actor, "reopen_case", ref_id, {"from": status.value})
        return WriteResult(ref_id, label, seq)

    @staticmethod
    def _open_case_id(conn: sqlite3.Connection, label: int) -> int | None:
        row = conn.execute("SELECT id FROM adjudication WHERE record_id = ? AND outcome IS NULL",
                           (label,)).fetchone()
        return None if row is None else int(row[0])

    def pending(self, *, partition: str | None = None, limit: int = 100, after_label: int = 0
                ) -> list[PendingCase]:
        """Open cases (record still PENDING, no final decision), oldest label first; page with
        ``after_label = cases[-1].label``."""
        sql = _CASES + f"WHERE {_OPEN} AND r.id > ?"
        args: list[Any] = [after_label]
        if partition is not None:
            sql, args = sql + " AND r.partition = ?", [*args, partition]
        with self.db.read() as conn:
            rows = conn.execute(sql + " ORDER BY r.id LIMIT ?", [*args, limit]).fetchall()
            return [self._case(conn, row) for row in rows]

    def queue_page(self, *, partition: str | None = None, order: str = "age", limit: int = 50,
                   offset: int = 0) -> tuple[list[PendingCase], int]:
        """One page of the open cases and how many there are in all (the console's queue).
        ``order``: ``"age"`` (oldest case first) or ``"score"`` (highest candidate fused score first,
        then oldest), sorted in SQL so pages stay consistent however long the queue is."""
        if order not in ("age", "score") or not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("order must be age or score, limit in 1..1000, offset >= 0",
                               reason="INVALID_REQUEST")
        where = f"WHERE {_OPEN}"
        args: list[Any] = []
        if partition is not None:
            where, args = where + " AND r.partition = ?", [partition]
        best = ("(SELECT MAX(CAST(json_extract(j.value, '$.fused') AS REAL)) "
                "FROM json_each(a.candidates) j)")
        sort = "a.created, a.id" if order == "age" else f"COALESCE({best}, -1e308) DESC, a.created, a.id"
        with self.db.read() as conn:
            total = int(conn.execute("SELECT COUNT(*) " + _JOINED + where, args).fetchone()[0])
            rows = conn.execute(_CASES + where + f" ORDER BY {sort} LIMIT ? OFFSET ?",
                                [*args, limit, offset]).fetchall()
            return [self._case(conn, row) for row in rows], total

    def case(self, ref_id: str) -> PendingCase | None:
        """The latest adjudication case of a record (open or resolved), None when it never had one."""
        with self.db.read() as conn:
            row = conn.execute(_CASES + "WHERE r.ref_id = ? ORDER BY a.id DESC LIMIT 1",
                               (ref_id,)).fetchone()
            return None if row is None else self._case(conn, row)

    def history(self, ref_id: str) -> list[CaseEvent]:
        """Every case of the record, oldest first: when and by whom it was opened (or reopened, with
        the reason), then each decision with its mate, actor, comment and time. Unknown id: NotFound."""
        with self.db.read() as conn:
            row = conn.execute("SELECT id FROM records WHERE ref_id = ?", (ref_id,)).fetchone()
            if row is None:
                raise NotFound(f"reference id {ref_id} not found", details={"ref_id": ref_id})
            events: list[CaseEvent] = []
            cases = conn.execute("SELECT id, created, opened_by, reason FROM adjudication "
                                 "WHERE record_id = ? ORDER BY id", (int(row[0]),)).fetchall()
            for n, (case_id, created, opened_by, reason) in enumerate(cases):
                kind = "reopened" if n and reason else "opened"
                events.append(CaseEvent(kind, float(created), str(opened_by), comment=str(reason)))
                for actor, decision, mate, comment, t in conn.execute(
                        "SELECT actor, decision, mate_ref_id, comment, time FROM decisions "
                        "WHERE case_id = ? ORDER BY id", (case_id,)):
                    events.append(CaseEvent("decided", float(t), str(actor), str(decision), mate or "",
                                            str(comment)))
            return events

    @staticmethod
    def _case(conn: sqlite3.Connection, row: tuple[Any, ...]) -> PendingCase:
        label, ref_id, partition, created, candidates, outcome, case_id = row
        decisions = [Decision(str(a), str(d), str(c), float(t), m or "") for a, d, c, t, m in conn.execute(
            "SELECT actor, decision, comment, time, mate_ref_id FROM decisions WHERE case_id = ? ORDER BY id",
            (case_id,))]
        return PendingCase(str(ref_id), int(label), str(partition), float(created), json.loads(candidates),
                           decisions, outcome)

    def decide(self, ref_id: str, decision: str, *, actor: str, comment: str = "", final: bool = True,
               idem: Idempotent | None = None, mate: str | None = None) -> WriteResult | None:
        """Record one adjudicator's ``decision`` ("same" / "distinct") on a pending record; ``mate`` is
        the reference id a "same" record duplicates. When ``final``, resolve the case (see module doc)
        and return the resulting change; else None.

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
            case_id = self._open_case_id(conn, label)
            if status is not RecordStatus.PENDING or case_id is None:
                raise Conflict(f"record {ref_id} has no open adjudication case",
                               reason="NOT_PENDING", details={"ref_id": ref_id, "status": status.value})
            conn.execute("INSERT INTO decisions (case_id, actor, decision, mate_ref_id, comment, time) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (case_id, actor, decision, mate, comment, now))
            audit.append(conn, actor, "decide", ref_id,
                         {"decision": decision, "final": final, **({"mate": mate} if mate else {})})
            if not final:
                idempotency.finish(conn, self.keyring, idem, None)
                return None
            conn.execute("UPDATE adjudication SET outcome = ?, resolved = ? WHERE id = ?",
                         (decision, now, case_id))
            if decision == "distinct":
                seq = self._set_status(conn, label, RecordStatus.ACTIVE)
            else:
                seq = self._erase(conn, label)
            result = WriteResult(ref_id, label, seq)
            idempotency.finish(conn, self.keyring, idem, result)
        return result
