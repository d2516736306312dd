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
    ``pupil_keep``: candidates whose all-round score is at least this fraction of the best compete,
    and the darkest wins (darkness measured outside the top ``pupil_lid_sector`` degrees, which
    are also left out of the refinement). ``pupil_relative``: offset (grey levels) of the relative
    pupil contrast (0 = absolute step). ``pupil_clip_quantile``: grey-level quantile the pupil
    refinement clips the image at (1 = no clipping). ``pupil_joint``: how many of those are also
    tried with a limbus search (1 = off; measured worse on MMU2 when on). ``pupil_search``:
    refinement radius range and centre shift, as multiples of the candidate's radius.
    ``limbus_arc_deg``/``limbus_arc_up``: lateral arcs used for the limbus (below / fraction above
    horizontal); ``limbus_centre_shift``: its centre search around the pupil centre, as a fraction
    of the smallest radius; ``limbus_window``: edge window as a fraction of the radius.
    ``eyelid_min_contrast``: mean vertical gradient (grey levels / px) for a lid to count as found.
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
    pupil_keep: float = 0.95
    pupil_joint: int = 1
    discs_per_level: int = 2
    pupil_texture: float = 1.0
    pupil_lid_sector: float = 90.0
    pupil_clip_quantile: float = 0.3
    pupil_relative: float = 10.0
    pupil_search: tuple[float, float, float] = (0.8, 1.8, 0.3)
    limbus_arc_deg: float = 25.0
    limbus_arc_up: float = 0.8
    limbus_centre_shift: float = 0.12
    limbus_window: float = 0.05
    eyelid_min_contrast: float = 4.0
    noise_k: float = 3.5
    noise_min_delta: float = 18.0


