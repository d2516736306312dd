"""Giving memory back to the system after large requests (glibc only; elsewhere these are no-ops).

Request bodies reach tens of MiB (three images) and, once parsed and decoded, are freed. glibc keeps
freed memory in its heaps: a burst of 16 clients sending 28 MiB enrolls left a server several hundred
MiB above its baseline for good (tests/integration/test_service_memory.py, issue 18 item 8). Two
measures, both measured there:

- a fixed mmap threshold of 1 MiB (``mallopt``): every larger block gets its own mapping, unmapped
  when freed. By default glibc raises the threshold each time a large block is freed (up to 32 MiB),
  after which such blocks come from heaps it keeps;
- ``malloc_trim(0)`` at most every ``every_s`` seconds, and only after at least ``after_bytes`` of
  requests were received since the last trim: gRPC receives a message as many small slices, which
  come from the heaps, and trimming returns their free pages. A trim takes milliseconds, a few per
  large burst instead of one per call.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

from engine.periodic import Periodic

__all__ = ["Trimmer", "fix_mmap_threshold"]

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc malloc.h
_MMAP_THRESHOLD_BYTES = 1024 * 1024


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - only glibc has both
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def fix_mmap_threshold() -> bool:
    """Serve allocations of 1 MiB and more with their own mappings (see the module doc)."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


class Trimmer:
    """Counts request bytes (:meth:`received`, from the interceptor) and trims the heaps in a
    background thread once enough arrived since the last trim."""

    def __init__(self, *, every_s: float = 2.0, after_bytes: int = 32 * 1024 * 1024) -> None:
        self.every_s = every_s
        self.after_bytes = after_bytes
        self._libc = _libc()
        self._pending = 0
        self._lock = threading.Lock()
        self._ticker = Periodic("nasname-trim", every_s, self.trim_if_due)
        self.trims = 0

    def received(self, nbytes: int) -> None:
        with self._lock:
            self._pending += nbytes

    def trim_if_due(self) -> bool:
        with self._lock:
            if self._pending < self.after_bytes:
                return False
            self._pending = 0
        if self._libc is not None:
            self._libc.malloc_trim(0)
        self.trims += 1
        return True

    def start(self) -> None:
        if self._libc is not None:
            self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()
