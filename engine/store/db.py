"""SQLite connections, transactions and the one place where sqlite3 errors become nasname errors.

Durability: WAL journal with ``synchronous=FULL`` makes every commit fsync the WAL before returning, so
a commit that returned survives a process kill and a power loss. One writer connection guarded by a
lock (SQLite allows one writer anyway; queueing in Python is cheaper than ``SQLITE_BUSY`` retries);
one reader connection per thread (WAL readers see the last committed state and never block the writer).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import IntegrityError, NasnameError, Unavailable

__all__ = ["Database", "translate"]

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS = 30_000


def translate(exc: sqlite3.Error) -> NasnameError:
    """Map a sqlite3 error to the nasname tree (the caller raises it ``from exc``)."""
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(f"database constraint violated: {text}", reason="CONSTRAINT")
    if isinstance(exc, sqlite3.OperationalError):
        # locked / busy / disk I/O error / read-only / disk full: the store cannot serve right now
        return Unavailable(f"database unavailable: {text}", reason="STORE_UNAVAILABLE")
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return Unavailable("the store is closed", reason="STORE_CLOSED")
    if isinstance(exc, sqlite3.DatabaseError):
        # "file is not a database", "database disk image is malformed"
        return IntegrityError(f"database file is damaged: {text}", reason="STORE_CORRUPT")
    return Unavailable(f"database error: {text}", reason="STORE_ERROR")


class Database:
    """Connections to one SQLite file. Use :meth:`write` and :meth:`read` as context managers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._setup: list[Callable[[sqlite3.Connection], None]] = []
        self._writer = self._connect()
        try:
            mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.Error as exc:
            self._writer.close()
            raise translate(exc) from exc
        if str(mode).lower() != "wal":
            self._writer.close()
            raise Unavailable(f"cannot switch {self.path} to WAL mode (got {mode})",
                              reason="STORE_UNAVAILABLE")

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False so close()
            # may run from any thread (each connection is still used by one thread at a time).
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=_BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            # freed pages are zeroed: deleting a record does not leave its ciphertext in free pages
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            for setup in self._setup:
                setup(conn)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return conn

    def on_connect(self, setup: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``setup`` on every connection, open and future (e.g. bind the audit chain key)."""
        with self._write_lock, self._readers_lock:
            self._setup.append(setup)
            for conn in (self._writer, *self._readers):
                setup(conn)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction on the writer connection; commit on success (the commit is durable
        when this block exits), rollback on any exception. Re-entrant within one thread is NOT
        supported: nest by passing the connection down."""
        with self._write_lock:
            if self._closed:
                raise Unavailable("the store is closed", reason="STORE_CLOSED")
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc) from exc
                raise

    @contextmanager
    def exclusive(self) -> Iterator[sqlite3.Connection]:
        """The writer connection under the write lock with no transaction open (for migrations, which
        manage their own transaction)."""
        with self._write_lock:
            if self._closed:
                raise Unavailable("the store is closed", reason="STORE_CLOSED")
            try:
                yield self._writer
            except sqlite3.Error as exc:
                self._rollback(self._writer)
                raise translate(exc) from exc

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction (one consistent snapshot of the database) on this thread's connection."""
        if self._closed:
            raise Unavailable("the store is closed", reason="STORE_CLOSED")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            with self._readers_lock:
                self._readers.append(conn)
            self._local.conn = conn
        if conn.in_transaction:  # nested read on this thread: share the enclosing snapshot
            try:
                yield conn
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            return
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        finally:
            self._rollback(conn)  # read-only: ending the transaction is all that is needed

    def maintain(self) -> dict[str, int]:
        """WAL checkpoint, VACUUM (rebuilds the file without free pages; with ``secure_delete`` on, a
        deleted record's bytes were already zeroed) and ``PRAGMA optimize``; writers wait meanwhile.
        Returns the file sizes before and after."""
        def size() -> int:
            return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal"))
                       if p.exists())

        before = size()
        with self.exclusive() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA optimize")
            busy = int(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
        if busy:
            log.info("WAL checkpoint after VACUUM deferred: readers were active")
        return {"bytes_before": before, "bytes_after": size()}

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close every connection (idempotent)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                readers, self._readers = self._readers, []
            for conn in readers:
                conn.close()
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.warning("WAL checkpoint at close failed; the WAL is replayed on next open")
            self._writer.close()
