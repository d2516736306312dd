"""Where iris segmentation goes wrong on a labelled image set: a table and, on request, overlays.

    .venv/bin/python -m engine.iris.diagnose --manifest ../shared/data/iris_mmu2.csv \
        [--manifest ../shared/data/iris_casia1.csv] [--overlays /tmp/iris-overlays] [--all] [--json out.json]

Every image is segmented and encoded by the product's ``IrisExtractor``; each is then compared with
the other images of the same eye (``IrisMatcher``). A row is printed for every image that shows one of
the failure classes below, or whose median genuine similarity is low (its mates do not recognise
it, the clearest sign that a boundary is wrong). Flags:

- ``NO_TEMPLATE``: the extractor refused the image (the error's reasons are shown).
- ``OFF_CENTRE``: pupil centre far from the limbus centre (``concentricity`` > 0.2): a pupil found at
  an eye corner, or a limbus pulled to one side.
- ``RATIO``: pupil/iris radius ratio outside 0.2-0.7 (a limbus taken at the lid or brow, a pupil
  taken for the iris).
- ``IRIS_SIZE``: iris radius more than 15% away from the median of the same eye's images (an oversized
  or undersized limbus; uses the labels, so it is a diagnostic only, never a product rule).
- ``LOW_LIMBUS``: limbus contrast below 6 grey levels (dark iris, soft limbus).
- ``OCCLUDED``: fewer than 35% of the code bits usable (half-closed eye, lashes).
- ``GLINT``: more than 25% of the pupil boundary covered by specular reflections (glasses).
- ``LOW_GENUINE``: median similarity to the same eye's other images below ``--genuine-floor``.

Overlays (PNG, one per listed image; all images with ``--all``) go to a directory outside the
repository: never commit them (they are biometric images). Green: pupil, red: limbus, blue: lids,
magenta: noise mask.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engine.errors import SampleRejected
from engine.evaluation.manifest import read_manifest
from engine.imageio import decode_gray
from engine.iris.extractor import IrisExtractor
from engine.iris.matcher import IrisMatcher
from engine.iris.segmentation import Segmentation
from engine.types import IrisTemplate

__all__ = ["Diagnosis", "diagnose", "main"]


@dataclass
class Diagnosis:
    """One image's segmentation numbers and the failure classes it shows."""

    identity: str
    path: str
    pupil: tuple[float, float, float] | None = None
    iris: tuple[float, float, float] | None = None
    measures: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    genuine_median: float | None = None


def _glint_on_pupil(seg: Segmentation, spec: np.ndarray) -> float:
    ang = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    xs = np.clip(np.round(seg.pupil.x + seg.pupil.r * np.cos(ang)), 0, spec.shape[1] - 1).astype(int)
    ys = np.clip(np.round(seg.pupil.y + seg.pupil.r * np.sin(ang)), 0, spec.shape[0] - 1).astype(int)
    return float(spec[ys, xs].mean())


