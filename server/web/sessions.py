"""Console sessions (server-side, in memory) and the failed-login limiter.

A session is a random 256-bit id in a cookie (HttpOnly, Secure, SameSite=Strict) that maps to the
account's id, its CSRF token and the time it was last used. Nothing else lives in the cookie, so
nothing in it can be forged or read. Sessions end at logout, after ``idle_timeout_s`` without a
request, and when the server restarts (people log in again; nothing is lost). A login replaces the
session id (no fixation). Anonymous sessions exist only to carry the login form's CSRF token.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["COOKIE", "MAX_REPORTS", "LoginLimiter", "Session", "SessionStore"]

COOKIE = "nasname_session"
MAX_REPORTS = 3  # built reports held per session (a report with charts is a few hundred kB)
_MAX_SESSIONS = 10_000  # anonymous sessions are cheap to create: bound the memory they can take


@dataclass
class Session:
    sid: str
    csrf: str
    last_seen: float
    user_id: str | None = None
    flash: list[str] = field(default_factory=list)
    # reports built in this session (id -> file name -> bytes), newest last: what the report page's
    # frame and download links serve; bounded by MAX_REPORTS, gone when the session ends
    reports: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def keep_report(self, files: dict[str, bytes]) -> str:
        """Hold a built report's files under a fresh id (the oldest beyond ``MAX_REPORTS`` go)."""
        report_id = secrets.token_urlsafe(12)
        self.reports[report_id] = files
        while len(self.reports) > MAX_REPORTS:
            del self.reports[next(iter(self.reports))]
        return report_id


class SessionStore:
    def __init__(self, idle_timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._now = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _new(self, user_id: str | None) -> Session:
        now = self._now()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, user_id)
        with self._lock:
            if len(self._sessions) >= _MAX_SESSIONS:
                self._expire(now)
            if len(self._sessions) >= _MAX_SESSIONS:  # still full: drop the oldest anonymous ones
                anon = sorted((x for x in self._sessions.values() if x.user_id is None),
                              key=lambda x: x.last_seen)
                for x in anon[: len(anon) // 2 + 1]:
                    del self._sessions[x.sid]
            self._sessions[s.sid] = s
        return s

    def _expire(self, now: float) -> None:
        for sid in [k for k, v in self._sessions.items() if now - v.last_seen > self.idle_timeout_s]:
            del self._sessions[sid]

    def anonymous(self) -> Session:
        return self._new(None)

    def get(self, sid: str | None) -> Session | None:
        """The live session for ``sid`` (its idle clock restarted), or None (unknown or timed out)."""
        if not sid:
            return None
        now = self._now()
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            if now - s.last_seen > self.idle_timeout_s:
                del self._sessions[sid]
                return None
            s.last_seen = now
            return s

    def login(self, old: Session | None, user_id: str) -> Session:
        """A fresh session for ``user_id``; the old (anonymous) one ends."""
        self.end(old)
        return self._new(user_id)

    def end(self, s: Session | None) -> None:
        if s is not None:
            with self._lock:
                self._sessions.pop(s.sid, None)

    def end_user(self, user_id: str) -> None:
        with self._lock:
            for sid in [k for k, v in self._sessions.items() if v.user_id == user_id]:
                del self._sessions[sid]


class LoginLimiter:
    """At most ``failures`` failed logins per key (username; client address) in a sliding window of
    ``window_s`` seconds; while a key is over, every login attempt for it is refused unchecked."""

    def __init__(self, failures: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window_s = window_s
        self._now = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._seen.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> float:
        """Seconds until every key may try again (0: allowed now)."""
        now = self._now()
        wait = 0.0
        with self._lock:
            for key in keys:
                q = self._recent(key, now)
                if len(q) >= self.failures:
                    wait = max(wait, self.window_s - (now - q[0]))
        return wait

    def failed(self, *keys: str) -> None:
        now = self._now()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._seen.pop(key, None)
