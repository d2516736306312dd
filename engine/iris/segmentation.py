"""Iris segmentation of a near-infrared eye image: pupil, limbus, eyelids and a noise mask.

The method is Daugman's, made fast by vectorised sampling:

1. Specular reflections (small, very bright spots) are found by a morphological top-hat and filled
   with the grey opening, so they neither hide the pupil nor fake boundaries.
2. The pupil is the largest compact dark disc: for a few darkness levels (quantiles of the image) the
   dark mask's distance transform gives the biggest inscribed disc; thin dark things (lashes, brows)
   cannot hold a big disc. Each candidate is refined by the circular integro-differential operator
   (the radius and centre where the mean intensity along the circle jumps most from dark to bright),
   measured as a contrast relative to the inside level (a pupil beats the larger absolute step of a
   dark iris against the sclera), on an image clipped at a low grey-level quantile (lid skin and
   sclera cannot outweigh the pupil edge) and without the top sector, where upper lids cover it.
3. The limbus is found by the same operator around the pupil, on the left and right arcs only
   (near horizontal), because eyelids usually hide the top and the bottom of the iris; the radius
   must be a peak of the edge strength, not a step still growing at the end of the range (skin
   beyond the eye corners).
4. Eyelids are parabolas found by a line-integral of the vertical intensity gradient (upper lid:
   bright skin above, darker iris below; lower lid the other way round).
5. Inside the iris, pixels far from the iris' own robust grey level (lashes dark, skin and glints
   bright) join the noise mask.

Steps 2 (and the circle operator used by 3) live in ``engine.iris.pupil``.

Nothing here depends on a data set: radii are searched in pixel ranges and ratio ranges that are
parameters (``SegmentationParams``), configurable per capture device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from engine.errors import AcquisitionFailed, InvalidInput
from engine.iris.pupil import Circle, best_circle, find_pupils, refit_pupil
from engine.types import QualityReason

__all__ = ["Circle", "Eyelid", "Segmentation", "SegmentationParams", "segment"]

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SegmentationParams:
    """Search ranges and thresholds. Pixel values refer to the image as given (no rescaling).

    ``pupil_radius_px``/``iris_radius_px``: plausible radii (px) on this device.
    ``pupil_iris_ratio``: plausible pupil/iris radius ratios searched (quality checks a narrower one).
    ``dark_quantiles``: fractions of the darkest pixels tried as pupil masks (small pupils in a wide
    frame need small fractions, big pupils large ones).
    ``specular_tophat``: grey levels above the local opening that count as a reflection.
    ``glare_size_px``/``glare_quantile``: larger reflections (spectacle lenses) are found by the same
    top-hat at this scale among the pixels brighter than this quantile of the frame, and inpainted
    where they touch dark pixels (``glare_size_px`` <= ``specular_size_px`` turns it off).
    ``pupil_keep``: candidates whose all-round score is at least this fraction of the best compete,
    and the darkest wins (darkness measured outside the top ``pupil_lid_sector`` degrees, which
    are also left out of the refinement); a candidate inside a kept one, darker by at least
    ``pupil_nested_darker`` grey levels, competes too if its score reaches ``pupil_nested_keep`` of
    the best (a dark iris around the pupil). ``pupil_relative``: offset (grey levels) of the relative
    pupil contrast (0 = absolute step). ``pupil_clip_quantile``: grey-level quantile the pupil
    refinement clips the image at (1 = no clipping). ``pupil_joint``: how many of those are also
    tried with a limbus search (1 = off; measured worse on MMU2 when on). ``pupil_search``:
    refinement radius range and centre shift, as multiples of the candidate's radius.
    ``limbus_arc_deg``/``limbus_arc_up``: lateral arcs used for the limbus (below / fraction above
    horizontal); ``limbus_centre_shift``: its centre search around the pupil centre, as a fraction
    of the smallest radius, moved sideways up to ``limbus_recentre`` times while the best centre is
    on its left or right edge; a limbus making a pupil/iris ratio below ``limbus_rare_ratio`` has its
    edge strength scaled down in proportion (0 = no such prior); ``limbus_window``: edge window as
    a fraction of the radius.
    ``eyelid_min_contrast``: mean vertical gradient (grey levels / px) for a lid to count as found.
    ``lower_lid_pupil_clearance``: the lower lid's apex lies at least this many pupil radii below the
    pupil centre (1 = it leaves the pupil's lower edge visible, as the pupil search requires).
    ``pupil_refit_under_lid``: when the upper lid found hides more of the pupil than the top sector,
    the pupil is measured again on its visible boundary.
    ``noise_k``: pixels more than ``noise_k`` robust deviations (and ``noise_min_delta`` grey
    levels) from the iris grey level are noise.

    The defaults are one profile for both shared data sets (CASIA-IrisV1 close-up, MMU2 whole-eye
    frame); a device with a known iris size should narrow ``iris_radius_px``.
    """

    pupil_radius_px: tuple[float, float] = (6.0, 90.0)
    iris_radius_px: tuple[float, float] = (28.0, 160.0)
    pupil_iris_ratio: tuple[float, float] = (0.2, 0.8)
    dark_quantiles: tuple[float, ...] = (0.004, 0.01, 0.02, 0.04, 0.07, 0.11)
    specular_tophat: float = 45.0
    specular_size_px: int = 11
    glare_size_px: int = 41
    glare_quantile: float = 0.97
    pupil_keep: float = 0.9
    pupil_nested_keep: float = 0.5
    pupil_nested_darker: float = 8.0
    pupil_joint: int = 1
    discs_per_level: int = 2
    pupil_texture: float = 1.0
    pupil_lid_sector: float = 90.0
    pupil_clip_quantile: float = 0.3
    pupil_relative: float = 10.0
    pupil_search: tuple[float, float, float] = (0.8, 1.8, 0.3)
    limbus_arc_deg: float = 30.0
    limbus_arc_up: float = 0.8
    limbus_centre_shift: float = 0.12
    limbus_window: float = 0.05
    limbus_recentre: int = 2
    limbus_rare_ratio: float = 0.25
    eyelid_min_contrast: float = 4.0
    lower_lid_pupil_clearance: float = 1.0
    pupil_refit_under_lid: bool = True
    noise_k: float = 3.5
    noise_min_delta: float = 18.0


@dataclass(frozen=True)
class Eyelid:
    """Parabola ``y = y0 + a * (x - x0)**2`` in image pixels; ``found`` False = no lid over the iris."""

    x0: float
    y0: float
    a: float
    found: bool

    def y_at(self, x: npt.NDArray[np.float64] | F32) -> npt.NDArray[np.float64]:
        return np.asarray(self.y0 + self.a * (np.asarray(x, dtype=np.float64) - self.x0) ** 2)


@dataclass(frozen=True)
class Segmentation:
    """Result of ``segment``. ``image`` is the reflection-filled grey image (float32, H x W) used for
    normalisation; ``noise`` (H x W bool) marks pixels that must not be encoded (lids, lashes, glints,
    outside the frame is handled by the normaliser); ``specular`` (H x W bool) the reflections among
    them. ``measures`` are boundary contrasts (grey levels per pixel of radius) and other raw numbers
    behind the quality verdict."""

    pupil: Circle
    iris: Circle
    upper_lid: Eyelid
    lower_lid: Eyelid
    image: F32
    noise: B
    measures: dict[str, float] = field(default_factory=dict)
    specular: B | None = None


_GLOW_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


def _fill_specular(gray: F32, p: SegmentationParams) -> tuple[F32, B, B | None]:
    """(image with reflections filled, reflection mask, lens glare mask or None when there is none)."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (p.specular_size_px, p.specular_size_px))
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, k)
    spec = (gray - opened) > p.specular_tophat
    # the glow around a glint is dimmer than the threshold but still brighter than the pupil under it
    spec = cv2.dilate(spec.astype(np.uint8), _GLOW_KERNEL).astype(bool)
    filled = np.where(spec, opened, gray).astype(np.float32)
    if p.glare_size_px <= p.specular_size_px:
        return filled, spec, None
    # reflections of spectacle lenses are too big for the glint opening and, across the pupil
    # boundary, bite a notch out of the dark disc (a smaller, shifted pupil) or hide an arc of it.
    # They are among the brightest pixels of the frame *and* bright against their surroundings at a
    # larger scale; inpainting continues the pupil and iris from the glare's border (a grey opening
    # would fill a glare straddling the boundary with the pupil's darkness).
    # (the large opening at half resolution with a square, separable kernel: 10x cheaper, and a
    # background estimate needs no detail)
    h, w = gray.shape
    half = cv2.resize(gray, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    kb = cv2.getStructuringElement(cv2.MORPH_RECT, (p.glare_size_px // 2, p.glare_size_px // 2))
    background = cv2.resize(cv2.morphologyEx(half, cv2.MORPH_OPEN, kb), (w, h),
                            interpolation=cv2.INTER_LINEAR)
    level = float(np.quantile(half, p.glare_quantile))
    glare = ((gray - background) > p.specular_tophat) & (gray >= level) & ~spec
    if not glare.any():
        return filled, spec, None
    glare_u8 = cv2.dilate(glare.astype(np.uint8), _GLOW_KERNEL)
    # only compact glare (a lens reflection, not bright skin between brow hairs) touching the
    # darkest pixels (a pupil's) is inpainted: elsewhere the iris noise mask takes bright pixels out
    # of the code anyway, and inpainting costs in proportion to its area
    dark = cv2.dilate((half <= np.quantile(half, max(p.dark_quantiles))).astype(np.uint8), _GLOW_KERNEL)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(glare_u8)
    compact = stats[:, cv2.CC_STAT_AREA] <= 2 * p.glare_size_px**2
    compact[0] = False
    near = np.zeros(n, bool)
    near[np.unique(labels[cv2.resize(dark, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)])] = True
    near &= compact
    lens = compact[labels]
    if not near.any():
        return filled, spec, lens
    glare_u8 = near[labels].astype(np.uint8)
    painted = cv2.inpaint(np.clip(filled, 0, 255).astype(np.uint8), glare_u8, 3, cv2.INPAINT_TELEA)
    return painted.astype(np.float32), spec | glare_u8.astype(bool), lens


def _find_limbus(img: F32, pupil: Circle, p: SegmentationParams) -> tuple[Circle, float]:
    """Integro-differential operator on the lateral arcs (lids usually hide the top and bottom)."""
    arc = math.radians(p.limbus_arc_deg)
    right = np.linspace(-arc * p.limbus_arc_up, arc, 24, dtype=np.float32)
    arcs = [right, (np.pi - right).astype(np.float32)]
    lo = max(p.iris_radius_px[0], pupil.r / p.pupil_iris_ratio[1])
    hi = min(p.iris_radius_px[1], pupil.r / p.pupil_iris_ratio[0])
    if hi <= lo + 2:
        raise AcquisitionFailed("pupil size leaves no room for an iris",
                                reasons=[QualityReason.NO_IRIS.value])
    shift = max(2.0, round(p.limbus_centre_shift * lo))
    radii = np.arange(lo, hi + 1e-6, 1.0, dtype=np.float32)
    # pupils under a quarter of the iris radius are rare (bright light, small pupils): a limbus that
    # far out must be clearly stronger than a nearer one, or a spectacle frame or the lid beyond the
    # sclera makes an oversized iris
    prior = (np.minimum(1.0, pupil.r / radii / p.limbus_rare_ratio).astype(np.float32)
             if p.limbus_rare_ratio > 0 else None)
    x0, y0 = pupil.x, pupil.y
    for _ in range(p.limbus_recentre + 1):
        c, _ = best_circle(img, x0, y0, shift, max(1.0, shift / 2), radii, arcs, p.limbus_window,
                            around=pupil, peak_only=True, weight=prior)
        # the pupil is rarely concentric with the limbus (mostly nasal, by up to ~15% of the iris
        # radius): a best centre on the left or right edge of the searched square means the limbus
        # centre lies further out, so the square moves there (the pupil stays inside by
        # ``around``). Only sideways: the lateral arcs fix the centre's x well and its y poorly,
        # and moving in y too was measured worse on CASIA-IrisV1 (EER 0.50% against 0.44%).
        if abs(c.x - x0) < shift - 1e-3:
            break
        x0 = c.x
    fine = np.arange(max(lo, c.r - 3), min(hi, c.r + 3) + 1e-6, 1.0, dtype=np.float32)
    return best_circle(img, c.x, c.y, 2.0, 1.0, fine, arcs, p.limbus_window, around=pupil)


def _find_lid(gy: F32, pupil: Circle, iris: Circle, upper: bool, p: SegmentationParams) -> Eyelid:
    """Best parabola through the iris by the mean signed vertical gradient along it."""
    xs = np.linspace(iris.x - iris.r * 0.9, iris.x + iris.r * 0.9, 48, dtype=np.float32)
    sign = -1.0 if upper else 1.0  # upper lid: bright above, darker iris below -> negative d/dy
    if upper:
        y0s = np.arange(iris.y - iris.r * 1.05, pupil.y + 1e-6, 1.0, dtype=np.float32)
        curv = np.array([0.0, 0.25, 0.5, 0.8], dtype=np.float32) / iris.r
    else:
        # the pupil was found by its boundary seen all round but for the top: a lower lid does not
        # cross the pupil's bottom edge (lashes of the upper lid, dark above bright iris, would
        # otherwise pass for a lower lid through the pupil and mask half the iris)
        y0s = np.arange(iris.y + iris.r * 1.05, pupil.y + p.lower_lid_pupil_clearance * pupil.r - 1e-6, -1.0,
                        dtype=np.float32)
        curv = -np.array([0.0, 0.25, 0.5, 0.8], dtype=np.float32) / iris.r
    dx = xs - iris.x
    ys = y0s[:, None, None] + curv[None, :, None] * dx[None, None, :] ** 2
    xx = np.broadcast_to(xs, ys.shape)
    n0, n1, n2 = ys.shape
    vals = cv2.remap(gy, xx.reshape(n0 * n1, n2).astype(np.float32),
                     ys.reshape(n0 * n1, n2).astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0).reshape(n0, n1, n2)
    # the pupil's own edge has the same sign as a lid edge: ignore samples near it
    near_pupil = (xx - pupil.x) ** 2 + (ys - pupil.y) ** 2 < (pupil.r * 1.3) ** 2
    inside = (xx - iris.x) ** 2 + (ys - iris.y) ** 2 < (iris.r * 1.02) ** 2
    use = inside & ~near_pupil
    score = sign * (vals * use).sum(axis=2) / np.maximum(use.sum(axis=2), 1)
    score[use.sum(axis=2) < n2 * 0.3] = 0.0
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    best = float(score[i, j])
    found = best >= p.eyelid_min_contrast
    return Eyelid(float(iris.x), float(y0s[i]), float(curv[j]), found)


def _pupil_and_limbus(smooth: F32, wide: F32, p: SegmentationParams) -> tuple[Circle, float, Circle, float]:
    """The darkest plausible pupil, unless another of the first ``pupil_joint`` candidates makes a
    much better pupil + limbus pair: a brow or a dark iris taken for the pupil has no proper
    iris-to-sclera boundary around it (score: geometric mean of the two boundary steps). A candidate
    that leaves no room for an iris (a dark iris or a brow taken for the pupil) gives way to the next
    one instead of failing the capture."""
    best: tuple[float, Circle, float, Circle, float] | None = None
    failure: AcquisitionFailed | None = None
    tried = 0
    for pupil, pstep in find_pupils(smooth, p):
        if tried >= max(1, p.pupil_joint):
            break
        try:
            iris, lstep = _find_limbus(wide, pupil, p)
        except AcquisitionFailed as exc:
            failure = exc
            continue
        tried += 1
        joint = float(np.sqrt(max(pstep, 0.0) * max(lstep, 0.0)))
        if best is None or joint > best[0]:
            best = (joint, pupil, pstep, iris, lstep)
    if best is None:
        raise failure or AcquisitionFailed("no iris found", reasons=[QualityReason.NO_IRIS.value])
    return best[1], best[2], best[3], best[4]


def segment(gray: npt.NDArray[np.uint8], params: SegmentationParams | None = None) -> Segmentation:
    """Segment an (H, W) uint8 grey NIR eye image. Raises ``AcquisitionFailed`` (NO_IRIS) when no
    pupil/iris pair can be found, ``InvalidInput`` for a non 2-D array."""
    p = params or SegmentationParams()
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise InvalidInput("iris segmentation needs a 2-D uint8 grey image", reason="INVALID_IMAGE")
    h, w = gray.shape
    raw = gray.astype(np.float32)
    filled, spec, glare = _fill_specular(raw, p)
    smooth: F32 = np.asarray(cv2.GaussianBlur(filled, (0, 0), 1.5), dtype=np.float32)
    wide: F32 = np.asarray(cv2.GaussianBlur(filled, (0, 0), 2.5), dtype=np.float32)
    pupil, pupil_contrast, iris, limbus_contrast = _pupil_and_limbus(smooth, wide, p)
    gy: F32 = np.asarray(cv2.Sobel(cv2.GaussianBlur(filled, (0, 0), 2.0), cv2.CV_32F, 0, 1, ksize=3) / 8.0,
                         dtype=np.float32)
    upper = _find_lid(gy, pupil, iris, True, p)
    if upper.found and p.pupil_refit_under_lid:
        # a half-closed eye: the upper lid hides more of the pupil than the top sector the pupil
        # search leaves out; measure the pupil again on what the lid leaves visible
        refit = refit_pupil(smooth, pupil, lambda x, y: np.asarray(y > upper.y_at(x) + 2.0), p)
        if refit != pupil:
            pupil = refit
            upper = _find_lid(gy, pupil, iris, True, p)
    lower = _find_lid(gy, pupil, iris, False, p)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = spec.copy()
    if upper.found:
        noise |= yy < upper.y_at(xx)
    if lower.found:
        noise |= yy > lower.y_at(xx)
    annulus = ((xx - iris.x) ** 2 + (yy - iris.y) ** 2 <= iris.r**2) & (
        (xx - pupil.x) ** 2 + (yy - pupil.y) ** 2 >= pupil.r**2)
    clean = annulus & ~noise
    measures = {"pupil_contrast": pupil_contrast, "limbus_contrast": limbus_contrast}
    # the share of the iris the lids leave open that lens glare covers (quality: "remove glasses")
    open_iris = annulus & ~(noise & ~spec)
    measures["glare_fraction"] = (float((glare & open_iris).sum()) / max(int(open_iris.sum()), 1)
                                  if glare is not None else 0.0)
    if clean.sum() > 50:
        vals = raw[clean]
        med = float(np.median(vals))
        mad = float(np.median(np.abs(vals - med))) * 1.4826
        delta = max(p.noise_k * mad, p.noise_min_delta)
        noise |= annulus & ((raw < med - delta) | (raw > med + delta))
        measures["iris_level"] = med
        measures["iris_spread"] = mad
    return Segmentation(pupil, iris, upper, lower, filled, noise, measures, spec)
