"""Idempotency keys: a write repeated with the same request id by the same caller writes nothing new.

Stations work over poor links: when the response to an enroll is lost after the commit, the station
retries with the same ``request_id``. The first write stores ``(caller, request_id)`` with the
operation's result *in the same SQLite transaction as the change*, so either both are durable or
neither is. A repeat inside the retention window finds the key (:func:`claim` raises :class:`Replay`
before anything is written) and gets the first call's result back -- but only if it is the same
request: the key carries a digest of the request's content, kept inside the encrypted result, and a
request id reused for *different* content (another person's photo, another reference id) is a
``Conflict`` (REQUEST_ID_REUSED) instead of the first person's answer.

The result is the engine's own result as JSON (never a protobuf: the engine does not know gRPC),
encrypted under the data key like templates, because a CreateToken result holds a token secret and an
Enroll result names suspected duplicates. Rows older than the retention window are purged by later
writes; an expired key is a fresh key.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.crypto import KeyRing
from engine.errors import Conflict, InvalidInput

__all__ = [
    "DEFAULT_RETENTION_S",
    "IdempotencyKey",
    "Idempotent",
    "Replay",
    "begin",
    "claim",
    "finish",
    "lookup",
    "remember",
]

DEFAULT_RETENTION_S = 24 * 3600.0


@dataclass(frozen=True)
class IdempotencyKey:
    """Who (``caller``: a token id) repeated which request (``request_id``) of which ``operation``
    ("enroll", "insert", ...); ``retention_s``: how long the key is honoured."""

    caller: str
    request_id: str
    operation: str
    retention_s: float = DEFAULT_RETENTION_S
    # sha256 hex of the request's content (``Engine._key``); "" = not compared
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.caller or not self.request_id or not self.operation:
            raise InvalidInput("an idempotency key needs a caller, a request id and an operation",
                               reason="INVALID_REQUEST")
        if self.retention_s <= 0:
            raise InvalidInput("idempotency retention must be positive", reason="INVALID_REQUEST")


@dataclass(frozen=True)
class Idempotent:
    """Passed to a store write: the key, and how to turn the write's outcome (whatever the write
    method returns) into the JSON-compatible result to remember."""

    key: IdempotencyKey
    result: Callable[[Any], Mapping[str, Any]]


class Replay(Exception):
    """Raised inside a write transaction (rolling it back) when the key was used already: carries the
    first call's remembered result."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("request already handled")
        self.result = result


# the remembered result's entry holding the request digest (never part of the result handed back)
_FINGERPRINT = "_request_sha256"


def _aad(key: IdempotencyKey) -> bytes:
    return f"nasname/v1|idempotency|{key.caller}|{key.request_id}|{key.operation}".encode()


def lookup(conn: sqlite3.Connection, keyring: KeyRing, key: IdempotencyKey,
           now: float | None = None) -> dict[str, Any] | None:
    """The remembered result of ``key`` (None when unknown or expired). The same request id used for
    another operation is a ``Conflict`` (REQUEST_ID_REUSED): the caller mixed up its ids."""
    now = time.time() if now is None else now
    row = conn.execute("SELECT operation, result, created FROM idempotency "
                       "WHERE caller = ? AND request_id = ?", (key.caller, key.request_id)).fetchone()
    if row is None or float(row[2]) < now - key.retention_s:
        return None
    if row[0] != key.operation:
        raise Conflict(f"request id {key.request_id} was already used for {row[0]}, not {key.operation}",
                       reason="REQUEST_ID_REUSED", details={"operation": str(row[0])})
    stored = IdempotencyKey(key.caller, key.request_id, str(row[0]), key.retention_s)
    result: dict[str, Any] = json.loads(keyring.decrypt(row[1], _aad(stored)))
    first = result.pop(_FINGERPRINT, "")
    if key.fingerprint and first and first != key.fingerprint:
        raise Conflict(f"request id {key.request_id} was already used for a different {key.operation} "
                       "request; a retry must repeat the same request, a new request needs a new id",
                       reason="REQUEST_ID_REUSED", details={"operation": key.operation})
    return result


def claim(conn: sqlite3.Connection, keyring: KeyRing, key: IdempotencyKey) -> None:
    """Inside the write transaction, before any change: raise :class:`Replay` when ``key`` was used."""
    found = lookup(conn, keyring, key)
    if found is not None:
        raise Replay(found)


def remember(conn: sqlite3.Connection, keyring: KeyRing, key: IdempotencyKey,
             result: Mapping[str, Any]) -> None:
    """Inside the same write transaction as the change: store ``result`` under ``key`` (replacing an
    expired row of the same key) and purge expired rows."""
    now = time.time()
    conn.execute("DELETE FROM idempotency WHERE created < ?", (now - key.retention_s,))
    body = dict(result)
    if key.fingerprint:
        body[_FINGERPRINT] = key.fingerprint
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    conn.execute("INSERT OR REPLACE INTO idempotency (caller, request_id, operation, result, created) "
                 "VALUES (?, ?, ?, ?, ?)",
                 (key.caller, key.request_id, key.operation, keyring.encrypt(text.encode(), _aad(key)), now))


def begin(conn: sqlite3.Connection, keyring: KeyRing, idem: Idempotent | None) -> None:
    """:func:`claim` when a write is idempotent (store write methods call this first)."""
    if idem is not None:
        claim(conn, keyring, idem.key)


def finish(conn: sqlite3.Connection, keyring: KeyRing, idem: Idempotent | None, outcome: Any) -> None:
    """:func:`remember` when a write is idempotent (store write methods call this last)."""
    if idem is not None:
        remember(conn, keyring, idem.key, idem.result(outcome))
