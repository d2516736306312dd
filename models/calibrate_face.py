"""Measure the face model's genuine and impostor similarity distributions and save them as the
engine's calibration data (engine/calibration_data/<model_id>@<version>.json).

    .venv/bin/python models/calibrate_face.py [--data ../shared/data] [--cache /tmp/face-cache]
                                              [--face-model sface|dlib_resnet_v1]
    .venv/bin/python models/calibrate_face.py --from-evaluate DIR   # scores of an evaluate run
    .venv/bin/python models/calibrate_face.py --from-evaluate DIR --fused   # fused-template variant

``--from-evaluate``: the folder of ``nasname evaluate --manifest face_lfw.csv --keep-refused`` (all 4,563
shared LFW images, the product's templates, refused samples included): no second extraction.

``--fused``: the calibrations of fused face templates (``engine.calibration.FUSED_FACE`` and
``FUSED_FACE_VS_ONE``, used by the engine when ``face_frames = "fuse"``). Each person's images with a
template, in manifest order, are cut into disjoint groups of ``engine.multisample.FACE_FUSE_MAX`` (the
rest of a person's images are left out); every group is one fused template (the mean of its unit
embeddings, normalised again, as ``engine.multisample.mean_face`` makes it). ``fused3``: every pair of
groups, both sides fused, the case where impostors look most alike. ``fused3x1``: every group against
every single image outside it (genuine: the person's other images). The cosine of fused templates
follows exactly from the cosines of their members (the sum of the cross cosines over the norms of the
sums), so the evaluate run's scores are enough.

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

from engine.calibration import FUSED_FACE, FUSED_FACE_VS_ONE, save_distributions  # noqa: E402
from engine.face import FaceConfig, FaceExtractor  # noqa: E402
from engine.face.evaluate import embed_paths, normalise, read_lfw_pairs, templates  # noqa: E402
from engine.fusion import calibration_summary  # noqa: E402
from engine.multisample import FACE_FUSE_MAX  # noqa: E402
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


def _fused(measured: Measured, run: Path) -> dict[str, Measured]:
    """Scores of fused templates (groups of ``FACE_FUSE_MAX`` images of one person), both sides fused
    and against single images, from the all-pairs cosines of the evaluate run in ``run``."""
    model, _, _, source, how = measured
    with np.load(run / "scores.npz") as z:
        scores, have, subjects = z["face_scores_ungated"], z["face_extracted"], z["face_subjects"]
    k = FACE_FUSE_MAX
    members: dict[str, list[int]] = {}
    for i in np.flatnonzero(have):
        members.setdefault(str(subjects[i]), []).append(int(i))
    groups = [idx[j:j + k] for idx in members.values() for j in range(0, len(idx) - k + 1, k)]
    owner = np.array([str(subjects[g[0]]) for g in groups])
    flat = np.array(groups, dtype=np.int64).ravel()
    n = len(groups)
    singles = np.flatnonzero(have)
    # sum over each group's members of the cosines to every image: (groups, images)
    to_images = scores[np.ix_(flat, singles)].astype(np.float64).reshape(n, k, len(singles)).sum(axis=1)
    cross = to_images[:, np.searchsorted(singles, flat)].reshape(n, n, k).sum(axis=2)
    norms = np.sqrt(np.diag(cross))  # |sum of the k unit embeddings| of each group
    both = cross / np.outer(norms, norms)
    iu, ju = np.triu_indices(n, k=1)
    same = owner[iu] == owner[ju]
    s = both[iu, ju]
    people = len(set(owner))
    out = {FUSED_FACE: (model, s[same], s[~same],
                        f"fused templates of {k} images (disjoint groups of each person's images with a "
                        f"template, manifest order): {n} groups of {people} people, all pairs of groups: "
                        f"{int(same.sum())} genuine, {int((~same).sum())} impostor; from the all-pairs "
                        f"cosines of: {source}", f"{how} --fused")}
    one = to_images / norms[:, None]
    in_group = np.zeros_like(one, dtype=bool)
    in_group[np.repeat(np.arange(n), k), np.searchsorted(singles, flat)] = True
    mate = (owner[:, None] == subjects[singles][None, :]) & ~in_group
    other = owner[:, None] != subjects[singles][None, :]
    out[FUSED_FACE_VS_ONE] = (model, one[mate], one[other],
                              f"fused templates of {k} images ({n} groups of {people} people, as for "
                              f"{FUSED_FACE}) against every single image outside the group: "
                              f"{int(mate.sum())} genuine, {int(other.sum())} impostor; from the all-pairs "
                              f"cosines of: {source}", f"{how} --fused")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache dir (default: a temp dir)")
    ap.add_argument("--face-model", default="sface", help="registry name of the face embedding")
    ap.add_argument("--from-evaluate", type=Path, default=None,
                    help="output folder of `nasname evaluate --manifest face_lfw.csv --keep-refused`: use "
                         "its scores instead of extracting again")
    ap.add_argument("--fused", action="store_true",
                    help=f"write the calibrations of fused templates ({FUSED_FACE}, {FUSED_FACE_VS_ONE}); "
                         "needs --from-evaluate")
    args = ap.parse_args()
    if args.fused and args.from_evaluate is None:
        ap.error("--fused needs --from-evaluate")
    if args.from_evaluate is not None:
        measured = {"": _from_evaluate(args.from_evaluate)}
        if args.fused:
            measured = _fused(measured[""], args.from_evaluate)
    else:
        measured = {"": _from_pairs(args)}
    for variant, (model, genuine, impostor, source, how) in measured.items():
        path = save_distributions(model, "face", genuine, impostor, source=source, variant=variant,
                                  command=f".venv/bin/python models/calibrate_face.py {how}")
        print(f"wrote {path}: {source}")
        for line in calibration_summary(model, variant=variant):  # what the engine makes of it
            print(f"  {line}")
        for far in (1e-3, 1e-4, 1e-5, 1e-6):
            thr = float(np.quantile(impostor, 1 - far))
            print(f"  FMR {far:g}: cosine > {thr:.4f}, FNMR {(genuine <= thr).mean():.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
