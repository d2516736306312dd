"""Atomic snapshot files for derived indexes (an uncompressed .npz of named arrays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.fsutil import atomic_write

__all__ = ["atomic_savez"]


def atomic_savez(path: Path, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Write ``arrays`` as an uncompressed .npz at ``path``, crash-safely (``engine.fsutil``): a crash
    leaves the old or the new file, whole. Streams into the file (no second copy of a 1M index)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
