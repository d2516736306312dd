"""Reproducible comparison of MobileFaceNet with dlib's recognizer on the shared LFW folds.

    python -m engine.models.mobilefacenet_eval --data ../shared/data [--out FILE.json]
           [--cache FILE.npz] [--limit N] [--model-dir DIR]

Both models see the same images, detections and 5-point landmarks (``FaceExtractor.analyse`` with
dlib's detector and landmarks, one thread); each model's chip comes from its own manifest alignment.
Variants: plain, mirror-averaged (``+flip``), and a score fusion of the two models (each cosine
z-normalised with the impostor mean/std of the gallery-vs-gallery scores, then summed: equal weight
after calibration). Figures:

* LFW View-2 folds 1-5 (``face/lfw_pairs.txt``): 5-fold accuracy (threshold from the other folds)
  and TAR at FAR 1e-3 (1,500 impostor pairs: coarse, rule of 3 not met).
* 1:N, design "gallery+distractors": one image per person (the first in manifest order; all 2,086
  people, so the 1,312 people with one image are distractors), mated searches = every other image;
  non-mated searches = the same probes with their mate left out of the gallery. FNIR at FPIR 0.003
  (rank 1) and rank-1 hit rate.
* 1:N, design "singletons non-mated" (as ``nasname evaluate``): gallery = first image of people with
  two or more images, non-mated searches = the people with one image.
* Embedding time per face (1 thread, batch 1, median of 200 runs) and alignment time.

A failed detection makes its pairs / searches misses (score -inf), never silent drops.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.calibration import save_distributions
from engine.errors import AcquisitionFailed
from engine.evaluation.pairs import read_pairs
from engine.face.alignment import align
from engine.face.config import FaceConfig
from engine.face.embedding import FaceEmbedder
from engine.face.extractor import FaceExtractor
from engine.imageio import decode_rgb
from engine.metrics import fnir_at_fpir, kfold_accuracy, rank_hit_rate, search_outcomes, tar_at_far
from engine.models.manifest import ModelManifest
from engine.models.registry import ensure_model
from engine.types import ModelRef

__all__ = ["main", "one_to_n", "pairs_figures"]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
MODELS = ("dlib_resnet_v1", "mobilefacenet")


def _images(data: Path, limit: int | None) -> tuple[list[str], list[Path]]:
    with (data / "face_lfw.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["modality"] == "face"]
    rows = rows[:limit] if limit else rows
    return [r["identity"] for r in rows], [data / r["path"] for r in rows]


def landmarks_for(paths: list[Path], cache: Path | None) -> npt.NDArray[np.float64]:
    """(n, 5, 2) dlib landmarks per image, NaN where no face was found (cached in ``cache``)."""
    names = [str(p) for p in paths]
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["paths"]) == names:
                return np.asarray(z["landmarks"], np.float64)
    extractor = FaceExtractor.default(FaceConfig(threads=1), embedding="dlib_resnet_v1")
    out = np.full((len(paths), 5, 2), np.nan)
    for i, p in enumerate(paths):
        try:
            out[i] = extractor.analyse(p.read_bytes()).landmarks
        except AcquisitionFailed:
            log.info("no face in image %d", i)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, paths=np.array(names), landmarks=out)
    return out


def embed_all(paths: list[Path], lms: npt.NDArray[np.float64],
              embedders: dict[str, FaceEmbedder]) -> dict[str, F32]:
    """``{model: (n, dim)}`` plain and ``{model+flip: ...}`` mirror-averaged embeddings; NaN rows
    where no face was found."""
    out: dict[str, F32] = {}
    for name, emb in embedders.items():
        for key in (name, name + "+flip"):
            out[key] = np.full((len(paths), emb.dim), np.nan, np.float32)
    for i, p in enumerate(paths):
        if np.isnan(lms[i]).any():
            continue
        rgb = decode_rgb(p.read_bytes())
        for name, emb in embedders.items():
            chip = align(rgb, lms[i].astype(np.int64), emb.manifest.alignment)
            raw = emb.embed(np.stack([chip, chip[:, ::-1]]))  # the chip and its mirror image
            for key, vec in ((name, raw[0]), (name + "+flip", raw[0] + raw[1])):
                out[key][i] = vec / np.linalg.norm(vec)
    return out


def timing(
    paths: list[Path], lms: npt.NDArray[np.float64], emb: FaceEmbedder, n: int = 200
) -> dict[str, float]:
    """Per face, in ms: median alignment time, and for one batch-1 embedding run the median and
    minimum wall time and the median CPU time of the calling thread (with one onnxruntime thread the
    work runs on it, so CPU time is the cost on an idle core even when a shared machine is busy)."""
    ok = [i for i in range(len(paths)) if not np.isnan(lms[i]).any()][:n]
    t_align, t_wall, t_cpu = [], [], []
    for i in ok:
        rgb = decode_rgb(paths[i].read_bytes())
        t0 = time.perf_counter()
        chip = align(rgb, lms[i].astype(np.int64), emb.manifest.alignment)[None]
        t1, c1 = time.perf_counter(), time.thread_time()
        emb.embed(chip)
        t_cpu.append(time.thread_time() - c1)
        t_wall.append(time.perf_counter() - t1)
        t_align.append(t1 - t0)
    return {"align_ms": 1e3 * float(np.median(t_align)), "embed_ms": 1e3 * float(np.median(t_wall)),
            "embed_min_ms": 1e3 * float(np.min(t_wall)), "embed_cpu_ms": 1e3 * float(np.median(t_cpu)),
            "runs": len(ok)}


def _cos(a: F32, b: F32) -> npt.NDArray[np.float64]:
    """Cosine similarity matrix; rows/columns of failed images (NaN) become -inf."""
    s = a.astype(np.float64) @ b.astype(np.float64).T
    return np.where(np.isnan(s), -np.inf, s)


def pairs_figures(
    sim: npt.NDArray[np.float64], pairs_file: Path, index: dict[tuple[str, int], int]
) -> dict[str, Any]:
    """LFW pairs figures from the image x image similarity matrix; ``index`` maps (name, n) to a row."""
    pairs = read_pairs(pairs_file)
    s = np.array([sim[index[(p.name1, p.index1)], index[(p.name2, p.index2)]] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    acc = kfold_accuracy(s, same, folds)
    ((_, tar),) = tar_at_far(s[same], s[~same], (1e-3,), min_errors=1.0)
    return {"kfold_accuracy": acc.mean, "kfold_std": acc.std, "tar_at_far_1e-3": tar, "pairs": int(s.size)}


def one_to_n(sim: npt.NDArray[np.float64], identities: list[str], design: str) -> dict[str, Any]:
    """1:N figures from the full image x image similarity matrix ``sim`` (see the module docstring)."""
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, who in enumerate(identities):
        first.setdefault(who, i)
        counts[who] = counts.get(who, 0) + 1
    if design == "distractors":
        gallery = sorted(first.values())
    else:
        gallery = sorted(i for who, i in first.items() if counts[who] >= 2)
    col = {g: c for c, g in enumerate(gallery)}
    mated = [i for i, who in enumerate(identities) if counts[who] >= 2 and first[who] != i]
    mate_col = np.array([col[first[identities[i]]] for i in mated])
    g = sim[:, gallery]
    if design == "distractors":
        nonmated_rows = g[mated].copy()
        nonmated_rows[np.arange(len(mated)), mate_col] = -np.inf  # the mate is "not enrolled"
        n_nonmated = len(mated)
    else:
        singles = [i for i, who in enumerate(identities) if counts[who] == 1]
        nonmated_rows = g[singles]
        n_nonmated = len(singles)
    # A gallery image that gave no template is a failure to enroll: its mated searches are misses.
    failed_gallery = np.all(~np.isfinite(g), axis=0)
    mate_col = np.where(failed_gallery[mate_col], -2, mate_col)
    scores = np.vstack([g[mated], nonmated_rows])
    mates = np.concatenate([mate_col, np.full(n_nonmated, -1)])
    outcomes = search_outcomes(np.where(np.isfinite(scores), scores, -1e9), mates)
    (op,) = fnir_at_fpir(outcomes, (0.003,))
    return {"gallery": len(gallery), "mated": len(mated), "nonmated": n_nonmated,
            "fnir_at_fpir_0.003": op.false_negative_rate, "threshold": op.threshold,
            "fpir": op.false_positive_rate, "rank1": rank_hit_rate(outcomes, 1)}


def _fused(sims: list[npt.NDArray[np.float64]], identities: list[str]) -> npt.NDArray[np.float64]:
    """Sum of z-normalised similarities; impostor statistics from first-image-per-person pairs."""
    firsts = sorted({who: i for i, who in reversed(list(enumerate(identities)))}.values())
    out = np.zeros_like(sims[0])
    for s in sims:
        block = s[np.ix_(firsts, firsts)]
        imp = block[~np.eye(len(firsts), dtype=bool) & np.isfinite(block)]
        out += (s - imp.mean()) / imp.std()
    return out


def _embedders(model_dir: Path | None) -> dict[str, FaceEmbedder]:
    out = {}
    for name in MODELS:
        _, onnx_path = ensure_model(name, model_dir)
        manifest = ModelManifest.load(onnx_path.parent / f"{name}.json")
        out[name] = FaceEmbedder(onnx_path, manifest, threads=1, batch_size=1)
    return out


def timing_only(data: Path, runs: int, model_dir: Path | None) -> dict[str, Any]:
    """Only the per-face times, on the first ``runs`` images (landmarks computed, not timed)."""
    _, paths = _images(data, runs)
    lms = landmarks_for(paths, None)
    return {"timing_ms_1_thread": {k: timing(paths, lms, e, runs) for k, e in _embedders(model_dir).items()},
            "variants": {}}


def _cached_embeddings(paths: list[Path], lms: npt.NDArray[np.float64], embedders: dict[str, FaceEmbedder],
                       cache: Path | None) -> dict[str, F32]:
    """``embed_all``, reused from ``<cache>.embeddings.npz`` when images and model files match."""
    key = [str(p) for p in paths] + [e.manifest.onnx_sha256 for e in embedders.values()]
    store = cache.with_suffix(".embeddings.npz") if cache is not None else None
    if store is not None and store.is_file():
        with np.load(store, allow_pickle=False) as z:
            if list(z["key"]) == key:
                return {k: np.asarray(z[k], np.float32) for k in z.files if k != "key"}
    embs = embed_all(paths, lms, embedders)
    if store is not None:
        np.savez(store, key=np.array(key), **embs)  # type: ignore[arg-type]
    return embs


def calibrate_mobilefacenet(x: F32, identities: list[str], embedders: dict[str, FaceEmbedder]) -> str:
    """Write MobileFaceNet's genuine/impostor distributions (mirror-averaged templates, as the default
    ``FaceConfig`` makes them) to ``engine/calibration_data``; every pair of images with a face."""
    ok = ~np.isnan(x[:, 0])
    v, who = x[ok].astype(np.float64), np.array(identities)[ok]
    iu = np.triu_indices(len(v), k=1)
    scores = (v @ v.T)[iu]
    same = who[iu[0]] == who[iu[1]]
    manifest = embedders["mobilefacenet"].manifest
    ref = ModelRef(manifest.model_id, manifest.version + "+flip")
    source = (f"LFW deep-funneled, all {len(v)} shared images with a face ({int((~ok).sum())} without), all "
              f"pairs: {int(same.sum())} genuine, {int((~same).sum())} impostor; cosine of mirror-averaged "
              f"{ref} templates (dlib detection + landmarks, 3-point alignment)")
    path = save_distributions(ref, "face", scores[same], scores[~same], source=source,
                              command="python -m engine.models.mobilefacenet_eval --data ../shared/data "
                                      "--calibrate")
    return str(path)


def evaluate(data: Path, cache: Path | None, limit: int | None, model_dir: Path | None,
             calibrate: bool = False) -> dict[str, Any]:
    identities, paths = _images(data, limit)
    lfw = data / "face" / "lfw"
    index = {(p.parent.name, int(p.stem.rsplit("_", 1)[1])): i for i, p in enumerate(paths)
             if p.parent.parent == lfw}
    t0 = time.perf_counter()
    lms = landmarks_for(paths, cache)
    log.info("landmarks: %.0f s", time.perf_counter() - t0)
    embedders = _embedders(model_dir)
    t1 = time.perf_counter()
    embs = _cached_embeddings(paths, lms, embedders, cache)
    log.info("embeddings: %.0f s", time.perf_counter() - t1)
    calibration = (calibrate_mobilefacenet(embs["mobilefacenet+flip"], identities, embedders)
                   if calibrate else None)
    sims = {k: _cos(v, v) for k, v in embs.items()}
    sims["fused"] = _fused([sims["dlib_resnet_v1"], sims["mobilefacenet"]], identities)
    sims["fused+flip"] = _fused([sims["dlib_resnet_v1+flip"], sims["mobilefacenet+flip"]], identities)
    result: dict[str, Any] = {"images": len(paths), "no_face": int(np.isnan(lms[:, 0, 0]).sum()),
                              "variants": {}, "timing_ms_1_thread": {}}
    pairs_file = data / "face" / "lfw_pairs.txt"
    for key, sim in sims.items():
        fig: dict[str, Any] = {}
        if limit is None:
            fig["pairs"] = pairs_figures(sim, pairs_file, index)
        fig["1toN_distractors"] = one_to_n(sim, identities, "distractors")
        fig["1toN_singletons_nonmated"] = one_to_n(sim, identities, "singletons")
        result["variants"][key] = fig
    for name, emb in embedders.items():
        result["timing_ms_1_thread"][name] = timing(paths, lms, emb)
    if calibration is not None:
        result["calibration_file"] = calibration
    return result


def _table(result: dict[str, Any]) -> str:
    head = ["| variant | 5-fold acc | TAR@FAR1e-3 | FNIR@FPIR.003 (distractors) | rank-1 | "
            "FNIR@FPIR.003 (singletons) |", "|---|---|---|---|---|---|"]
    lines = head if result["variants"] else []
    for key, fig in result["variants"].items():
        p = fig.get("pairs", {})
        d, s = fig["1toN_distractors"], fig["1toN_singletons_nonmated"]

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        lines.append(f"| {key} | {pct(p.get('kfold_accuracy'))} | {pct(p.get('tar_at_far_1e-3'))} | "
                     f"{pct(d['fnir_at_fpir_0.003'])} | {pct(d['rank1'])} | {pct(s['fnir_at_fpir_0.003'])} |")
    for name, t in result["timing_ms_1_thread"].items():
        lines.append(f"{name}: embed {t['embed_ms']:.2f} ms/face wall (min {t['embed_min_ms']:.2f}), "
                     f"{t['embed_cpu_ms']:.2f} ms CPU; align {t['align_ms']:.2f} ms (1 thread, "
                     f"medians of {t['runs']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.models.mobilefacenet_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the shared data folder (face_lfw.csv)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--cache", type=Path, help="landmark cache (.npz), reused when the image list matches")
    p.add_argument("--limit", type=int, help="first N images only (no pairs figures)")
    p.add_argument("--model-dir", type=Path)
    p.add_argument("--timing-only", type=int, metavar="RUNS", help="only time RUNS faces per model")
    p.add_argument("--calibrate", action="store_true",
                   help="also write MobileFaceNet's score distributions to engine/calibration_data")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.timing_only:
        result = timing_only(args.data, args.timing_only, args.model_dir)
    else:
        result = evaluate(args.data, args.cache, args.limit, args.model_dir, args.calibrate)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
