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
from typing import IO, Any, BinaryIO

__all__ = ["atomic_write", "open_private", "private_dir", "write_atomic"]


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


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing, creating the file with mode 0600 (never readable by others,
    whatever the umask): what every file under a data directory or a job folder is written with."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, mode, **kwargs)


def private_dir(path: Path) -> Path:
    """``path`` as a directory, each missing component created with mode 0700 (``mkdir(parents=True)``
    would give the parents the umask's default)."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(str(path))
    return path