@dataclass(frozen=True)
class Circle:
    """A circle in image pixels: centre ``(x, y)``, radius ``r``."""

    x: float
    y: float
    r: float


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
    outside the frame is handled by the normaliser). ``measures`` are boundary contrasts (grey levels
    per pixel of radius) and other raw numbers behind the quality verdict."""

    pupil: Circle
    iris: Circle
    upper_lid: Eyelid
    lower_lid: Eyelid
    image: F32
    noise: B
    measures: dict[str, float] = field(default_factory=dict)


_GLOW_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


def _fill_specular(gray: F32, p: SegmentationParams) -> tuple[F32, B]:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (p.specular_size_px, p.specular_size_px))
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, k)
    spec = (gray - opened) > p.specular_tophat
    # the glow around a glint is dimmer than the threshold but still brighter than the pupil under it
    spec = cv2.dilate(spec.astype(np.uint8), _GLOW_KERNEL).astype(bool)
    filled = np.where(spec, opened, gray).astype(np.float32)
    return filled, spec


def _ring_profiles(img: F32, cx: F32, cy: F32, radii: F32, angles: F32) -> tuple[F32, F32]:
    """Mean intensity along arcs. ``cx, cy``: (M,) centres; returns (M, R) means and the (M, R)
    fraction of arc samples inside the image."""
    h, w = img.shape
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    xs = cx[:, None, None] + radii[None, :, None] * cos[None, None, :]
    ys = cy[:, None, None] + radii[None, :, None] * sin[None, None, :]
    m, r, a = xs.shape
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    vals = cv2.remap(img, xs.reshape(m * r, a), ys.reshape(m * r, a), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(m, r, a)
    count = inside.sum(axis=2, dtype=np.int32)
    frac = (count / a).astype(np.float32)
    if int(count.min()) == a:  # the usual case: every arc inside the frame
        return vals.mean(axis=2, dtype=np.float32), frac
    means = np.where(inside, vals, 0.0).sum(axis=2) / np.maximum(count, 1)
    return means.astype(np.float32), frac


def _best_circle(img: F32, cx0: float, cy0: float, shift: float, step: float, radii: F32,
                 arcs: list[F32], window_frac: float, min_window: int = 2,
                 around: Circle | None = None, peak_only: bool = False,
                 relative: float = 0.0) -> tuple[Circle, float]:
    """Integro-differential operator over a grid of centres: maximise the step of the arc-mean
    intensity across the circle (mean over ``w`` px outside minus ``w`` px inside, ``w`` =
    ``window_frac * r`` so that a blurred boundary of a big circle is measured whole; dark
    inside, bright outside). ``radii`` must be spaced 1 px. With two arcs (left and right of the eye)
    the score favours circles whose edge is seen on both sides. Returns the circle and the step
    (grey levels). ``around``: a circle (the pupil) that the result must enclose with its inner
    window clear of it, whatever the centre offset. ``peak_only``: the radius must be a local
    maximum of the score (not the outer end of the range). ``relative`` > 0: the step is divided by
    (inside level + ``relative``) and scaled by 50, a contrast rather than a grey-level step."""
    offs = np.arange(-shift, shift + 1e-6, step, dtype=np.float32)
    gx, gy = np.meshgrid(offs + cx0, offs + cy0)
    cx, cy = gx.ravel().astype(np.float32), gy.ravel().astype(np.float32)
    win = np.maximum(min_window, np.round(window_frac * radii)).astype(np.int64)
    window = int(win.max())
    before = window
    ext = np.concatenate([radii[0] - np.arange(before, 0, -1, dtype=np.float32), radii,
                          radii[-1] + np.arange(1, window + 1, dtype=np.float32)])
    ext = np.maximum(ext, 0.5)
    n = radii.size
    idx = np.arange(n) + before  # position of each radius in ext
    steps = []
    for angles in arcs:
        means, frac = _ring_profiles(img, cx, cy, ext, angles)
        csum = np.concatenate([np.zeros((means.shape[0], 1), np.float32), np.cumsum(means, axis=1)], axis=1)
        outer = (csum[:, idx + win + 1] - csum[:, idx + 1]) / win
        inner = (csum[:, idx] - csum[:, idx - win]) / win
        st = outer - inner
        if relative > 0:
            # contrast relative to the inside level: a pupil (dark inside) beats the iris-to-sclera
            # edge of a dark iris, whose absolute step can be larger
            st = st / (np.maximum(inner, 0.0) + relative) * 50.0
        # the outer window must be seen too, or the frame edge fakes a boundary
        st[frac[:, idx + win] < 0.6] = -1e6
        steps.append(st)
    score = steps[0] if len(steps) == 1 else (steps[0] + steps[1]) / 2 - np.abs(steps[0] - steps[1]) / 4
    if around is not None:
        # an off-centre circle could otherwise hug the (much stronger) pupil edge on one side
        offset = np.hypot(cx - around.x, cy - around.y)[:, None]
        gap = radii[None, :] - offset - win[None, :] - around.r
        score = np.where(gap >= 0.1 * around.r + 4, score, -1e6)
    if peak_only and radii.size >= 3:
        # a boundary is a peak of the step over radius; a step still growing at the outer end of
        # the search range (bright skin beyond the eye corners) is not one
        is_peak = np.zeros(score.shape, bool)
        is_peak[:, 1:-1] = (score[:, 1:-1] >= score[:, :-2]) & (score[:, 1:-1] >= score[:, 2:])
        # the low end stays allowed: a small iris may sit at the bottom of the plausible range
        is_peak[:, 0] = score[:, 0] >= score[:, 1]
        score = np.where(is_peak, score, -1e6)
    k = int(np.argmax(score))
    mi, ri = divmod(k, radii.size)
    return Circle(float(cx[mi]), float(cy[mi]), float(radii[ri])), float(score[mi, ri])


_CLOSE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def _fill_holes(mask: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Set to 1 every 0-region of ``mask`` that does not touch the image border."""
    h, w = mask.shape
    flood = np.zeros((h + 2, w + 2), np.uint8)
    flood[1:-1, 1:-1] = mask
    # the border ring is 0 and connected, so one fill from a corner reaches every outside region
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    out: npt.NDArray[np.uint8] = np.where(holes, np.uint8(1), mask).astype(np.uint8)
    return out


def _pupil_candidates(img: F32, p: SegmentationParams) -> list[tuple[float, float, float]]:
    cands: list[tuple[float, float, float]] = []
    # quantiles of a quarter-size sample: plenty for grey levels, 4x cheaper
    qs = np.quantile(img[::2, ::2], [*p.dark_quantiles, 0.002, 0.5])
    levels = list(qs[:-2])
    # plus a level between the darkest pixels and the median: a big uniform (painted or saturated)
    # pupil with sensor noise is only speckle at quantiles smaller than its area
    darkest, median = float(qs[-2]), float(qs[-1])
    levels.append(darkest + 0.2 * (median - darkest))
    # candidates are only starting points for the refinement: half resolution is enough, 4x cheaper
    small = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    rmin, rmax = p.pupil_radius_px[0] / 2, p.pupil_radius_px[1] / 2
    for level in levels:
        dark = (small <= level).astype(np.uint8)
        # a uniform (painted or saturated) pupil with sensor noise splits into speckle at any
        # quantile smaller than its area: closing rejoins it
        dark = cv2.morphologyEx(dark, cv2.MORPH_CLOSE, _CLOSE_KERNEL)
        # a glint inside the pupil leaves a hole in its dark mask that would pull the centre off
        dark = _fill_holes(np.asarray(dark, dtype=np.uint8))
        # the frame edge counts as bright, so a dark band at the border cannot hold a big disc
        dark[0, :] = dark[-1, :] = 0
        dark[:, 0] = dark[:, -1] = 0
        dist = cv2.distanceTransform(dark, cv2.DIST_L2, 5)
        # the few largest separate discs: a brow, hair or a frame may hold a bigger one than the pupil
        for _ in range(p.discs_per_level):
            _, maxv, _, maxloc = cv2.minMaxLoc(dist)
            if maxv < rmin * 0.5:
                break
            if maxv <= rmax:
                cands.append((2.0 * maxloc[0] + 0.5, 2.0 * maxloc[1] + 0.5, 2.0 * maxv))
            cv2.circle(dist, maxloc, round(2 * maxv + 3), 0.0, thickness=-1)
    return cands


