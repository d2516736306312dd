"""Console accounts (the web console's people; machines keep using API tokens, ``engine.store.tokens``).

Passwords are hashed with argon2id (``argon2-cffi``, its default cost); only the hash is stored. A
login for an unknown or disabled user still spends one hash verification, so response time does not
tell which usernames exist. ``user_id`` (``usr_`` + 16 hex digits), never the username, is the actor
in the audit log: a username may be a person's name, and the log must hold no personal data.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.errors import AlreadyExists, InvalidInput, NotFound
from engine.store import audit
from engine.store.values import UserInfo

if TYPE_CHECKING:
    from engine.store.db import Database

__all__ = ["MIN_PASSWORD_LENGTH", "UsersMixin"]

MIN_PASSWORD_LENGTH = 12
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_COLUMNS = "id, username, role, created, password_set, last_login, disabled"
_HASHER = PasswordHasher()
# verified against when the user does not exist, so unknown names cost as much as wrong passwords
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def _info(row: tuple[object, ...]) -> UserInfo:
    uid, username, role, created, password_set, last_login, disabled = row
    return UserInfo(str(uid), str(username), str(role), float(created),  # type: ignore[arg-type]
                    float(password_set),  # type: ignore[arg-type]
                    None if last_login is None else float(last_login),  # type: ignore[arg-type]
                    None if disabled is None else float(disabled))  # type: ignore[arg-type]


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
                           reason="WEAK_PASSWORD")
    if len(password) > 1024:
        raise InvalidInput("a password may have at most 1024 characters", reason="INVALID_REQUEST")


class UsersMixin:
    """Console-account methods of ``Store``."""

    if TYPE_CHECKING:
        db: Database

    def create_user(self, username: str, role: str, password: str, *, actor: str) -> UserInfo:
        """A new account. Raises ``InvalidInput`` (name, role, weak password), ``AlreadyExists``."""
        if not _USERNAME_RE.match(username):
            raise InvalidInput("a username is 2-32 lower-case letters, digits or . _ - "
                               "(starting with a letter or digit)", reason="INVALID_USERNAME")
        if not _ROLE_RE.match(role):
            raise InvalidInput("role must be a lower-case identifier", reason="INVALID_ROLE")
        _check_password(password)
        digest = _HASHER.hash(password)  # slow: outside the write lock
        now = time.time()
        user_id = "usr_" + secrets.token_hex(8)
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise AlreadyExists(f"user {username} exists", reason="USER_EXISTS")
            conn.execute("INSERT INTO users (id, username, role, hash, created, password_set) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (user_id, username, role, digest, now, now))
            audit.append(conn, actor, "create_user", None, {"user_id": user_id, "role": role})
        return UserInfo(user_id, username, role, now, now, None, None)

    def list_users(self) -> list[UserInfo]:
        with self.db.read() as conn:
            return [_info(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY username")]

    def get_user(self, user_id: str) -> UserInfo | None:
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else _info(row)

    def _user_by_name(self, conn: sqlite3.Connection, username: str) -> tuple[UserInfo, str]:
        row = conn.execute(f"SELECT {_COLUMNS}, hash FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise NotFound(f"no user {username}", reason="USER_NOT_FOUND")
        return _info(row[:-1]), str(row[-1])

    def login(self, username: str, password: str) -> UserInfo | None:
        """The active account for these credentials (its ``last_login`` updated and the login
        audited), or None: unknown user, disabled, or wrong password (indistinguishable on purpose)."""
        with self.db.read() as conn:
            try:
                user, digest = self._user_by_name(conn, username)
            except NotFound:
                user, digest = None, _DUMMY_HASH
        try:
            _HASHER.verify(digest, password)
            ok = user is not None and user.active
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or user is None:
            return None
        now = time.time()
        new_hash = _HASHER.hash(password) if _HASHER.check_needs_rehash(digest) else None
        with self.db.write() as conn:
            conn.execute("UPDATE users SET last_login = ? WHERE id = ?", (now, user.user_id))
            if new_hash is not None:  # the cost parameters were raised since this hash was made
                conn.execute("UPDATE users SET hash = ? WHERE id = ?", (new_hash, user.user_id))
            audit.append(conn, user.user_id, "login", None, {})
        return UserInfo(user.user_id, user.username, user.role, user.created, user.password_set, now, None)

    def disable_user(self, username: str, *, actor: str) -> UserInfo:
        """Refuse every later login and end the account's sessions (the console re-reads the account
        on each request). Raises ``NotFound``."""
        now = time.time()
        with self.db.write() as conn:
            user, _ = self._user_by_name(conn, username)
            conn.execute("UPDATE users SET disabled = COALESCE(disabled, ?) WHERE id = ?",
                         (now, user.user_id))
            audit.append(conn, actor, "disable_user", None, {"user_id": user.user_id})
        return UserInfo(user.user_id, user.username, user.role, user.created, user.password_set,
                        user.last_login, user.disabled or now)

    def reset_password(self, username: str, password: str, *, actor: str) -> UserInfo:
        """Set a new password and enable the account again (an admin resetting a password means the
        account to be used). Raises ``NotFound``, ``InvalidInput`` (weak password)."""
        _check_password(password)
        digest = _HASHER.hash(password)
        now = time.time()
        with self.db.write() as conn:
            user, _ = self._user_by_name(conn, username)
            conn.execute("UPDATE users SET hash = ?, password_set = ?, disabled = NULL WHERE id = ?",
                         (digest, now, user.user_id))
            audit.append(conn, actor, "reset_password", None, {"user_id": user.user_id})
        return UserInfo(user.user_id, user.username, user.role, user.created, now, user.last_login, None)
