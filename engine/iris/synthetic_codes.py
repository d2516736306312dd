"""Deterministic synthetic iris *codes* (not images) for index tests and 1:N benchmarks.

The image generator of the pipeline is too slow for a million templates; this module produces packed
code + mask pairs directly, shaped like real Daugman codes so that recall and speed measured on them
mean something:

- Identities: bits are correlated along the angle (a Markov chain per bit row: each column flips each
  bit of the previous column with probability ``column_flip``, default 1/8), so a 2048-bit code has
  roughly 2048 / 7 ~ 290 degrees of freedom (Daugman reports 249) and impostor HD is ~0.5 with a
  spread of ~0.03 before rotation search.
- Captures of an identity: the code rotated by a random number of columns (head tilt), bits flipped in
  angular *bursts* (smoothed noise above a threshold, a per-capture fraction drawn from
  ``flip_range``; two captures then differ by ~10-24 %), the masked positions filled with noise.
- Masks: upper and lower eyelid occlusion over contiguous angular ranges (not rotated with the
  texture: the lids stay where they are), plus sparse single-bit specular / eyelash noise.

Layout: ``columns`` angular columns of ``nbytes // columns`` bytes each, so rotating by one column is
a roll of the packed bytes by ``bytes_per_column`` (``engine.types.IrisTemplate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput

__all__ = ["CaptureParams", "Captures", "capture", "impostor_gallery", "mated_set", "random_irises"]

_NORMAL = NormalDist()

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CaptureParams:
    """Per-capture variation. Fractions are of the code's bits / columns; rotations in columns."""

    max_rotation: int = 7  # two captures then differ by at most 14 columns (inside +-15)
    flip_range: tuple[float, float] = (0.05, 0.135)
    burst_width: int = 5  # columns over which the flip noise is smoothed (burst length)
    upper_lid: tuple[float, float] = (0.0, 0.30)  # occluded share of columns, uniform in range
    lower_lid: tuple[float, float] = (0.0, 0.15)
    noise_bits: float = 1 / 32  # isolated masked bits (reflections, lashes)


@dataclass(frozen=True)
class Captures:
    """``n`` captures: packed ``codes``/``masks`` (n, nbytes) and the true ``rotation`` (n,)."""

    codes: U8
    masks: U8
    rotation: I64


def _check(nbytes: int, columns: int) -> int:
    if nbytes <= 0 or columns <= 0 or nbytes % columns:
        raise InvalidInput("nbytes must be a positive multiple of columns", reason="INVALID_TEMPLATE")
    return nbytes // columns


def _sparse_bits(rng: np.random.Generator, shape: tuple[int, ...], ands: int) -> U8:
    """Random bytes whose bits are set with probability 2**-ands (AND of ``ands`` random bytes)."""
    out = rng.integers(0, 256, size=shape, dtype=np.uint8)
    for _ in range(ands - 1):
        out &= rng.integers(0, 256, size=shape, dtype=np.uint8)
    return out


def random_irises(n: int, nbytes: int = 256, columns: int = 256, *, seed: int | np.random.Generator = 0,
                  column_flip_ands: int = 3) -> U8:
    """``n`` identity codes (n, nbytes): bits correlated along the angle (flip probability
    2**-column_flip_ands between neighbouring columns; 3 -> 1/8)."""
    bpc = _check(nbytes, columns)
    rng = np.random.default_rng(seed)
    steps = _sparse_bits(rng, (n, columns, bpc), column_flip_ands)
    steps[:, 0, :] = rng.integers(0, 256, size=(n, bpc), dtype=np.uint8)
    # Prefix XOR along the angle: column c = column c-1 with a few bits flipped. The wrap-around seam
    # (column 0 vs columns-1) is one uncorrelated boundary in 256: negligible.
    codes = np.bitwise_xor.accumulate(steps, axis=1)
    return np.ascontiguousarray(codes.reshape(n, nbytes))


