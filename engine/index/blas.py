"""Control of numpy's bundled OpenBLAS thread pool (process-wide), for the sharded exact scan.

OpenBLAS keeps one global thread count; there is no per-call or per-thread setting that works in the
pthreads build numpy ships (``openblas_set_num_threads_local`` changes the global count too). So the
exact index only touches it when configured to (``FaceIndexOptions.exact_shards``), and logs it.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["get_openblas_threads", "set_openblas_threads"]

log = logging.getLogger(__name__)

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


_GETTERS = tuple(name.replace("_set_", "_get_") for name in _SETTERS)


def _function(names: tuple[str, ...]) -> Any:
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("lib*openblas*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                return fn
    return None


def get_openblas_threads() -> int | None:
    """Current thread count of numpy's OpenBLAS, None if it was not found."""
    fn = _function(_GETTERS)
    return None if fn is None else int(fn())


def set_openblas_threads(n: int) -> bool:
    """Set the thread count of numpy's OpenBLAS for the whole process. False if it was not found
    (e.g. numpy built against another BLAS); the caller then keeps working, just less parallel."""
    fn = _function(_SETTERS)
    if fn is None:
        log.warning("numpy's OpenBLAS not found; BLAS thread count left unchanged")
        return False
    fn(ctypes.c_int(n))
    log.info("numpy OpenBLAS set to %d thread(s) process-wide", n)
    return True
