"""Append-only audit log with a keyed hash chain (HMAC-SHA256 under a key derived from the data key).

Each row stores ``hash = HMAC(k, "nasname-audit/v2|" || prev_hash || canonical JSON of (seq, time,
actor, action, ref_id, details))`` and the previous row's hash (32 zero bytes for the first row). The
key ``k`` is ``KeyRing.derive("audit")`` of the data key: it is never in the database, so whoever can
edit the file cannot recompute the chain after editing a row. The store binds the key to its own
connections as the SQL function ``nasname_audit_mac`` (:func:`bind`): every writer that appends through
the store's transaction appends keyed rows, and a connection opened without the key cannot append.

Deleting the newest rows leaves a valid chain; that is caught against an *anchor* (a row's seq and
MAC kept outside the database: the snapshot sidecar, the periodic log line, backups). :func:`verify`
checks the chain from an anchor (quick, at open) or in full (``nasname check``) and names the first bad
row, the kind of damage, and a missing tail.

Migration from the plain SHA-256 chain of older databases (rows before ``keyed_from``): the chain
state ``meta['audit.chain']`` records the first keyed seq and the data key it is keyed with (one
segment per data key, for key rotation), under its own MAC. Legacy rows keep their plain hashes;
the first keyed row (an ``audit_chain_keyed`` row written at migration) chains from the last legacy
hash, so from then on an edit of a legacy row that recomputes the plain chain breaks the keyed row
after it. ``details`` must hold no biometric or
personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.crypto import KeyRing
from engine.errors import IntegrityError
from engine.store.values import AuditReport

__all__ = ["AuditAnchor", "ChainState", "append", "bind", "entries", "entries_of", "head", "open_chain",
           "verify"]

log = logging.getLogger(__name__)

_GENESIS = bytes(32)
_PURPOSE = "audit"
_SQL_MAC = "nasname_audit_mac"
_STATE_KEY = "audit.chain"
_DOMAIN = b"nasname-audit/v2|"


@dataclass(frozen=True)
class AuditAnchor:
    """A copy of the chain's head kept outside the database: row ``seq`` had the MAC ``head`` (hex)."""

    seq: int
    head: str


@dataclass(frozen=True)
class ChainState:
    """Which rows are keyed with which key: ``segments`` = ``(first seq, data key id)`` in seq order;
    rows before the first segment are legacy (plain SHA-256). A new segment starts when the data key
    rotates (the active key differs from the newest segment's), so that old keys may later leave the
    ring: their rows then stay chained but cannot be re-checked (``AuditReport.unverified_rows``).
    ``keys``: the derived chain key of each segment whose data key the ring holds."""

    segments: tuple[tuple[int, str], ...]
    keys: dict[str, bytes]

    @property
    def keyed_from(self) -> int | None:
        return self.segments[0][0] if self.segments else None

    def key_for(self, seq: int) -> tuple[bool, bytes | None]:
        """(keyed?, key or None when keyed with a data key the ring lacks) for row ``seq``."""
        kid = None
        for first, key_id in self.segments:
            if seq >= first:
                kid = key_id
        return (False, None) if kid is None else (True, self.keys.get(kid))


def _body(seq: int, when: float, actor: str, action: str, ref_id: str | None, details: str) -> bytes:
    return json.dumps([seq, repr(when), actor, action, ref_id, details], separators=(",", ":")).encode()


def _plain(prev: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev + body).digest()


def _keyed(key: bytes, prev: bytes, body: bytes) -> bytes:
    return hmac.digest(key, _DOMAIN + prev + body, "sha256")  # one-shot, in C


def _state_mac(key: bytes, segments: tuple[tuple[int, str], ...]) -> str:
    text = "|".join(f"{first}:{kid}" for first, kid in segments)
    return hmac.new(key, f"nasname-audit-chain/v2|{text}".encode(), hashlib.sha256).hexdigest()


