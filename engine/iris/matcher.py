"""Pairwise iris matching: masked fractional Hamming distance, minimised over circular shifts, with
Daugman's normalisation for the number of bits compared, exposed as a similarity.

For one shift ``s`` (the probe rolled by ``s`` columns), ``n`` = bits valid in both masks and
``d`` = those that differ::

    HD_raw  = d / n
    HD_norm = 0.5 - (0.5 - HD_raw) * sqrt(n / n_typical)
    similarity = clip(1 - HD_norm, 0, 1)

The shift kept is the one with the *lowest HD_norm* (highest similarity), so the ranking of the 1:N
index (``engine.index.iris``) and this matcher agree exactly; ties go to the smallest |shift|.

``n_typical`` (Daugman, "How iris recognition works", 2004: 911 bits mutually available in a typical
comparison of his 2048-bit codes) scales a comparison that saw more bits than usual away from 0.5
and one that saw fewer towards 0.5, so a heavily occluded pair is not over-trusted. Default here:
``911 * nbits / 2048`` (911 for the production 2048-bit code). Where the pipeline's typical overlap is
much larger than 911 bits, strong genuine pairs saturate at similarity 1.0; set ``n_typical`` to the
measured median bits compared if that matters to calibration.

Zero overlap (no bit valid in both masks at any shift) gives ``similarity = 0.0`` with
``reason = "NO_OVERLAP"`` and NaN distances; nothing is divided by zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidInput, ModelMismatch
from engine.index.hamming import shift_order
from engine.types import IrisTemplate

__all__ = ["DAUGMAN_N_TYPICAL", "IrisMatcher", "MatchParams", "MatchResult", "default_n_typical"]

DAUGMAN_N_TYPICAL = 911.0  # bits mutually available in a typical comparison of 2048-bit codes


def default_n_typical(nbits: int) -> float:
    """Daugman's 911 for 2048-bit codes, scaled in proportion to the code size."""
    return DAUGMAN_N_TYPICAL * nbits / 2048.0


@dataclass(frozen=True)
class MatchParams:
    """``max_shift`` in columns (each way); ``n_typical`` None = ``default_n_typical(nbits)``."""

    max_shift: int = 15
    n_typical: float | None = None

    def __post_init__(self) -> None:
        if self.max_shift < 0:
            raise InvalidInput("max_shift must be >= 0", reason="INVALID_CONFIG")
        if self.n_typical is not None and not (self.n_typical > 0 and math.isfinite(self.n_typical)):
            raise InvalidInput("n_typical must be a positive number", reason="INVALID_CONFIG")

    def n_typical_for(self, nbits: int) -> float:
        return self.n_typical if self.n_typical is not None else default_n_typical(nbits)


@dataclass(frozen=True)
class MatchResult:
    """``similarity`` in [0, 1] (higher = more alike); ``hd_raw``/``hd_norm`` at the best shift;
    ``shift`` in columns (the probe rolled by ``shift`` aligns with the reference); ``bits_compared``
    = bits valid in both masks at that shift; ``reason`` = ``"NO_OVERLAP"`` when nothing compared."""

    similarity: float
    hd_raw: float
    hd_norm: float
    shift: int
    bits_compared: int
    reason: str | None = None


def check_compatible(a: IrisTemplate, b: IrisTemplate) -> None:
    """Raise ``ModelMismatch`` unless both templates come from the same model and code geometry."""
    if a.model != b.model:
        raise ModelMismatch(f"iris templates of different models: {a.model} vs {b.model}")
    if a.code.size != b.code.size or a.columns != b.columns:
        raise ModelMismatch(
            f"iris templates of different geometry: {a.code.size * 8} bits/{a.columns} columns vs "
            f"{b.code.size * 8} bits/{b.columns} columns"
        )


class IrisMatcher:
    """1:1 comparison of two iris templates (numpy; the 1:N kernel in ``engine.index.hamming``
    computes the same numbers for a whole gallery)."""

    def __init__(self, params: MatchParams | None = None) -> None:
        self.params = params or MatchParams()

    def match(self, probe: IrisTemplate, reference: IrisTemplate) -> MatchResult:
        check_compatible(probe, reference)
        nbytes, bpc = probe.code.size, probe.bytes_per_column
        shifts = shift_order(self.params.max_shift, probe.columns)
        idx = (np.arange(nbytes)[None, :] - shifts[:, None] * bpc) % nbytes
        pc, pm = probe.code[idx], probe.mask[idx]  # (S, nbytes): probe rolled by each shift
        valid = pm & reference.mask
        n = np.bitwise_count(valid).sum(axis=1, dtype=np.int64)
        d = np.bitwise_count((pc ^ reference.code) & valid).sum(axis=1, dtype=np.int64)
        if not n.any():
            nan = float("nan")
            return MatchResult(0.0, nan, nan, 0, 0, reason="NO_OVERLAP")
        n0 = self.params.n_typical_for(nbytes * 8)
        with np.errstate(divide="ignore", invalid="ignore"):
            hd_raw = np.where(n > 0, d / np.maximum(n, 1), 0.5)
            sim = np.where(n > 0, 0.5 + (0.5 - hd_raw) * np.sqrt(n / n0), 0.0)
        best = int(np.argmax(sim))  # first maximum = smallest |shift| among ties
        return MatchResult(
            similarity=float(np.clip(sim[best], 0.0, 1.0)),
            hd_raw=float(hd_raw[best]),
            hd_norm=float(1.0 - sim[best]),
            shift=int(shifts[best]),
            bits_compared=int(n[best]),
        )

    def similarity(self, probe: IrisTemplate, reference: IrisTemplate) -> float:
        return self.match(probe, reference).similarity
