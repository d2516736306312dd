"""Deterministic synthetic NIR eye images, so the iris pipeline is tested without real data.

An *identity* is a seed: it fixes a polar iris texture (band-limited noise with radial streaks, the
look of iris fibres and crypts, defined on (radius fraction, angle) so that pupil dilation acts like
the rubber sheet assumes), the iris size and grey levels. A *capture* of that identity varies what a
camera varies: eye rotation (head tilt), pupil dilation, position, eyelid opening, eyelashes,
specular reflections, defocus blur and sensor noise. Same (identity, capture) -> same pixels.

Rotation convention: ``rotation_deg`` turns the texture towards increasing image angle (from +x
towards +y), which ``engine.iris.normalization`` maps to increasing code columns; one code column of
the default 256-column template is 360/256 = 1.406 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["Capture", "SyntheticEyes", "geometry", "render"]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

_TEX_R, _TEX_A = 48, 720


@dataclass(frozen=True)
class Capture:
    """One capture's conditions. ``pupil_ratio``: pupil/iris radius; ``upper_lid``/``lower_lid``:
    how far each lid reaches into the iris, as a fraction of the iris radius from its edge (0 = no
    occlusion, 1 = down to the centre); ``lashes``: number of dark lash strokes; ``reflections``:
    number of bright spots; ``blur_sigma``/``noise_sigma`` in pixels / grey levels; ``dx``/``dy``:
    iris centre offset from the image centre in pixels; ``scale`` multiplies the iris radius.
    ``iris_level``: the iris' mean grey level instead of the identity's (a dark iris: 40-60);
    ``pupil_dx``/``pupil_dy``: pupil centre offset from the iris centre in pixels (a real pupil is
    rarely concentric; the texture follows the rubber sheet); ``glare``: number of large bright
    reflections of spectacle lenses (ellipses a quarter of the iris across, straddling the pupil
    boundary), unlike the small corneal ``reflections``."""

    rotation_deg: float = 0.0
    pupil_ratio: float = 0.4
    upper_lid: float = 0.2
    lower_lid: float = 0.05
    lashes: int = 12
    reflections: int = 1
    blur_sigma: float = 0.6
    noise_sigma: float = 2.0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    iris_level: float | None = None
    pupil_dx: float = 0.0
    pupil_dy: float = 0.0
    glare: int = 0


def _texture(identity: int) -> tuple[F32, float, float]:
    """(texture (R, A) zero-mean unit-variance, iris radius px, iris grey level) of an identity."""
    rng = np.random.default_rng([0x1A15, identity])
    white = rng.standard_normal((_TEX_R, _TEX_A)).astype(np.float32)
    # wrap the angle so the texture is continuous across 0/360 degrees
    wrapped = np.concatenate([white[:, -60:], white, white[:, :60]], axis=1)
    fine = cv2.GaussianBlur(wrapped, (0, 0), sigmaX=2.5, sigmaY=1.2)[:, 60:-60]
    streaks = cv2.GaussianBlur(wrapped, (0, 0), sigmaX=1.5, sigmaY=6.0)[:, 60:-60]
    tex = fine / fine.std() + 0.8 * streaks / streaks.std()
    # crypts: a few dark blobs
    yy, xx = np.mgrid[0:_TEX_R, 0:_TEX_A]
    for _ in range(rng.integers(6, 14)):
        cy, cx = rng.uniform(0.2, 0.8) * _TEX_R, rng.uniform(0, _TEX_A)
        d = np.minimum(np.abs(xx - cx), _TEX_A - np.abs(xx - cx))
        tex -= 2.5 * np.exp(-(((yy - cy) / 3.0) ** 2) - (d / 8.0) ** 2)
    tex = (tex - tex.mean()) / tex.std()
    return tex.astype(np.float32), float(rng.uniform(85, 105)), float(rng.uniform(95, 130))


Circle3 = tuple[float, float, float]


def geometry(identity: int, capture: Capture | None = None,
             size: tuple[int, int] = (320, 280)) -> tuple[Circle3, Circle3]:
    """The true ``(x, y, r)`` of the pupil and of the limbus that ``render`` draws (for tests)."""
    c = capture or Capture()
    iris_r = _texture(identity)[1]
    w, h = size
    ri = iris_r * c.scale * min(w / 320, h / 280)
    cx, cy = w / 2 + c.dx, h / 2 + c.dy
    return (cx + c.pupil_dx, cy + c.pupil_dy, c.pupil_ratio * ri), (cx, cy, ri)


def render(identity: int, capture: Capture | None = None, size: tuple[int, int] = (320, 280),
           capture_seed: int = 0) -> U8:
    """An (H, W) uint8 NIR-like eye image of ``identity`` under ``capture``; ``size`` = (W, H).
    ``capture_seed`` only drives the random details of the capture (lash strokes, spot places, noise)."""
    c = capture or Capture()
    tex, iris_r, iris_level = _texture(identity)
    if c.iris_level is not None:
        iris_level = c.iris_level
    rng = np.random.default_rng([0xCA9, identity, capture_seed])
    w, h = size
    ri = iris_r * c.scale * min(w / 320, h / 280)
    rp = c.pupil_ratio * ri
    cx, cy = w / 2 + c.dx, h / 2 + c.dy
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(xx - cx, yy - cy)
    # polar coordinates about the pupil centre; rho = 0 on the pupil edge, 1 on the limbus along
    # the same ray (the rubber sheet of engine.iris.normalization)
    pcx, pcy = cx + c.pupil_dx, cy + c.pupil_dy
    dp = np.hypot(xx - pcx, yy - pcy)
    ang = np.arctan2(yy - pcy, xx - pcx)
    theta = np.mod(ang - np.deg2rad(c.rotation_deg), 2 * np.pi)
    b = c.pupil_dx * np.cos(ang) + c.pupil_dy * np.sin(ang)
    limbus = -b + np.sqrt(np.maximum(b * b - (c.pupil_dx**2 + c.pupil_dy**2 - ri**2), 0.0))
    rho = (dp - rp) / np.maximum(limbus - rp, 1.0)
    # texture lookup (bilinear, angle wraps)
    tex_wrapped = np.concatenate([tex, tex[:, :1]], axis=1)
    mx = (theta / (2 * np.pi) * _TEX_A).astype(np.float32)
    my = (np.clip(rho, 0, 1) * (_TEX_R - 1)).astype(np.float32)
    t = cv2.remap(tex_wrapped, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # sclera and skin: sclera bright inside the eye opening, skin a little darker with shading
    img = np.full((h, w), 175.0, np.float32) + 10.0 * np.sin(xx / w * np.pi)
    iris = iris_level + 14.0 * t - 10.0 * np.clip(rho, 0, 1)  # darker towards the limbus
    limbus_soft = np.clip((ri + 1.5 - d) / 3.0, 0, 1)  # a slightly soft limbus edge
    img = img * (1 - limbus_soft) + iris * limbus_soft
    img = np.where(dp <= rp, 28.0, img)
    # eyelids: parabolas, skin outside; a band of lashes along the upper lid
    up_y0 = cy - ri + 2 * ri * c.upper_lid
    lo_y0 = cy + ri - 2 * ri * c.lower_lid
    up = up_y0 + (xx - cx) ** 2 / (3.5 * ri)
    low = lo_y0 - (xx - cx) ** 2 / (4.0 * ri)
    skin = 165.0 + 8.0 * np.cos(yy / h * 3.0)
    lid = (yy < up) | (yy > low)
    img = np.where(lid, skin, img)
    for _ in range(c.lashes):
        x0 = cx + rng.uniform(-1.0, 1.0) * ri
        y0 = up_y0 + (x0 - cx) ** 2 / (3.5 * ri)
        length = rng.uniform(0.15, 0.35) * ri
        ang = np.deg2rad(rng.uniform(60, 120))
        p1 = (round(x0), round(y0))
        p2 = (round(x0 + length * np.cos(ang) * rng.choice([-0.4, 0.4])), round(y0 + length * np.sin(ang)))
        cv2.line(img, p1, p2, 35.0, thickness=1, lineType=cv2.LINE_AA)
    for _ in range(c.reflections):
        a, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.9) * rp
        cv2.circle(img, (round(cx + rr * np.cos(a)), round(cy + rr * np.sin(a))),
                   max(2, round(0.035 * ri)), 250.0, thickness=-1, lineType=cv2.LINE_AA)
    for _ in range(c.glare):
        a = rng.uniform(0, 2 * np.pi)
        centre = (round(pcx + rp * np.cos(a)), round(pcy + rp * np.sin(a)))
        axes = (max(3, round(0.25 * ri)), max(2, round(0.12 * ri)))
        cv2.ellipse(img, centre, axes, float(np.rad2deg(rng.uniform(0, np.pi))), 0, 360, 245.0,
                    thickness=-1, lineType=cv2.LINE_AA)
    if c.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), c.blur_sigma)
    img = img + rng.normal(0.0, c.noise_sigma, img.shape).astype(np.float32)
    out: U8 = np.clip(img, 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class SyntheticEyes:
    """Random but reproducible captures: ``capture(identity, k)`` draws capture conditions within
    the ranges below (seeded by identity and k) and renders them."""

    max_rotation_deg: float = 8.0
    pupil_ratio: tuple[float, float] = (0.3, 0.5)
    upper_lid: tuple[float, float] = (0.05, 0.35)
    lower_lid: tuple[float, float] = (0.0, 0.15)
    blur_sigma: tuple[float, float] = (0.4, 1.0)
    noise_sigma: tuple[float, float] = (1.0, 4.0)
    max_offset_px: float = 15.0
    size: tuple[int, int] = (320, 280)

    def conditions(self, identity: int, k: int) -> Capture:
        rng = np.random.default_rng([0xC0DE, identity, k])
        u = rng.uniform
        return replace(
            Capture(),
            rotation_deg=float(u(-self.max_rotation_deg, self.max_rotation_deg)),
            pupil_ratio=float(u(*self.pupil_ratio)),
            upper_lid=float(u(*self.upper_lid)),
            lower_lid=float(u(*self.lower_lid)),
            lashes=int(rng.integers(5, 20)),
            reflections=int(rng.integers(0, 3)),
            blur_sigma=float(u(*self.blur_sigma)),
            noise_sigma=float(u(*self.noise_sigma)),
            dx=float(u(-self.max_offset_px, self.max_offset_px)),
            dy=float(u(-self.max_offset_px, self.max_offset_px) * 0.5),
        )

    def capture(self, identity: int, k: int) -> U8:
        return render(identity, self.conditions(identity, k), self.size, capture_seed=k)
