"""Shared helpers for the iris matching tests: a deliberately slow, independent numpy reference."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.types import IrisTemplate, ModelRef

MODEL = ModelRef("iris-test", "1")


def template(code: npt.NDArray[np.uint8], mask: npt.NDArray[np.uint8], columns: int,
             model: ModelRef = MODEL) -> IrisTemplate:
    return IrisTemplate(np.asarray(code, np.uint8), np.asarray(mask, np.uint8), columns, model)


def reference_similarity(pc: npt.NDArray[np.uint8], pm: npt.NDArray[np.uint8], gc: npt.NDArray[np.uint8],
                         gm: npt.NDArray[np.uint8], columns: int, max_shift: int, n_typical: float) -> float:
    """Best 1 - HD_norm over shifts, on unpacked bits (no popcount, no packing tricks)."""
    nbytes = pc.size
    bpc = nbytes // columns
    r = min(max_shift, (columns - 1) // 2)
    best = -np.inf
    gbits, gmbits = np.unpackbits(gc).astype(bool), np.unpackbits(gm).astype(bool)
    for s in range(-r, r + 1):
        p = np.unpackbits(np.roll(pc, s * bpc)).astype(bool)
        m = np.unpackbits(np.roll(pm, s * bpc)).astype(bool) & gmbits
        n = int(m.sum())
        if n == 0:
            sim = 0.0
        else:
            hd = float((p ^ gbits)[m].sum()) / n
            sim = 0.5 + (0.5 - hd) * np.sqrt(n / n_typical)
        best = max(best, sim)
    return float(np.clip(best, 0.0, 1.0))
