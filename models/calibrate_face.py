"""Measure the face model's genuine and impostor similarity distributions and save them as the
engine's calibration data (engine/calibration_data/<model_id>@<version>.json).

    .venv/bin/python models/calibrate_face.py [--data ../shared/data] [--cache /tmp/face-cache]
                                              [--face-model sface|dlib_resnet_v1]
    .venv/bin/python models/calibrate_face.py --from-evaluate DIR   # scores of an evaluate run

``--from-evaluate``: the folder of ``nasname evaluate --manifest face_lfw.csv --keep-refused`` (all 4,563
shared LFW images, the product's templates, refused samples included): no second extraction.

Images: every LFW image used by View-2 folds 1-5 (face/lfw_pairs.txt; deep-funneled LFW). Scores:
cosine similarity of the FaceExtractor's templates (default configuration, e.g. SFace + mirrored-photo
view) for *every*
pair of those images: same person = genuine, different people = impostor (millions of impostor pairs,
so the tail that sets thresholds for large galleries is measured, not extrapolated). Images where no
face is found are left out (reported). Only numbers are written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.calibration import save_distributions  # noqa: E402
from engine.face import FaceConfig, FaceExtractor  # noqa: E402
from engine.face.evaluate import embed_paths, normalise, read_lfw_pairs, templates  # noqa: E402
from engine.fusion import calibration_summary  # noqa: E402
from engine.types import ModelRef  # noqa: E402

Measured = tuple[ModelRef, npt.NDArray[np.float64], npt.NDArray[np.float64], str, str]


def _from_pairs(args: argparse.Namespace) -> Measured:
    """Extract the View-2 pair images with the named model and score every pair."""
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
    scores = sims[iu].astype(np.float64)
    source = (f"LFW deep-funneled, the {len(paths)} images of View-2 folds 1-5 ({len(failed)} without a "
              f"face left out), all pairs: {int(same.sum())} genuine, {int((~same).sum())} impostor; "
              f"cosine of the default FaceExtractor templates ({fx.model})")
    return fx.model, scores[same], scores[~same], source, f"--face-model {args.face_model}"


def _from_evaluate(run: Path) -> Measured:
    """Every pair of the samples of a ``nasname evaluate --keep-refused`` run that gave a template
    (refused by the quality gate or not: calibration describes the model, not the gate)."""
    doc = json.loads((run / "metrics.json").read_text())
    model_id, version = doc["models"]["face"]["ref"].split("@", 1)
    with np.load(run / "scores.npz") as z:
        scores, have, subjects = z["face_scores_ungated"], z["face_extracted"], z["face_subjects"]
    iu, ju = np.triu_indices(len(subjects), k=1)
    keep = have[iu] & have[ju]
    iu, ju = iu[keep], ju[keep]
    same = subjects[iu] == subjects[ju]
    s = scores[iu, ju].astype(np.float64)
    source = (f"LFW deep-funneled, {int(have.sum())} of the {len(subjects)} images of "
              f"{doc['inputs']['manifest'].rsplit('/', 1)[-1]} with a template, all pairs: {int(same.sum())} "
              f"genuine, {int((~same).sum())} impostor; cosine of the product's templates "
              f"({model_id}@{version}, nasname evaluate --keep-refused)")
    evaluated = str(doc["inputs"].get("command", "nasname evaluate ... --keep-refused"))
    evaluated = evaluated.replace(str(run), "DIR")
    return ModelRef(model_id, version), s[same], s[~same], source, f"--from-evaluate DIR  (DIR: {evaluated})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache dir (default: a temp dir)")
    ap.add_argument("--face-model", default="sface", help="registry name of the face embedding")
    ap.add_argument("--from-evaluate", type=Path, default=None,
                    help="output folder of `nasname evaluate --manifest face_lfw.csv --keep-refused`: use "
                         "its scores instead of extracting again")
    args = ap.parse_args()
    if args.from_evaluate is not None:
        model, genuine, impostor, source, how = _from_evaluate(args.from_evaluate)
    else:
        model, genuine, impostor, source, how = _from_pairs(args)
    path = save_distributions(model, "face", genuine, impostor, source=source,
                              command=f".venv/bin/python models/calibrate_face.py {how}")
    print(f"wrote {path}: {source}")
    for line in calibration_summary(model):  # what the engine makes of it
        print(f"  {line}")
    for far in (1e-3, 1e-4, 1e-5, 1e-6):
        thr = float(np.quantile(impostor, 1 - far))
        print(f"  FMR {far:g}: cosine > {thr:.4f}, FNMR {(genuine <= thr).mean():.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