def _lid_masks(rng: np.random.Generator, n: int, nbytes: int, columns: int, p: CaptureParams) -> U8:
    bpc = nbytes // columns
    col = np.arange(columns, dtype=np.int32)[None, :]
    valid = np.ones((n, columns), dtype=bool)
    # Angle 0 at 3 o'clock, counter-clockwise: upper lid around columns/4, lower lid around 3*columns/4.
    for centre, (lo, hi) in ((columns // 4, p.upper_lid), (3 * columns // 4, p.lower_lid)):
        width = (rng.uniform(lo, hi, size=(n, 1)) * columns).astype(np.int32)
        jitter = rng.integers(-columns // 32, columns // 32 + 1, size=(n, 1))
        start = ((centre + jitter - width // 2) % columns).astype(np.int32)
        offset = col - start  # in (-columns, columns): wrap without a per-element modulo
        offset += np.int32(columns) * (offset < 0)
        valid &= offset >= width
    masks = np.repeat(np.where(valid, 255, 0).astype(np.uint8), bpc, axis=1)
    if p.noise_bits > 0:
        ands = max(1, round(-np.log2(p.noise_bits)))
        masks &= ~_sparse_bits(rng, (n, nbytes), ands)
    return masks


def _burst_flips(rng: np.random.Generator, n: int, nbytes: int, columns: int, p: CaptureParams) -> U8:
    """Packed flip pattern: per capture a fraction in ``flip_range`` of bits, grouped in angular runs."""
    bpc = nbytes // columns
    noise = rng.standard_normal((n, columns, bpc * 8)).astype(np.float32)
    smooth = np.zeros_like(noise)
    half = p.burst_width // 2
    for off in range(-half, p.burst_width - half):
        smooth += np.roll(noise, off, axis=1)
    frac = rng.uniform(p.flip_range[0], p.flip_range[1], size=n)
    # The smoothed noise is Gaussian with variance burst_width: threshold at its (1 - frac) quantile.
    z = np.array([_NORMAL.inv_cdf(1.0 - f) for f in frac], dtype=np.float32) * np.float32(
        np.sqrt(p.burst_width))
    flat = smooth.reshape(n, -1)
    thr_i = z
    bits = flat > thr_i[:, None]
    return np.packbits(bits.reshape(n, columns, bpc * 8), axis=2).reshape(n, nbytes)


def capture(irises: U8, columns: int, *, seed: int | np.random.Generator = 0,
            params: CaptureParams | None = None, flips: bool = True) -> Captures:
    """One capture of each identity code in ``irises`` (n, nbytes): rotated, burst-flipped, occluded.
    ``flips=False`` skips the (costlier) flip noise: used for distractors, whose codes are random
    anyway."""
    p = params or CaptureParams()
    n, nbytes = irises.shape
    bpc = _check(nbytes, columns)
    rng = np.random.default_rng(seed)
    rot = np.asarray(rng.integers(-p.max_rotation, p.max_rotation + 1, size=n), dtype=np.int64)
    idx = (np.arange(nbytes)[None, :] - rot[:, None] * bpc) % nbytes
    codes = np.take_along_axis(irises, idx, axis=1)
    if flips:
        codes ^= _burst_flips(rng, n, nbytes, columns, p)
    masks = _lid_masks(rng, n, nbytes, columns, p)
    # Occluded bits carry whatever the eyelid texture gives: noise, never the iris.
    junk = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    codes = (codes & masks) | (junk & ~masks)
    return Captures(np.ascontiguousarray(codes), np.ascontiguousarray(masks), rot)


def impostor_gallery(n: int, nbytes: int = 256, columns: int = 256, *, seed: int = 0,
                     chunk: int = 100_000) -> tuple[U8, U8]:
    """``n`` single captures of distinct identities (codes, masks), generated in chunks so a million
    fits comfortably in memory (~0.5 GB of output)."""
    codes = np.empty((n, nbytes), dtype=np.uint8)
    masks = np.empty((n, nbytes), dtype=np.uint8)
    ss = np.random.SeedSequence(seed)
    for lo, child in zip(range(0, n, chunk), ss.spawn(-(-n // chunk)), strict=True):
        hi = min(n, lo + chunk)
        rng = np.random.default_rng(child)
        # No rotation and no flips: either would only turn a random identity into another one.
        code = random_irises(hi - lo, nbytes, columns, seed=rng)
        mask = _lid_masks(rng, hi - lo, nbytes, columns, CaptureParams())
        junk = rng.integers(0, 256, size=code.shape, dtype=np.uint8)
        codes[lo:hi], masks[lo:hi] = (code & mask) | (junk & ~mask), mask
    return codes, masks


def mated_set(n: int, nbytes: int = 256, columns: int = 256, *, seed: int = 0,
              params: CaptureParams | None = None) -> tuple[Captures, Captures]:
    """``n`` identities captured twice: (enrolment captures, probe captures), row i mated with row i."""
    rng = np.random.default_rng(seed)
    irises = random_irises(n, nbytes, columns, seed=rng)
    first = capture(irises, columns, seed=rng, params=params)
    return first, capture(irises, columns, seed=rng, params=params)
