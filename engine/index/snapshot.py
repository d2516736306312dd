"""Snapshot files for derived indexes: an uncompressed .npz of named arrays, written to a path
(atomically) or into a stream (the gallery's sealed, encrypted snapshot files: ``engine.store.sealed``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from engine.fsutil import atomic_write

__all__ = ["atomic_savez"]


def atomic_savez(target: Path | BinaryIO, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Write ``arrays`` as an uncompressed .npz: into ``target`` when it is a stream, else at the path
    ``target`` crash-safely (``engine.fsutil``): a crash leaves the old or the new file, whole. Streams
    (no second copy of a 1M index)."""
    if isinstance(target, str | Path):
        atomic_write(Path(target), lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
    else:
        np.savez(target, **arrays)  # type: ignore[arg-type]
