"""Crash-safe file replacement, used for every file nasname rewrites in place (manifests, calibration
files, index snapshots and their sidecar, dedup checkpoints).

A reader, or a process restarted after a crash, sees the old file or the whole new one, never a part:
write to a temporary file in the same directory, fsync it, rename it over the target, then fsync the
directory so the rename itself is durable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "write_atomic"]


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write`` writes into the binary file it is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data`` (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))
