"""Measure the face model's genuine and impostor similarity distributions and save them as the
engine's calibration data (engine/calibration_data/<model_id>@<version>.json).

    .venv/bin/python models/calibrate_face.py [--data ../shared/data] [--cache /tmp/face-cache]
                                              [--face-model sface|dlib_resnet_v1]

Images: every LFW image used by View-2 folds 1-5 (face/lfw_pairs.txt; deep-funneled LFW). Scores:
cosine similarity of the FaceExtractor's templates (default configuration, e.g. SFace + mirrored-photo
view) for *every*
pair of those images: same person = genuine, different people = impostor (millions of impostor pairs,
so the tail that sets thresholds for large galleries is measured, not extrapolated). Images where no
face is found are left out (reported). Only numbers are written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.calibration import save_distributions  # noqa: E402
from engine.face import FaceConfig, FaceExtractor  # noqa: E402
from engine.face.evaluate import embed_paths, normalise, read_lfw_pairs, templates  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache dir (default: a temp dir)")
    ap.add_argument("--face-model", default="sface", help="registry name of the face embedding")
    args = ap.parse_args()
    fx = FaceExtractor.default(FaceConfig(), embedding=args.face_model)
    root = args.data / "face" / "lfw"
    pairs = read_lfw_pairs(args.data / "face" / "lfw_pairs.txt")
    paths = sorted({root / p.a for p in pairs} | {root / p.b for p in pairs})
    with tempfile.TemporaryDirectory() as tmp:
        plain, mirror, failed = embed_paths(fx, paths, args.cache or Path(tmp))
    names = sorted(plain)
    raw = templates(fx, plain, mirror)
    x = np.stack([normalise(raw[n]) for n in names])
    person = np.array([Path(n).parent.name for n in names])
    sims = x @ x.T
    iu = np.triu_indices(len(names), k=1)
    same = person[iu[0]] == person[iu[1]]
    scores = sims[iu]
    genuine, impostor = scores[same], scores[~same]
    source = (f"LFW deep-funneled, the {len(paths)} images of View-2 folds 1-5 ({len(failed)} without a "
              f"face left out), all pairs: {genuine.size} genuine, {impostor.size} impostor; cosine of "
              f"the default FaceExtractor templates ({fx.model})")
    path = save_distributions(fx.model, "face", genuine, impostor, source=source,
                              command=".venv/bin/python models/calibrate_face.py --face-model "
                                      + args.face_model)
    print(f"wrote {path}: {source}")
    for far in (1e-3, 1e-4, 1e-5, 1e-6):
        thr = float(np.quantile(impostor, 1 - far))
        print(f"  FMR {far:g}: cosine > {thr:.4f}, FNMR {(genuine <= thr).mean():.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