def _overlay(gray: np.ndarray, seg: Segmentation, path: Path) -> None:
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    tint = img.copy()
    tint[seg.noise] = (255, 0, 255)
    img = cv2.addWeighted(img, 0.7, tint, 0.3, 0.0)
    for c, colour in ((seg.pupil, (0, 255, 0)), (seg.iris, (0, 0, 255))):
        cv2.circle(img, (round(c.x), round(c.y)), round(c.r), colour, 1, cv2.LINE_AA)
    xs = np.arange(round(seg.iris.x - seg.iris.r), round(seg.iris.x + seg.iris.r) + 1, dtype=np.float64)
    for lid in (seg.upper_lid, seg.lower_lid):
        if lid.found:
            pts = np.stack([xs, lid.y_at(xs)], axis=1).round().astype(np.int32)
            cv2.polylines(img, [pts], False, (255, 128, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def diagnose(extractor: IrisExtractor, rows: list[tuple[str, Path]], overlays: Path | None = None,
             all_overlays: bool = False, genuine_floor: float = 0.62) -> list[Diagnosis]:
    """Diagnose every ``(identity, path)`` row (see module docstring); overlays of the flagged images
    (or all) are written to ``overlays`` when given."""
    out: list[Diagnosis] = []
    templates: dict[int, IrisTemplate] = {}
    segs: dict[int, tuple[np.ndarray, Segmentation]] = {}
    for i, (identity, path) in enumerate(rows):
        d = Diagnosis(identity, str(path))
        out.append(d)
        data = path.read_bytes()
        try:
            seg, _, ex = extractor.run(data)
        except SampleRejected as exc:
            d.flags.append("NO_TEMPLATE")
            d.reasons = list(exc.reasons)
            continue
        if not isinstance(ex.template, IrisTemplate):
            raise TypeError("iris extractor returned a non-iris template")
        templates[i] = ex.template
        segs[i] = (decode_gray(data, extractor.config.limits), seg)
        d.pupil = (seg.pupil.x, seg.pupil.y, seg.pupil.r)
        d.iris = (seg.iris.x, seg.iris.y, seg.iris.r)
        d.measures = {k: round(float(v), 4) for k, v in ex.quality.measures.items()}
        if seg.specular is not None:
            d.measures["glint_on_pupil"] = round(_glint_on_pupil(seg, seg.specular), 3)
        d.reasons = [r.value for r in ex.quality.reasons]
    by_eye: dict[str, list[int]] = defaultdict(list)
    for i in templates:
        by_eye[out[i].identity].append(i)
    matcher = IrisMatcher()
    for members in by_eye.values():
        radii = np.array([out[i].measures["iris_radius_px"] for i in members])
        med_r = float(np.median(radii))
        for i in members:
            d = out[i]
            mates = [matcher.similarity(templates[i], templates[j]) for j in members if j != i]
            d.genuine_median = round(float(np.median(mates)), 4) if mates else None
            m = d.measures
            if m["concentricity"] > 0.2:
                d.flags.append("OFF_CENTRE")
            if not 0.2 <= m["pupil_iris_ratio"] <= 0.7:
                d.flags.append("RATIO")
            if len(members) >= 3 and abs(m["iris_radius_px"] / med_r - 1.0) > 0.15:
                d.flags.append("IRIS_SIZE")
            if m["limbus_contrast"] < 6.0:
                d.flags.append("LOW_LIMBUS")
            if m["usable_fraction"] < 0.35:
                d.flags.append("OCCLUDED")
            if m.get("glint_on_pupil", 0.0) > 0.25:
                d.flags.append("GLINT")
            if d.genuine_median is not None and d.genuine_median < genuine_floor:
                d.flags.append("LOW_GENUINE")
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
        for i, (gray, seg) in segs.items():
            if all_overlays or out[i].flags:
                name = f"{out[i].identity}_{Path(out[i].path).stem}.png"
                _overlay(gray, seg, overlays / name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.iris.diagnose", description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, action="append", required=True,
                    help="CSV with identity,modality,path (repeatable)")
    ap.add_argument("--overlays", type=Path, help="write overlay PNGs here (outside the repository)")
    ap.add_argument("--all", action="store_true", help="overlays of every image, not only flagged ones")
    ap.add_argument("--genuine-floor", type=float, default=0.62)
    ap.add_argument("--json", type=Path, help="also write every image's diagnosis here")
    args = ap.parse_args(argv)
    extractor = IrisExtractor.default()
    results: list[Diagnosis] = []
    for manifest in args.manifest:
        rows = [(s.subject, s.path) for s in read_manifest(manifest, "iris")]
        results += diagnose(extractor, rows, args.overlays, args.all, args.genuine_floor)
    listed = [d for d in results if d.flags]
    print(f"{'image':<34} {'flags':<32} {'gen':>5} {'ratio':>5} {'conc':>5} {'r_iris':>6} {'limb':>5} "
          f"{'use':>5} reasons")
    for d in listed:
        m = d.measures
        name = "/".join(Path(d.path).parts[-2:])
        gen = f"{d.genuine_median:.3f}" if d.genuine_median is not None else "-"
        print(f"{name:<34} {','.join(d.flags):<32} {gen:>5} {m.get('pupil_iris_ratio', 0):5.2f} "
              f"{m.get('concentricity', 0):5.2f} {m.get('iris_radius_px', 0):6.1f} "
              f"{m.get('limbus_contrast', 0):5.1f} {m.get('usable_fraction', 0):5.2f} {','.join(d.reasons)}")
    counts: dict[str, int] = defaultdict(int)
    for d in listed:
        for f in d.flags:
            counts[f] += 1
    print(f"\n{len(listed)} of {len(results)} images flagged: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.json:
        args.json.write_text(json.dumps([asdict(d) for d in results], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
