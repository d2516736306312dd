"""Synthetic galleries with planted mates, shaped like real score distributions.

Face: gallery = random unit vectors (d dims); a *mated* query is ``normalise(x + noise)`` of a
gallery entry with the noise scaled so its cosine to the mate is uniform in ``mate_cos`` (default
0.6-0.9, the span of genuine scores of real face models); a *non-mated* query is a fresh random unit
vector (impostor cosines ~ N(0, 1/d)). Iris: ``engine.iris.synthetic_codes`` when installed (the
iris team's generator, tuned on real codes), otherwise random codes with eyelid-like masks and mates
with a fraction of bits flipped and a small rotation (genuine HD ~0.15-0.3, impostor ~0.5).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FaceData", "IrisData", "face_data", "iris_data"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FaceData:
    """``xb`` (n, d) gallery; ``xq`` (nq, d) queries; ``mate`` (nq,) gallery row of each query's
    planted mate, -1 for non-mated queries."""

    xb: F32
    xq: F32
    mate: I64
    generator: str


@dataclass(frozen=True)
class IrisData:
    """Packed codes/masks: ``codes``/``masks`` (n, nbytes), ``qcodes``/``qmasks`` (nq, nbytes)."""

    codes: U8
    masks: U8
    qcodes: U8
    qmasks: U8
    mate: I64
    columns: int
    generator: str


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> F32:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def face_data(n: int, nq: int, d: int = 128, *, mated_fraction: float = 0.5,
              mate_cos: tuple[float, float] = (0.6, 0.9), seed: int = 0) -> FaceData:
    rng = np.random.default_rng(seed)
    xb = _unit_rows(rng, n, d)
    n_mated = min(round(nq * mated_fraction), n)
    mate = np.full(nq, -1, dtype=np.int64)
    mate[:n_mated] = rng.choice(n, n_mated, replace=False)
    xq = _unit_rows(rng, nq, d)
    # cos(x, x + s*u) = 1 / sqrt(1 + s^2) for u a unit vector orthogonal to x (and ~ for random u)
    cos = rng.uniform(*mate_cos, n_mated)
    s = np.sqrt(1.0 / cos**2 - 1.0).astype(np.float32)
    noise = xq[:n_mated] - (xq[:n_mated] * xb[mate[:n_mated]]).sum(1, keepdims=True) * xb[mate[:n_mated]]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    mated = xb[mate[:n_mated]] + s[:, None] * noise
    xq[:n_mated] = mated / np.linalg.norm(mated, axis=1, keepdims=True)
    perm = rng.permutation(nq)
    return FaceData(xb, np.ascontiguousarray(xq[perm]), mate[perm], "numpy unit vectors, planted mates")


def iris_data(n: int, nq: int, nbytes: int = 256, columns: int = 256, *, mated_fraction: float = 0.5,
              seed: int = 0) -> IrisData:
    try:
        module: Any = importlib.import_module("engine.iris.synthetic_codes")
        return _from_engine(module, n, nq, nbytes, columns, mated_fraction, seed)
    except ImportError:
        pass  # the iris package may not ship the generator: fall back to the simple one below
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    masks = _masks(rng, n, nbytes, columns)
    n_mated = min(round(nq * mated_fraction), n)
    mate = np.full(nq, -1, dtype=np.int64)
    mate[:n_mated] = rng.choice(n, n_mated, replace=False)
    qcodes = rng.integers(0, 256, (nq, nbytes), dtype=np.uint8)
    qmasks = _masks(rng, nq, nbytes, columns)
    step = nbytes // columns
    for j in range(n_mated):
        flip_p = rng.uniform(0.1, 0.25)
        flips = np.packbits(rng.random(nbytes * 8) < flip_p)
        shift = int(rng.integers(-4, 5)) * step
        qcodes[j] = np.roll(codes[mate[j]] ^ flips, shift)
    perm = rng.permutation(nq)
    return IrisData(codes, masks, qcodes[perm], qmasks[perm], mate[perm], columns,
                    "nasname bench fallback generator (random codes, flipped-bit mates)")


def _masks(rng: np.random.Generator, n: int, nbytes: int, columns: int) -> U8:
    """~75-90 % valid bits; the invalid ones are whole angular sectors (eyelids), as in real masks."""
    step = nbytes // columns
    width = (rng.uniform(0.1, 0.25, n) * columns).astype(np.int64)
    start = rng.integers(0, columns, n)
    occluded = (np.arange(columns)[None, :] - start[:, None]) % columns < width[:, None]
    return np.repeat(np.where(occluded, 0, 255).astype(np.uint8), step, axis=1)


def _from_engine(module: Any, n: int, nq: int, nbytes: int, columns: int, mated_fraction: float,
                 seed: int) -> IrisData:
    """Gallery of distinct identities with ``n_mated`` rows replaced by enrolment captures whose second
    captures are the mated queries; non-mated queries are captures of fresh identities."""
    rng = np.random.default_rng(seed)
    n_mated = min(round(nq * mated_fraction), n)
    codes, masks = module.impostor_gallery(n, nbytes, columns, seed=seed)
    enrol, probe = module.mated_set(n_mated, nbytes, columns, seed=seed + 1)
    rows = rng.choice(n, n_mated, replace=False)
    codes[rows], masks[rows] = enrol.codes, enrol.masks
    other_c, other_m = module.impostor_gallery(nq - n_mated, nbytes, columns, seed=seed + 2)
    qcodes = np.concatenate([probe.codes, other_c])
    qmasks = np.concatenate([probe.masks, other_m])
    mate = np.concatenate([rows, np.full(nq - n_mated, -1)]).astype(np.int64)
    perm = rng.permutation(nq)
    return IrisData(codes, masks, qcodes[perm], qmasks[perm], mate[perm], columns,
                    "engine.iris.synthetic_codes (gallery + mated captures)")
