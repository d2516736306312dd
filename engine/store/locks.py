"""Concurrency control for a gallery: an in-process readers-writer lock and a per-directory process lock."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import Unavailable

__all__ = ["DirectoryLock", "RWLock"]


class RWLock:
    """Many readers or one writer; writer-preferring (a waiting writer stops new readers, so a steady
    stream of searches cannot starve an enrollment). Not re-entrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class DirectoryLock:
    """Exclusive ``flock`` on ``<directory>/LOCK``: one process owns a gallery directory at a time (two
    processes would each hold their own in-memory indexes and diverge). The OS releases it when the
    process dies, so a killed owner never leaves a stale lock."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "LOCK"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise Unavailable(f"gallery directory {directory} is in use by another process",
                              reason="GALLERY_LOCKED") from None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
