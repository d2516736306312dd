"""Measure the accuracy levers on LFW View 2 (what each one adds over a faithful dlib port):

    python -m engine.face.evaluate_levers [--data ../shared/data] [--folds 1 2 3 4 5] [--jitter 4]

For every image: detection once; the chip of the face chosen by ``largest_central`` and, when it
differs, by ``largest``; raw embeddings of each chip, of its mirror image and of ``--jitter``
dlib-style jittered copies. Prints 5-fold accuracy and TAR@FAR=1e-3 per combination.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import SampleRejected
from engine.face.alignment import align
from engine.face.config import FaceConfig
from engine.face.evaluate import kfold_accuracy, pair_scores, read_lfw_pairs, tar_at_far
from engine.face.extractor import FaceExtractor, choose_face
from engine.face.jitter import jitter_chips
from engine.imageio import decode_rgb

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.face.evaluate_levers")
    default_data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--folds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    ap.add_argument("--jitter", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", type=Path, default=None, help="write the raw embeddings (.npz) here")
    ap.add_argument("--per-fold", type=int, default=0, help="first N matched + N mismatched pairs per fold")
    args = ap.parse_args(argv)
    # the levers are those of dlib's pipeline (its landmark predictor, its chip)
    fx = FaceExtractor.default(FaceConfig(threads=args.threads), embedding="dlib_resnet_v1")
    predictor = fx.predictor
    assert predictor is not None
    root = args.data / "face" / "lfw"
    pairs = read_lfw_pairs(args.data / "face" / "lfw_pairs.txt", args.folds, args.per_fold or None)
    paths = sorted({root / p.a for p in pairs} | {root / p.b for p in pairs})
    emb: dict[str, dict[str, np.ndarray]] = {k: {} for k in ("c", "cm", "cj", "l", "lm", "cf", "cb")}
    multi = 0
    t0 = time.perf_counter()
    for path in paths:
        key = str(path)
        rgb = decode_rgb(path.read_bytes())
        try:
            a = fx.analyse(rgb)
        except SampleRejected:
            continue
        h, w = rgb.shape[:2]
        largest = choose_face(a.detections, w, h, "largest")
        chips = [a.chip]
        if largest != a.chosen:
            multi += 1
            box = np.array([[largest.left, largest.top, largest.right, largest.bottom]])
            pts = predictor.predict(rgb, box)[0]
            chips.append(align(rgb, pts, fx.embedder.manifest.alignment))
        arr = np.stack(chips)
        raw = fx.embedder.embed(arr)
        raw_m = fx.embedder.embed(np.ascontiguousarray(arr[:, :, ::-1]))
        emb["c"][key], emb["cm"][key] = raw[0], raw_m[0]
        emb["l"][key], emb["lm"][key] = raw[-1], raw_m[-1]
        if args.jitter:
            jit = jitter_chips(a.chip[None], args.jitter)[1:]
            emb["cj"][key] = fx.embedder.embed(jit).sum(axis=0)
        # the whole landmark + chip stage run again on the mirrored photo (its own landmarks)
        d = a.chosen
        flipped = np.ascontiguousarray(rgb[:, ::-1])
        fbox = np.array([[w - 1 - d.right, d.top, w - 1 - d.left, d.bottom]])
        fpts = predictor.predict(flipped, fbox)[0]
        fchip = align(flipped, fpts, fx.embedder.manifest.alignment)
        # landmarks averaged over slightly moved and scaled boxes (ERT output depends on the box)
        bw, bh = d.width, d.height
        boxes = [[d.left + dx * bw, d.top + dy * bh, d.right + dx * bw + s * bw, d.bottom + dy * bh + s * bh]
                 for dx, dy, s in ((0, 0, 0), (0.03, 0, 0), (-0.03, 0, 0), (0, 0.03, 0), (0, -0.03, 0),
                                   (-0.025, -0.025, 0.05), (0.025, 0.025, -0.05))]
        mean_pts = predictor.predict(rgb, np.round(np.array(boxes))).mean(axis=0)
        bchip = align(rgb, mean_pts, fx.embedder.manifest.alignment)
        extra = fx.embedder.embed(np.stack([fchip, bchip]))
        emb["cf"][key], emb["cb"][key] = extra[0], extra[1]
    dt = time.perf_counter() - t0
    if args.save:
        names = sorted(emb["c"])
        arrays = {k: np.stack([v[n] for n in names]) for k, v in emb.items() if v}
        np.savez(args.save, names=np.array(names), **arrays)  # type: ignore[arg-type]
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"{len(pairs)} pairs, {len(paths)} images ({len(paths) - len(emb['c'])} without a face, "
          f"{multi} where 'largest' and 'largest_central' differ), {dt:.0f} s")
    c, cm, cj, lg, lm, cf, cb = (emb[k] for k in ("c", "cm", "cj", "l", "lm", "cf", "cb"))
    variants = {
        "faithful port (largest face, no mirror)": lg,
        "largest_central": c,
        "largest + mirror": {k: lg[k] + lm[k] for k in lg},
        "largest_central + mirror (default)": {k: c[k] + cm[k] for k in c},
    }
    variants["largest_central + mirrored-photo landmarks"] = {k: c[k] + cf[k] for k in c}
    variants["largest_central + mirror + mirrored-photo"] = {k: c[k] + cm[k] + cf[k] for k in c}
    variants["box-averaged landmarks"] = cb
    variants["c + mirror + box-avg"] = {k: c[k] + cm[k] + cb[k] for k in c}
    variants["all: c + mirror + mirrored-photo + box-avg"] = {k: c[k] + cm[k] + cf[k] + cb[k] for k in c}
    if args.jitter:
        variants[f"all + jitter {args.jitter}"] = {k: c[k] + cm[k] + cf[k] + cb[k] + cj[k] for k in c}
        variants[f"largest_central + jitter {args.jitter}"] = {k: c[k] + cj[k] for k in c}
        variants[f"largest_central + mirror + jitter {args.jitter}"] = {k: c[k] + cm[k] + cj[k] for k in c}
    for name, e in variants.items():
        s = pair_scores(pairs, e, root)
        acc, std = kfold_accuracy(s, same, folds)
        tar, _ = tar_at_far(s, same, 1e-3)
        print(f"  {name:<46} accuracy {acc:.2%} +- {std:.2%}   TAR@FAR=1e-3 {tar:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