def _pupil_score(img: F32, c: Circle, angles: F32, p_texture: float = 1.0,
                 level_cols: B | None = None) -> tuple[float, float]:
    """(all-round score, inside grey level) of a pupil candidate. A real pupil is darker than its
    surround in every direction; a lash, a brow, a spectacle frame or the iris (cut by the lids) is
    not."""
    rs = np.array([0.6, 0.75, 0.88, 1.15, 1.3], dtype=np.float32) * c.r
    xs = (c.x + rs[:, None] * np.cos(angles)[None, :]).astype(np.float32)
    ys = (c.y + rs[:, None] * np.sin(angles)[None, :]).astype(np.float32)
    v = cv2.remap(img, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside, outside = v[:3].mean(axis=0), v[3:].mean(axis=0)
    # a pupil is dark *and* smooth inside; a brow or a lash clump is dark but textured
    # (robust spread: a bright lid edge or a glint touching one side must not outweigh the rest)
    # (``level_cols``: the directions a lid rarely covers, so a lid over the pupil's top does not
    # make the true pupil look lighter than a smaller circle in its visible part)
    inner = v[:3] if level_cols is None else v[:3, level_cols]
    q25, q75 = np.percentile(inner, [25.0, 75.0])
    level = float(np.median(inner.mean(axis=0))) + p_texture * float(q75 - q25) * 0.74
    # all-round: the fraction of directions in which it is brighter just outside than inside
    # (a dark iris gives a pupil a small step, but in every direction; lids cut an iris circle)
    return float(np.mean(outside - inside > 3.0 + 0.1 * level)), level


def _pupil_candidates_scored(img: F32, p: SegmentationParams) -> list[tuple[Circle, float]]:
    """Refined pupil candidates ``(circle, step)``, darkest inside first, keeping those whose
    all-round score is near the best. The pupil is the darkest disc of the eye: a dark iris against
    bright sclera can score as well as the pupil, but its inside is never as dark."""
    found: list[tuple[Circle, float, float, float]] = []
    arcs = [np.linspace(0, 2 * np.pi, 48, endpoint=False, dtype=np.float32)]
    # the refinement leaves out the top of the circle, where an upper lid often covers the pupil
    # (image y grows downwards: up is 270 degrees)
    lid_free = arcs[0][np.abs(arcs[0] - 1.5 * np.pi) > math.radians(p.pupil_lid_sector / 2)]
    refine_arcs = [lid_free.astype(np.float32)]
    lid_free_cols = np.abs(arcs[0] - 1.5 * np.pi) > math.radians(p.pupil_lid_sector / 2)
    # the pupil edge is a step from very dark to iris grey; anything brighter (lid skin, sclera,
    # a glint) is clipped so that a bright lid edge across the pupil or the iris-to-sclera edge of
    # a dark iris cannot outweigh it
    clip = float(np.quantile(img[::2, ::2], p.pupil_clip_quantile)) if p.pupil_clip_quantile < 1 else np.inf
    edge_img: F32 = np.minimum(img, np.float32(clip)) if np.isfinite(clip) else img
    seen: list[tuple[float, float, float]] = []
    for cx, cy, r0 in _pupil_candidates(img, p):
        # the same blob seen at several darkness levels is refined once
        tol = max(3.0, 0.2 * r0)
        if any(abs(cx - a) < tol and abs(cy - b) < tol and abs(r0 - c) < tol for a, b, c in seen):
            continue
        seen.append((cx, cy, r0))
        lo = max(p.pupil_radius_px[0], r0 * p.pupil_search[0])
        hi = min(p.pupil_radius_px[1], r0 * p.pupil_search[1] + 3)
        radii = np.arange(lo, hi + 1e-6, 1.0, dtype=np.float32)
        if radii.size < 3:
            continue
        shift = max(2.0, round(r0 * p.pupil_search[2]))
        circle, step = _best_circle(edge_img, cx, cy, shift, max(1.0, shift / 3), radii, refine_arcs, 0.1,
                                    relative=p.pupil_relative)
        circle, step = _best_circle(edge_img, circle.x, circle.y, 1.0, 0.5,
                                    np.arange(max(lo, circle.r - 2), circle.r + 2.01, 1.0, dtype=np.float32),
                                    refine_arcs, 0.1, relative=p.pupil_relative)
        if p.pupil_relative > 0:
            # the boundary contrast reported (quality, tie-breaks) stays in grey levels
            _, step = _best_circle(img, circle.x, circle.y, 0.0, 1.0, np.array([circle.r], np.float32),
                                   arcs, 0.1)
        score, inside = _pupil_score(img, circle, arcs[0], p.pupil_texture, lid_free_cols)
        found.append((circle, step, score, inside))
    found = [f for f in found if np.isfinite(f[1]) and f[1] > 0 and f[2] > 0]
    if not found:
        raise AcquisitionFailed("no pupil found in the image", reasons=[QualityReason.NO_IRIS.value])
    top = max(f[2] for f in found)
    # darkest inside first; a stronger boundary step breaks near-ties (a lid over the pupil top
    # leaves several equally dark circles)
    kept = sorted((f for f in found if f[2] >= p.pupil_keep * top), key=lambda f: f[3] - 0.1 * f[1])
    out: list[tuple[Circle, float]] = []
    for c, step, _, _ in kept:
        if not any(abs(c.x - o.x) < 0.3 * o.r and abs(c.y - o.y) < 0.3 * o.r and abs(c.r - o.r) < 0.2 * o.r
                   for o, _ in out):
            out.append((c, step))
    return out


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
    c, _ = _best_circle(img, pupil.x, pupil.y, shift, max(1.0, shift / 2), radii, arcs, p.limbus_window,
                        around=pupil, peak_only=True)
    fine = np.arange(max(lo, c.r - 3), min(hi, c.r + 3) + 1e-6, 1.0, dtype=np.float32)
    return _best_circle(img, c.x, c.y, 2.0, 1.0, fine, arcs, p.limbus_window, around=pupil)


def _find_lid(gy: F32, pupil: Circle, iris: Circle, upper: bool, p: SegmentationParams) -> Eyelid:
    """Best parabola through the iris by the mean signed vertical gradient along it."""
    xs = np.linspace(iris.x - iris.r * 0.9, iris.x + iris.r * 0.9, 48, dtype=np.float32)
    sign = -1.0 if upper else 1.0  # upper lid: bright above, darker iris below -> negative d/dy
    if upper:
        y0s = np.arange(iris.y - iris.r * 1.05, pupil.y + 1e-6, 1.0, dtype=np.float32)
        curv = np.array([0.0, 0.25, 0.5, 0.8], dtype=np.float32) / iris.r
    else:
        y0s = np.arange(iris.y + iris.r * 1.05, pupil.y - 1e-6, -1.0, dtype=np.float32)
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
    iris-to-sclera boundary around it (score: geometric mean of the two boundary steps)."""
    best: tuple[float, Circle, float, Circle, float] | None = None
    failure: AcquisitionFailed | None = None
    for pupil, pstep in _pupil_candidates_scored(smooth, p)[: max(1, p.pupil_joint)]:
        try:
            iris, lstep = _find_limbus(wide, pupil, p)
        except AcquisitionFailed as exc:
            failure = exc
            continue
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
    filled, spec = _fill_specular(raw, p)
    smooth: F32 = np.asarray(cv2.GaussianBlur(filled, (0, 0), 1.5), dtype=np.float32)
    wide: F32 = np.asarray(cv2.GaussianBlur(filled, (0, 0), 2.5), dtype=np.float32)
    pupil, pupil_contrast, iris, limbus_contrast = _pupil_and_limbus(smooth, wide, p)
    gy: F32 = np.asarray(cv2.Sobel(cv2.GaussianBlur(filled, (0, 0), 2.0), cv2.CV_32F, 0, 1, ksize=3) / 8.0,
                         dtype=np.float32)
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
    if clean.sum() > 50:
        vals = raw[clean]
        med = float(np.median(vals))
        mad = float(np.median(np.abs(vals - med))) * 1.4826
        delta = max(p.noise_k * mad, p.noise_min_delta)
        noise |= annulus & ((raw < med - delta) | (raw > med + delta))
        measures["iris_level"] = med
        measures["iris_spread"] = mad
    return Segmentation(pupil, iris, upper, lower, filled, noise, measures)
