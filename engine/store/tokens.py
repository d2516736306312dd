"""API tokens: only a hash of each secret is stored.

A secret is ``"nsk_" + 43 base64url chars`` (32 random bytes = 256 bits). With that much entropy a
plain domain-separated SHA-256 is enough (a slow password hash would only add latency to every RPC):
nobody can brute-force a 256-bit preimage, and the hash alone does not authenticate.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import sqlite3
import time

from engine.errors import Conflict, InvalidInput, NotFound
from engine.store.values import TokenInfo

__all__ = ["ADMIN_ROLE", "SECRET_PREFIX", "create", "find", "get", "hash_secret", "list_all", "revoke",
           "touch"]

SECRET_PREFIX = "nsk_"
_NAME_RE = re.compile(r"[\w.@ -]{1,64}")
_ROLE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
# The role that manages tokens (server.auth.Role.ADMIN; the store does not import the server).
ADMIN_ROLE = "admin"
# last_used is written at most this often per token, so authentication stays a read on the hot path
LAST_USED_RESOLUTION_S = 60.0

_COLUMNS = "id, name, role, created, last_used, revoked"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(b"nasname-token/v1|" + secret.encode()).digest()


def _info(row: tuple[object, ...]) -> TokenInfo:
    tid, name, role, created, last_used, revoked = row
    return TokenInfo(str(tid), str(name), str(role), float(created),  # type: ignore[arg-type]
                     None if last_used is None else float(last_used),  # type: ignore[arg-type]
                     None if revoked is None else float(revoked))  # type: ignore[arg-type]


def create(conn: sqlite3.Connection, name: str, role: str) -> tuple[TokenInfo, str]:
    """Insert a token (inside the caller's write transaction); returns its info and the secret, which
    exists nowhere else afterwards."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput("token name must be 1-64 letters, digits, spaces or . @ _ -",
                           reason="INVALID_TOKEN_NAME")
    if not _ROLE_RE.fullmatch(role):
        raise InvalidInput("role must be a lower-case identifier", reason="INVALID_ROLE")
    token_id = "tok_" + secrets.token_hex(8)
    secret = SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    now = time.time()
    conn.execute("INSERT INTO tokens (id, name, role, hash, created) VALUES (?, ?, ?, ?, ?)",
                 (token_id, name, role, hash_secret(secret), now))
    return TokenInfo(token_id, name, role, now, None, None), secret


def find(conn: sqlite3.Connection, secret: str) -> TokenInfo | None:
    """The active token whose secret this is, or None (unknown, malformed or revoked)."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 128:
        return None
    row = conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE hash = ? AND revoked IS NULL",
                       (hash_secret(secret),)).fetchone()
    return None if row is None else _info(row)


def get(conn: sqlite3.Connection, token_id: str) -> TokenInfo | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
    return None if row is None else _info(row)


def touch(conn: sqlite3.Connection, token_id: str, when: float) -> None:
    conn.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (when, token_id))


def list_all(conn: sqlite3.Connection) -> list[TokenInfo]:
    return [_info(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created, id")]


def revoke(conn: sqlite3.Connection, token_id: str) -> None:
    """Mark an active token revoked (inside the caller's write transaction). Raises ``NotFound`` when
    there is no such active token, ``Conflict`` (LAST_ADMIN_TOKEN) when it is the last active admin
    token: revoking it would leave nobody able to manage tokens over the API."""
    row = conn.execute("SELECT role FROM tokens WHERE id = ? AND revoked IS NULL", (token_id,)).fetchone()
    if row is None:
        raise NotFound(f"no active token {token_id}", reason="TOKEN_NOT_FOUND")
    if row[0] == ADMIN_ROLE:
        admins = conn.execute("SELECT COUNT(*) FROM tokens WHERE role = ? AND revoked IS NULL",
                              (ADMIN_ROLE,)).fetchone()[0]
        if int(admins) <= 1:
            raise Conflict(f"{token_id} is the last active admin token; create another admin token "
                           "before revoking it", reason="LAST_ADMIN_TOKEN")
    conn.execute("UPDATE tokens SET revoked = ? WHERE id = ?", (time.time(), token_id))
