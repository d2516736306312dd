"""Daugman rubber-sheet normalisation: the iris annulus unwrapped to a fixed polar grid.

Each grid point (radius fraction rho, angle theta) maps to the point ``(1 - rho) * P(theta) +
rho * L(theta)`` where P and L are the pupil and limbus boundary points at angle theta, so pupil
dilation and a non-concentric pupil are undone. The noise mask is carried along: a grid point is
valid only if its source pixel is inside the frame and not noise.

Angle 0 is the image's +x axis, angles increase towards +y (clockwise on screen), column j covers
``theta = 2 pi j / angular``; a rotation of the eye is a circular shift of the columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from engine.iris.segmentation import Segmentation

__all__ = ["NormalizationParams", "NormalizedIris", "normalize"]

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class NormalizationParams:
    """``radial`` x ``angular`` grid. ``inner``/``outer``: the radius fractions kept, trimming the
    boundary zones whose pixels are half pupil or half sclera when a circle is a pixel or two off."""

    radial: int = 32
    angular: int = 512
    inner: float = 0.04
    outer: float = 0.92


@dataclass(frozen=True)
class NormalizedIris:
    """``image`` (radial, angular) float32 grey levels, zero-mean unit-variance over valid points
    (invalid points set to 0); ``mask`` (radial, angular) bool, True = usable."""

    image: F32
    mask: B

    @property
    def usable_fraction(self) -> float:
        return float(self.mask.mean())


def sampling_grid(seg: Segmentation, p: NormalizationParams) -> tuple[F32, F32]:
    """Image coordinates ``(xs, ys)``, each (radial, angular) float32, of the polar grid points."""
    theta = np.arange(p.angular, dtype=np.float64) * (2 * np.pi / p.angular)
    rho = np.linspace(p.inner, p.outer, p.radial, dtype=np.float64)
    cos, sin = np.cos(theta), np.sin(theta)
    px, py = seg.pupil.x + seg.pupil.r * cos, seg.pupil.y + seg.pupil.r * sin
    # limbus point along the ray from the pupil centre (the circles need not be concentric)
    dx, dy = seg.pupil.x - seg.iris.x, seg.pupil.y - seg.iris.y
    b = dx * cos + dy * sin
    t = -b + np.sqrt(np.maximum(b * b - (dx * dx + dy * dy - seg.iris.r**2), 0.0))
    lx, ly = seg.pupil.x + t * cos, seg.pupil.y + t * sin
    xs = (1 - rho)[:, None] * px[None, :] + rho[:, None] * lx[None, :]
    ys = (1 - rho)[:, None] * py[None, :] + rho[:, None] * ly[None, :]
    return xs.astype(np.float32), ys.astype(np.float32)


def normalize(seg: Segmentation, params: NormalizationParams | None = None) -> NormalizedIris:
    """Unwrap ``seg.image`` with ``seg.noise`` to the polar grid (see module docstring)."""
    p = params or NormalizationParams()
    xs, ys = sampling_grid(seg, p)
    h, w = seg.image.shape
    img = cv2.remap(seg.image, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    noise = cv2.remap(seg.noise.astype(np.uint8), xs, ys, cv2.INTER_NEAREST,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=1)
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    mask = inside & (noise == 0)
    out = np.zeros_like(img)
    if mask.sum() >= 16:
        vals = img[mask]
        mean, std = float(vals.mean()), float(vals.std())
        out = np.where(mask, (img - mean) / max(std, 1.0), 0.0)
    return NormalizedIris(np.asarray(out, dtype=np.float32), mask)
