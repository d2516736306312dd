"""FAISS-backed storage for the approximate / compressed face index kinds (placeholder)."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from engine.errors import ConfigurationError

__all__ = ["make_backend", "restore_backend"]


def make_backend(d: int, options: Any) -> Any:
    raise ConfigurationError(f"face index kind {options.kind} is not available yet")


def restore_backend(name: str, d: int, options: Any, arrays: dict[str, npt.NDArray[Any]]) -> Any:
    raise ConfigurationError(f"face index backend {name} is not available yet")
