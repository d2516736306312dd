"""Registers the default iris encoder (``engine.models.gabor``) with the model registry.

The graph is generated from formulas, so it is always available and built on first use.
"""

from __future__ import annotations

from pathlib import Path

from engine.models import gabor
from engine.models.manifest import ModelManifest
from engine.models.registry import ModelSpec, register

__all__: list[str] = []


def _build(directory: Path) -> ModelManifest:
    return gabor.write_encoder(gabor.DEFAULT_SPEC, directory)


register(ModelSpec(gabor.DEFAULT_NAME, "iris_encoder",
                   "iris encoder: analytic 2-D Gabor bank on a 32x512 rubber sheet -> 2048-bit code + mask",
                   _build))