def bind(conn: sqlite3.Connection, key: bytes) -> None:
    """Give ``conn`` the chain key (as an SQL function used by :func:`append`)."""
    conn.create_function(_SQL_MAC, 2, lambda prev, body: _keyed(key, bytes(prev), bytes(body)),
                         deterministic=True)


def append(conn: sqlite3.Connection, actor: str, action: str, ref_id: str | None = None,
           details: Mapping[str, Any] | None = None) -> int:
    """Add one keyed row inside the caller's write transaction (so the audited change and its audit
    row commit together). ``conn`` must be a store connection (:func:`bind`). Returns the row's seq."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev_seq, prev = (int(row[0]), bytes(row[1])) if row else (0, _GENESIS)
    # AUTOINCREMENT never reuses a number, so seq = last + 1 unless rows were removed (the chain
    # then fails anyway); ask SQLite for the real next value to stay exact.
    seq_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
    seq = max(prev_seq, int(seq_row[0]) if seq_row else 0) + 1
    when = time.time()
    text = json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"))
    digest = conn.execute(f"SELECT {_SQL_MAC}(?, ?)",
                          (prev, _body(seq, when, actor, action, ref_id, text))).fetchone()[0]
    conn.execute(
        "INSERT INTO audit (seq, time, actor, action, ref_id, details, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, when, actor, action, ref_id, text, prev, bytes(digest)),
    )
    return seq


def open_chain(conn: sqlite3.Connection, keyring: KeyRing) -> tuple[ChainState, bytes]:
    """The chain state and the key new rows are keyed with, inside the caller's write transaction.

    A database without a chain state (new, or written by an older nasname) is keyed from the next seq
    with the active data key; when it holds legacy rows, an ``audit_chain_keyed`` row records how many
    and whether their plain chain was intact. When the data key has rotated, a new segment starts
    with an ``audit_chain_rekeyed`` row. Raises ``IntegrityError`` (AUDIT_TAMPERED) when the recorded
    state fails its MAC (moving the start of the keyed chain would let rows be re-hashed unkeyed)."""
    active_kid, active_key = keyring.derive(_PURPOSE)
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_STATE_KEY,)).fetchone()
    segments: tuple[tuple[int, str], ...] = ()
    if row is not None:
        try:
            raw = json.loads(row[0])
            segments = tuple((int(first), str(kid)) for first, kid in raw["segments"])
            mac = str(raw["mac"])
            if not segments:
                raise ValueError("no segment")
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"the audit chain state is malformed: {exc}",
                                 reason="AUDIT_TAMPERED") from exc
    keys: dict[str, bytes] = {}
    for _, kid in segments:
        try:
            keys[kid] = keyring.derive(_PURPOSE, kid)[1]
        except IntegrityError:
            log.warning("audit rows keyed with data key %s cannot be re-checked: that key is not in the "
                        "key ring", kid)
    if segments:
        newest = keys.get(segments[-1][1])
        if newest is not None and not hmac.compare_digest(mac, _state_mac(newest, segments)):
            raise IntegrityError("the audit chain state fails its MAC (edited?); restore the database "
                                 "from a backup", reason="AUDIT_TAMPERED")
        if segments[-1][1] == active_kid:
            return ChainState(segments, keys), active_key
    last = conn.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM audit").fetchone()
    legacy = None if segments or not int(last[1]) else _walk(conn, None, ChainState((), {}), None)
    segments += ((int(last[0]) + 1, active_kid),)
    keys[active_kid] = active_key
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_STATE_KEY, json.dumps(
        {"segments": [list(s) for s in segments], "mac": _state_mac(active_key, segments)})))
    bind(conn, active_key)
    if legacy is not None:
        append(conn, "system", "audit_chain_keyed",
               details={"legacy_rows": int(last[1]), "legacy_first_bad_seq": legacy.first_bad_seq})
        if legacy.ok:
            log.info("audit chain keyed from seq %d (%d older rows pinned)", segments[-1][0], int(last[1]))
        else:
            log.error("AUDIT LOG: the plain chain of the older rows was already broken at seq %s (%s); "
                      "keyed from seq %d on", legacy.first_bad_seq, legacy.problem, segments[-1][0])
    elif len(segments) > 1:
        append(conn, "system", "audit_chain_rekeyed", details={"previous_key_id": segments[-2][1]})
        log.info("audit chain rekeyed from seq %d (data key rotated)", segments[-1][0])
    return ChainState(segments, keys), active_key


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


def head(conn: sqlite3.Connection) -> AuditAnchor | None:
    """The newest row's seq and MAC (None for an empty log): what anchors keep."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else AuditAnchor(int(row[0]), bytes(row[1]).hex())


