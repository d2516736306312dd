"""Pupil detection and the circular integro-differential operator it shares with the limbus search.

Pupil candidates are the largest compact dark discs (distance transform of dark masks at a few grey
levels, half resolution); each is refined by the integro-differential operator (``best_circle``) as
a contrast relative to its inside level, on an image clipped at a low grey-level quantile and
without the top sector where an upper lid covers the pupil; the darkest candidate that is darker
than its surround all round wins (``find_pupils``). See ``engine.iris.segmentation`` for the whole
pipeline and ``SegmentationParams`` for the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from engine.errors import AcquisitionFailed
from engine.types import QualityReason

if TYPE_CHECKING:
    from engine.iris.segmentation import SegmentationParams

__all__ = ["Circle", "best_circle", "find_pupils", "refit_pupil", "ring_profiles"]

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Circle:
    """A circle in image pixels: centre ``(x, y)``, radius ``r``."""

    x: float
    y: float
    r: float


def ring_profiles(img: F32, cx: F32, cy: F32, radii: F32, angles: F32) -> tuple[F32, F32]:
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


def best_circle(img: F32, cx0: float, cy0: float, shift: float, step: float, radii: F32,
                 arcs: list[F32], window_frac: float, min_window: int = 2,
                 around: Circle | None = None, peak_only: bool = False,
                 relative: float = 0.0, weight: F32 | None = None) -> tuple[Circle, float]:
    """Integro-differential operator over a grid of centres: maximise the step of the arc-mean
    intensity across the circle (mean over ``w`` px outside minus ``w`` px inside, ``w`` =
    ``window_frac * r`` so that a blurred boundary of a big circle is measured whole; dark
    inside, bright outside). ``radii`` must be spaced 1 px. With two arcs (left and right of the eye)
    the score favours circles whose edge is seen on both sides. Returns the circle and the step
    (grey levels). ``around``: a circle (the pupil) that the result must enclose with its inner
    window clear of it, whatever the centre offset. ``peak_only``: the radius must be a local
    maximum of the score (not the outer end of the range). ``relative`` > 0: the step is divided by
    (inside level + ``relative``) and scaled by 50, a contrast rather than a grey-level step.
    ``weight``: a factor per radius (a prior on the radius) that the score is multiplied by."""
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
        means, frac = ring_profiles(img, cx, cy, ext, angles)
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
    if weight is not None:
        score = np.where(score > 0, score * weight[None, :], score)
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


_ALL_ROUND = np.linspace(0, 2 * np.pi, 48, endpoint=False, dtype=np.float32)


def _edge_image(img: F32, p: SegmentationParams) -> F32:
    # the pupil edge is a step from very dark to iris grey; anything brighter (lid skin, sclera,
    # a glint) is clipped so that a bright lid edge across the pupil or the iris-to-sclera edge of
    # a dark iris cannot outweigh it
    if p.pupil_clip_quantile >= 1:
        return img
    clip = float(np.quantile(img[::2, ::2], p.pupil_clip_quantile))
    return np.minimum(img, np.float32(clip))


def _refine(edge_img: F32, img: F32, cx: float, cy: float, radii: F32, shift: float, arcs: F32,
            p: SegmentationParams) -> tuple[Circle, float]:
    """Pupil circle by the relative-contrast operator on ``arcs`` (coarse, then +-1 px); the step
    returned is in grey levels, measured all round."""
    circle, step = best_circle(edge_img, cx, cy, shift, max(1.0, shift / 3), radii, [arcs], 0.1,
                               relative=p.pupil_relative)
    circle, step = best_circle(edge_img, circle.x, circle.y, 1.0, 0.5,
                               np.arange(max(float(radii[0]), circle.r - 2), circle.r + 2.01, 1.0,
                                         dtype=np.float32),
                               [arcs], 0.1, relative=p.pupil_relative)
    if p.pupil_relative > 0:
        # the boundary contrast reported (quality, tie-breaks) stays in grey levels
        _, step = best_circle(img, circle.x, circle.y, 0.0, 1.0, np.array([circle.r], np.float32),
                              [_ALL_ROUND], 0.1)
    return circle, step


def refit_pupil(img: F32, pupil: Circle, visible: Callable[[F32, F32], B],
                p: SegmentationParams) -> Circle:
    """The pupil measured again on the part of its boundary that ``visible(xs, ys)`` says is not
    under a lid: a lid lower than the fixed top sector ``find_pupils`` leaves out cuts the disc,
    and the circle fitted to the cut disc is too small and too low. Returns ``pupil`` unchanged
    when the lid hides no more than that sector, or too much of the boundary to measure it."""
    # the boundary with the outer window of the operator (10% of the radius)
    out_r = pupil.r * 1.1
    xs = (pupil.x + out_r * np.cos(_ALL_ROUND)).astype(np.float32)
    seen = visible(xs, (pupil.y + out_r * np.sin(_ALL_ROUND)).astype(np.float32))
    if 1.0 - seen.mean() <= p.pupil_lid_sector / 360.0 or seen.mean() < 0.4:
        return pupil
    lo = max(p.pupil_radius_px[0], pupil.r * p.pupil_search[0])
    hi = min(p.pupil_radius_px[1], pupil.r * p.pupil_search[1])
    radii = np.arange(lo, hi + 1e-6, 1.0, dtype=np.float32)
    circle, _ = _refine(_edge_image(img, p), img, pupil.x, pupil.y, radii,
                        max(2.0, round(pupil.r * p.pupil_search[2])), _ALL_ROUND[seen], p)
    return circle


def find_pupils(img: F32, p: SegmentationParams) -> list[tuple[Circle, float]]:
    """Refined pupil candidates ``(circle, step)``, darkest inside first, keeping those whose
    all-round score is near the best. The pupil is the darkest disc of the eye: a dark iris against
    bright sclera can score as well as the pupil, but its inside is never as dark."""
    found: list[tuple[Circle, float, float, float]] = []
    # the refinement leaves out the top of the circle, where an upper lid often covers the pupil
    # (image y grows downwards: up is 270 degrees)
    lid_free_cols = np.abs(_ALL_ROUND - 1.5 * np.pi) > math.radians(p.pupil_lid_sector / 2)
    lid_free = _ALL_ROUND[lid_free_cols]
    edge_img = _edge_image(img, p)
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
        circle, step = _refine(edge_img, img, cx, cy, radii, shift, lid_free, p)
        score, inside = _pupil_score(img, circle, _ALL_ROUND, p.pupil_texture, lid_free_cols)
        found.append((circle, step, score, inside))
    found = [f for f in found if np.isfinite(f[1]) and f[1] > 0 and f[2] > 0]
    if not found:
        raise AcquisitionFailed("no pupil found in the image", reasons=[QualityReason.NO_IRIS.value])
    top = max(f[2] for f in found)
    # darkest inside first; a stronger boundary step breaks near-ties (a lid over the pupil top
    # leaves several equally dark circles)
    best = sorted((f for f in found if f[2] >= p.pupil_keep * top), key=lambda f: f[3] - 0.1 * f[1])
    # a dark iris is a dark disc darker than the sclera all round, often more regularly so than the
    # pupil inside it (crypts and lashes make the pupil's step patchy): a clearly darker disc nested
    # inside a kept one, and big enough to be the pupil of that iris, takes its place in the order
    kept: list[tuple[Circle, float, float, float]] = []
    for b in best:
        nested = [f for f in found if f[2] >= p.pupil_nested_keep * top
                  and f[3] < b[3] - p.pupil_nested_darker
                  and math.hypot(f[0].x - b[0].x, f[0].y - b[0].y) + f[0].r < b[0].r
                  and f[0].r >= p.pupil_iris_ratio[0] * b[0].r]
        kept += [*sorted(nested, key=lambda f: f[3] - 0.1 * f[1])[:1], b]
    out: list[tuple[Circle, float]] = []
    for c, step, _, _ in kept:
        if not any(abs(c.x - o.x) < 0.3 * o.r and abs(c.y - o.y) < 0.3 * o.r and abs(c.r - o.r) < 0.2 * o.r
                   for o, _ in out):
            out.append((c, step))
    return out
