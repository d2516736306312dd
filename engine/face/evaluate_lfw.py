"""Full LFW View-2 (and ORL) figures of the face pipeline:

    python -m engine.face.evaluate_lfw [--data ../shared/data] [--folds 1 2 3 4 5] [--orl]

Prints 5-fold accuracy with and without mirror averaging, TAR at FAR 1e-3, FTE, and ORL rank-1.
Embeddings are cached only in a temporary directory for the run (``--cache DIR`` to reuse one).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.face.config import DetectorConfig, FaceConfig
from engine.face.evaluate import (
    embed_paths,
    kfold_accuracy,
    orl_rank1,
    pair_scores,
    read_lfw_pairs,
    tar_at_far,
    templates,
)
from engine.face.extractor import FaceExtractor

__all__ = ["main", "orl_split"]


def orl_split(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """ORL: image 1 of each subject is the gallery, images 2..10 the probes."""
    gallery: dict[str, str] = {}
    probes: dict[str, str] = {}
    for subj in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(subj.glob("*.pgm")):
            (gallery if img.stem == "1" else probes)[str(img)] = subj.name
    return gallery, probes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.face.evaluate_lfw")
    default_data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--folds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    ap.add_argument("--selection", default=DetectorConfig().selection)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--orl", action="store_true")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--per-fold", type=int, default=0, help="first N matched + N mismatched pairs per fold")
    args = ap.parse_args(argv)
    cfg = FaceConfig(detector=DetectorConfig(selection=args.selection), threads=args.threads)
    fx = FaceExtractor.default(cfg)
    root = args.data / "face" / "lfw"
    pairs = read_lfw_pairs(args.data / "face" / "lfw_pairs.txt", args.folds, args.per_fold or None)
    paths = sorted({root / p.a for p in pairs} | {root / p.b for p in pairs})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        plain, mirror, failed = embed_paths(fx, paths, args.cache or Path(tmp))
        dt = time.perf_counter() - t0
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"LFW folds {args.folds}: {len(pairs)} pairs, {len(paths)} images, {dt:.0f} s "
          f"({dt / max(len(paths), 1) * 1e3:.0f} ms/image incl. mirror), selection={args.selection}")
    print(f"failure to enrol: {len(failed)}/{len(paths)} = {len(failed) / max(len(paths), 1):.2%}")
    variants = {f"{fx.model}": templates(fx, plain, mirror),
                "views + their mirrors": {k: plain[k] + mirror[k] for k in plain}}
    for name, emb in variants.items():
        s = pair_scores(pairs, emb, root)
        acc, std = kfold_accuracy(s, same, folds)
        tar, thr = tar_at_far(s, same, 1e-3)
        print(f"  {name:<16} {len(set(folds.tolist()))}-fold accuracy {acc:.2%} +- {std:.2%}   "
              f"TAR@FAR=1e-3 {tar:.2%} (cosine > {thr:.4f})")
    if args.orl:
        gallery, probes = orl_split(args.data / "face" / "orl")
        o_plain, o_mirror, o_failed = embed_paths(fx, [Path(p) for p in [*gallery, *probes]])
        o_variants = {f"{fx.model}": templates(fx, o_plain, o_mirror),
                      "views + their mirrors": {k: o_plain[k] + o_mirror[k] for k in o_plain}}
        for name, emb in o_variants.items():
            print(f"ORL rank-1 ({name}, 1 gallery image/person, {len(probes)} probes, "
                  f"{len(o_failed)} no-face): {orl_rank1(emb, gallery, probes):.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