def verify(conn: sqlite3.Connection, state: ChainState, anchor: AuditAnchor | None = None,
           *, quick: bool = False) -> AuditReport:
    """Recompute the chain (streams; constant memory) and compare it with ``anchor``.

    Full (default): every row. ``quick`` with an anchor: only the anchored row and the rows after it
    (what the gallery does at open). The report names the first bad row and how it is bad (edited;
    rows missing before it), and ``missing_tail`` when the anchor, or SQLite's own sequence counter,
    says newer rows existed than the log now holds."""
    start = anchor.seq if quick and anchor is not None else None
    report = _walk(conn, start, state, anchor)
    top = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0])
    counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
    expected = max(anchor.seq if anchor else 0, int(counter[0]) if counter else 0)
    return replace(report, missing_tail=(top, expected) if expected > top else None,
                   keyed_from=state.keyed_from, anchor_seq=anchor.seq if anchor else None, last_seq=top)


def _walk(conn: sqlite3.Connection, start: int | None, state: ChainState,
          anchor: AuditAnchor | None) -> AuditReport:
    """The chain check itself, from the first row or (``start``) from the anchored row."""
    rows = unverified = 0
    prev: bytes | None = None
    prev_seq: int | None = None
    if start is not None and conn.execute("SELECT 1 FROM audit WHERE seq = ?", (start,)).fetchone() is None:
        return AuditReport(0, start, problem=f"the anchored row {start} is gone")
    sql = ("SELECT seq, time, actor, action, ref_id, details, prev_hash, hash FROM audit "
           "WHERE seq >= ? ORDER BY seq")
    for seq, when, actor, action, ref_id, details, stored_prev, stored in conn.execute(sql, (start or 0,)):
        rows += 1
        seq = int(seq)
        stored_prev, stored = bytes(stored_prev), bytes(stored)
        if prev is None:  # the first row looked at: genesis, or (quick) the anchored row itself
            prev = _GENESIS if start is None else stored_prev
            if start is None and seq != 1:
                return AuditReport(rows, seq, problem=f"rows before seq {seq} are missing (deleted)")
        elif prev_seq is not None and seq != prev_seq + 1:
            return AuditReport(rows, seq, problem=f"rows {prev_seq + 1}..{seq - 1} are missing (deleted)")
        if stored_prev != prev:
            return AuditReport(rows, seq, problem=f"row {seq} does not follow row {prev_seq} (edited or "
                                                  "replaced rows before it)")
        keyed, key = state.key_for(seq)
        body = _body(seq, float(when), str(actor), str(action), ref_id, str(details))
        if keyed and key is None:  # keyed with a data key no longer in the ring: chained, not checkable
            unverified += 1
            expected = stored
        else:
            expected = _keyed(key, prev, body) if key is not None else _plain(prev, body)
        if not hmac.compare_digest(stored, expected):
            return AuditReport(rows, seq, problem=f"row {seq} was edited (its MAC does not match it)")
        if anchor is not None and seq == anchor.seq and stored.hex() != anchor.head:
            return AuditReport(rows, seq, problem=f"row {seq} differs from the anchored copy of the head")
        prev, prev_seq = expected, seq
    return AuditReport(rows, None, unverified_rows=unverified)
