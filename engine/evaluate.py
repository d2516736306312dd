"""``nasname evaluate``: accuracy of the engine's extractors and matchers on a labelled image set.

    nasname evaluate --manifest FILE.csv [--manifest MORE.csv] [--pairs pairs.txt] --out DIR
                     [--modality face|iris|...] [--face-model NAME]
                     [--limit N] [--multi-sample K ...] [--no-progress]
    nasname evaluate --rescore DIR/scores.npz --out DIR2      # recompute figures from cached scores

Writes ``DIR/metrics.json`` (figures per modality kind, see ``engine.evaluation.analysis`` for what
each count means), ``DIR/scores.npz`` (every comparison score, so figures can be recomputed without
extracting again), and PNG plots (DET: FNMR vs FMR; FNIR vs FPIR). Each top-level figure
(``fte_rate``, ``eer``, ``fnmr_at_fmr``, ``fnir_at_fpir``, ``rank1_hit_rate``, ``rank10_hit_rate``,
``verification_accuracy``) maps a modality kind (``face``, ``iris``, ``fused``) to its value; ``models``
names the models measured (face: the registry name and the template's model ref).

``--multi-sample K`` adds the multi-sample enrolment design (``engine.evaluation.multisample``): the
same probes searched against galleries enrolled with 1..K samples per subject, combined as the engine
combines a station's frames (``engine.multisample``), under ``multi_sample.<kind>.<K>`` in metrics.json.

The face model is the engine's: ``--face-model``, else ``face_model`` of the engine configuration
(``NASNAME_FACE_MODEL``, the config file; default ``sface``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InvalidInput, NasnameError
from engine.evaluation.analysis import KindScores, analyse
from engine.evaluation.chimeric import calibration_status, chimeric_scores, engine_fusion, fusion_available
from engine.evaluation.extraction import ExtractionRun, extract_files
from engine.evaluation.manifest import Sample, read_manifest
from engine.evaluation.multisample import evaluate_multi
from engine.evaluation.pairs import find_image_root, image_path, read_pairs
from engine.evaluation.plots import plot_curves
from engine.evaluation.scoring import Scorer, default_scorer
from engine.extractor import Extractor
from engine.metrics import ErrorCurve, kfold_accuracy
from engine.types import ModelRef, Template

__all__ = ["evaluate", "main", "rescore"]

log = logging.getLogger(__name__)

#: All-pairs scoring keeps an n x n float32 matrix per modality: 30k samples = 3.4 GiB.
MAX_SAMPLES_PER_KIND = 30_000

HEADLINE = ("fte_rate", "eer", "fnmr_at_fmr", "fnir_at_fpir", "rank1_hit_rate", "rank10_hit_rate")


def _load_extractor(kind: str, face_model: str | None = None) -> Extractor:
    from engine.extractors import load_extractor  # lazy: loading models is slow

    return load_extractor(kind, face_model if kind == "face" else None)


def configured_face_model(explicit: str | None = None) -> str:
    """The face model an engine started here would use: ``explicit``, else the engine configuration
    (config file, ``NASNAME_FACE_MODEL``)."""
    if explicit:
        return explicit
    from engine.config import EngineConfig

    return EngineConfig.load().face_model


def evaluate(
    manifest: Path | Sequence[Path],
    out: Path,
    *,
    pairs: Path | None = None,
    modality: str | None = None,
    limit: int | None = None,
    extractors: Mapping[str, Extractor] | None = None,
    scorers: Mapping[str, Scorer] | None = None,
    fusion: Any | None = None,
    mate_excluded: bool = True,
    pairs_per_fold: int | None = None,
    progress: bool = True,
    command: str | None = None,
    face_model: str | None = None,
    keep_refused: bool = False,
    multi_sample: Sequence[int] = (),
) -> dict[str, Any]:
    """Run the evaluation and write its outputs into ``out``. ``extractors`` / ``scorers`` map a kind
    (``face``/``iris``) to the component to use (default: the engine's); ``fusion`` overrides the
    engine's ``Fusion`` for the chimeric part; ``mate_excluded``: also search each mated probe with its
    mate left out (extra non-mated searches, see ``engine.evaluation.analysis``); ``pairs_per_fold``:
    use only the first n same and n different pairs of each fold (quick checks); ``face_model``: the
    face embedding's registry name (default: the engine configuration's); ``keep_refused``: also
    score the samples the quality gate refused and save, per sample, the quality reasons
    (``<kind>_scores_ungated``, ``<kind>_extracted``, ``<kind>_reasons``, ``<kind>_rejected`` in
    scores.npz; read by ``models/calibrate_quality.py``); ``multi_sample``: the K of each multi-sample
    enrolment design to run (none by default). Returns the metrics document."""
    started = time.time()
    manifests = [manifest] if isinstance(manifest, Path) else list(manifest)
    samples = [s for m in manifests for s in read_manifest(m, modality, limit)]
    kinds = [k for k in ("face", "iris") if any(s.kind == k for s in samples)]
    data: dict[str, KindScores] = {}
    runs: dict[str, ExtractionRun] = {}
    models: dict[str, ModelRef] = {}
    scorer_names: dict[str, str] = {}
    ungated: dict[str, dict[str, Any]] = {}
    cache: dict[Path, Template | None] = {}
    multi: dict[str, Any] = {}
    needs_face = "face" in kinds or pairs is not None
    given_face = (extractors or {}).get("face")
    face_name = configured_face_model(face_model) if needs_face and not given_face else None
    for kind in kinds:
        ks = [s for s in samples if s.kind == kind]
        if len(ks) > MAX_SAMPLES_PER_KIND:
            raise InvalidInput(f"{len(ks)} {kind} samples: the all-pairs score matrix would need "
                               f"{len(ks) ** 2 * 4 / 2**30:.1f} GiB; use --limit (at most "
                               f"{MAX_SAMPLES_PER_KIND} samples per modality)")
        extractor = (extractors or {}).get(kind) or _load_extractor(kind, face_name)
        given = (scorers or {}).get(kind)
        scorer, scorer_names[kind] = (given, "given") if given else default_scorer(kind)
        run = extract_files(extractor, [s.path for s in ks], progress=progress, label=f"extract {kind}",
                            keep_refused=keep_refused)
        runs[kind] = run
        models[kind] = extractor.model
        cache.update({s.path: t for s, t in zip(ks, run.templates, strict=True)})
        data[kind] = _score_kind(kind, ks, run, scorer, ungated if keep_refused else None)
        for k in multi_sample:
            multi.setdefault(kind, {})[str(k)] = evaluate_multi([s.subject for s in ks], run, scorer, k,
                                                                mate_excluded)

    fused_note = None
    if "face" in data and "iris" in data:
        if fusion is not None or fusion_available():
            fusion = fusion if fusion is not None else engine_fusion(models["face"], models["iris"])
            data["fused"] = chimeric_scores(data["face"], data["iris"], fusion)
        else:
            fused_note = {"available": False, "note": "engine.fusion not available: per-modality only"}
    doc, curves = _analyse_all(data, mate_excluded)
    if fused_note is not None:
        doc["per_modality"]["fused"] = fused_note
    if "fused" in data:
        doc["per_modality"]["fused"]["calibration"] = calibration_status(fusion)
        doc["per_modality"]["fused"]["pairing"] = ("i-th face subject + i-th iris subject, k-th samples "
                                                   "(manifest order)")
    for kind, run in runs.items():
        doc["per_modality"][kind].update(
            failure_reasons=dict(run.failures), extraction_ms=_stage_summary(run), model=str(models[kind]),
            matcher=scorer_names[kind])

    arrays: dict[str, Any] = {f"{kind}_{name}": value for kind, extra in ungated.items()
                              for name, value in extra.items()}
    for kind, d in data.items():
        arrays[f"{kind}_scores"] = d.scores
        arrays[f"{kind}_ok"] = d.ok
        arrays[f"{kind}_subjects"] = np.array(d.subjects)
    if pairs is not None:
        doc["verification_accuracy"] = _pairs_accuracy(pairs, cache, extractors, scorers, progress, arrays,
                                                       pairs_per_fold, face_name, models)
    if multi:
        doc["multi_sample"] = multi
    doc["models"] = {kind: {"ref": str(ref)} for kind, ref in models.items()}
    if "face" in doc["models"]:
        doc["models"]["face"]["name"] = face_name or "given"

    doc["definitions"] = _definitions()
    doc["inputs"] = {"manifest": " + ".join(str(m) for m in manifests),
                     "pairs": str(pairs) if pairs else None,
                     "modality": modality, "limit": limit, "samples": len(samples),
                     "mate_excluded_nonmated": mate_excluded,
                     "command": command or "engine.evaluate.evaluate() (Python API)",
                     "seconds": round(time.time() - started, 1)}
    _write_outputs(out, doc, arrays, curves)
    return doc


def _analyse_all(
    data: Mapping[str, KindScores], mate_excluded: bool
) -> tuple[dict[str, Any], dict[str, tuple[ErrorCurve, ErrorCurve, ErrorCurve]]]:
    """Figures of every modality kind: the metrics document (headline keys -> kind -> value, plus
    ``per_modality``) and the (DET, FNIR-FPIR, matcher-only DET) curves per kind."""
    doc: dict[str, Any] = {key: {} for key in HEADLINE}
    doc["per_modality"] = {}
    curves: dict[str, tuple[ErrorCurve, ErrorCurve, ErrorCurve]] = {}
    for kind, ks in data.items():
        result = analyse(ks, mate_excluded)
        doc["per_modality"][kind] = result.figures
        for key in HEADLINE:
            doc[key][kind] = result.figures[key]["eer"] if key == "eer" else result.figures[key]
        curves[kind] = (result.det, result.fnir_fpir, result.det_matcher)
    return doc, curves


def _score_kind(kind: str, samples: Sequence[Sample], run: ExtractionRun, scorer: Scorer,
                ungated: dict[str, dict[str, Any]] | None = None) -> KindScores:
    """All-pairs scores of the samples that passed (NaN elsewhere). With ``ungated`` (a dict to fill
    for ``kind``) the samples the gate refused are scored too, once, and their reasons kept."""
    ok = np.array([t is not None for t in run.templates], dtype=bool)
    usable = list(run.templates)
    if ungated is not None:
        usable = [t if t is not None else (run.refused[i] if i < len(run.refused) else None)
                  for i, t in enumerate(run.templates)]
    have = np.array([t is not None for t in usable], dtype=bool)
    good = [t for t in usable if t is not None]
    full = np.full((len(samples), len(samples)), np.nan, dtype=np.float32)
    if good:
        idx = np.flatnonzero(have)
        full[np.ix_(idx, idx)] = scorer(good, good)
    scores = full.copy() if ungated is not None else full
    scores[~ok, :] = np.nan
    scores[:, ~ok] = np.nan
    if ungated is not None:
        ungated[kind] = {
            "scores_ungated": full, "extracted": have,
            "reasons": np.array([",".join(r.value for r in q.reasons) if q else "" for q in run.qualities]),
            "rejected": np.array([",".join(r.value for r in q.rejected) if q else "" for q in run.qualities]),
        }
    return KindScores(kind, [s.subject for s in samples], ok, scores)


def _stage_summary(run: ExtractionRun) -> dict[str, Any]:
    stages = {k: float(np.median(v)) for k, v in run.stage_ms.items()}
    total = float(np.median(run.total_ms)) if run.total_ms else None
    return {"median_total": total, "median_by_stage": stages, "n": len(run.total_ms)}


def _pairs_accuracy(pairs_file: Path, cache: dict[Path, Template | None],
                    extractors: Mapping[str, Extractor] | None, scorers: Mapping[str, Scorer] | None,
                    progress: bool, arrays: dict[str, Any], per_fold: int | None = None,
                    face_model: str | None = None,
                    models: dict[str, ModelRef] | None = None) -> dict[str, Any]:
    pairs = read_pairs(pairs_file)
    if per_fold is not None:
        taken: dict[tuple[int, bool], int] = {}
        kept = []
        for p in pairs:
            key = (p.fold, p.same)
            if taken.get(key, 0) < per_fold:
                taken[key] = taken.get(key, 0) + 1
                kept.append(p)
        pairs = kept
    root = find_image_root(pairs_file, pairs[0])
    paths = sorted({image_path(root, p.name1, p.index1).resolve() for p in pairs}
                   | {image_path(root, p.name2, p.index2).resolve() for p in pairs})
    todo = [p for p in paths if p not in cache]
    if todo:
        extractor = (extractors or {}).get("face") or _load_extractor("face", face_model)
        if models is not None:
            models.setdefault("face", extractor.model)
        run = extract_files(extractor, todo, progress=progress, label="extract pairs")
        cache.update(zip(todo, run.templates, strict=True))
    scorer = (scorers or {}).get("face") or default_scorer("face")[0]
    scores = np.full(len(pairs), -np.inf)
    failed = 0
    for n, p in enumerate(pairs):
        a = cache[image_path(root, p.name1, p.index1).resolve()]
        b = cache[image_path(root, p.name2, p.index2).resolve()]
        if a is None or b is None:
            failed += 1
            continue
        scores[n] = float(scorer([a], [b])[0, 0])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    arrays.update(pairs_scores=scores, pairs_same=same, pairs_fold=folds)
    result = kfold_accuracy(scores, same, folds).as_dict()
    result["failed_pairs"] = failed
    result["pairs_per_fold_limit"] = per_fold
    result["note"] = ("a pair with an image that gave no template scores -inf (decided 'different'): "
                      "an error for a same pair, correct for a different pair")
    return {"face": result}


def rescore(scores_file: Path, out: Path, mate_excluded: bool = True) -> dict[str, Any]:
    """Recompute every figure from a ``scores.npz`` written by ``evaluate``."""
    with np.load(scores_file) as z:
        arrays = {k: z[k] for k in z.files}
    data = {
        kind: KindScores(kind, [str(s) for s in arrays[f"{kind}_subjects"]], arrays[f"{kind}_ok"],
                         arrays[f"{kind}_scores"])
        for kind in ("face", "iris", "fused") if f"{kind}_scores" in arrays
    }
    doc, curves = _analyse_all(data, mate_excluded)
    if "pairs_scores" in arrays:
        acc = kfold_accuracy(arrays["pairs_scores"], arrays["pairs_same"], arrays["pairs_fold"]).as_dict()
        acc["failed_pairs"] = int(np.isneginf(arrays["pairs_scores"]).sum())
        doc["verification_accuracy"] = {"face": acc}
    doc["definitions"] = _definitions()
    earlier = _earlier_metrics(scores_file)
    if "models" in earlier:
        doc["models"] = earlier["models"]
    doc["inputs"] = {**dict(earlier.get("inputs", {})), "rescored_from": str(scores_file),
                     "mate_excluded_nonmated": mate_excluded}
    _write_outputs(out, doc, arrays, curves)
    return doc


def _earlier_metrics(scores_file: Path) -> dict[str, Any]:
    """The metrics document of the run that wrote ``scores_file`` (its metrics.json beside it), if
    readable (its ``inputs`` and ``models`` are carried over)."""
    try:
        earlier = json.loads((scores_file.parent / "metrics.json").read_text())
        return dict(earlier) if isinstance(earlier, dict) else {}
    except (OSError, ValueError):
        return {}


def _definitions() -> dict[str, str]:
    return {
        "decision": "a comparison is accepted when similarity >= threshold",
        "fte_rate": "subjects whose designated (first) enrolment sample gave no template / gallery subjects",
        "fta_rate": "probe samples that gave no template / probe samples",
        "comparisons": "1:1 = every unordered pair of samples; pairs with a failed sample count with score "
                       "-inf (false non-match if genuine, never a false match)",
        "searches": "gallery = first sample of each subject with >= 2 samples; other samples = mated "
                    "probes, single-sample subjects = non-mated probes; failures are misses; unless "
                    "--no-mate-excluded, each usable mated probe is also a non-mated search with its "
                    "mate left out of the gallery",
        "fnir_at_fpir": "rank 1: the mate must be the top candidate and score >= threshold",
        "measurable": "an operating point at rate f needs >= ceil(3/f) non-mated attempts (rule of 3); "
                      "otherwise its miss rate is null",
        "eer": "FNMR and FMR linearly interpolated where their step curves cross",
    }


def _write_outputs(out: Path, doc: dict[str, Any], arrays: dict[str, Any],
                   curves: Mapping[str, tuple[ErrorCurve, ErrorCurve, ErrorCurve]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "scores.npz", **arrays)
    doc["curves"] = {k: {"det": det.as_dict(), "fnir_fpir": fnir.as_dict(), "det_matcher_only": dm.as_dict()}
                     for k, (det, fnir, dm) in curves.items()}
    if curves:
        plot_curves({k: c[0] for k, c in curves.items()}, out / "det.png", xlabel="FMR", ylabel="FNMR",
                    title="DET (1:1, all pairs; failures count as misses)")
        plot_curves({k: c[2] for k, c in curves.items()}, out / "det_matcher_only.png", xlabel="FMR",
                    ylabel="FNMR", title="DET (1:1, pairs where both samples gave a template)")
        plot_curves({k: c[1] for k, c in curves.items()}, out / "fnir_fpir.png", xlabel="FPIR",
                    ylabel="FNIR (rank 1)", title="FNIR vs FPIR (1:N)")
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    tmp.replace(out / "metrics.json")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasname evaluate", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", type=Path, action="append",
                     help="CSV with columns identity,modality,path (repeat to combine: a face set and "
                          "an iris set give chimeric fused subjects)")
    src.add_argument("--rescore", type=Path, help="scores.npz of an earlier run: recompute the figures")
    p.add_argument("--pairs", type=Path, help="LFW-format pairs file: k-fold verification accuracy")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--modality", help="face, iris, iris_left or iris_right (default: all in the manifest)")
    p.add_argument("--face-model", help="face model to measure (registry name, e.g. sface, "
                   "dlib_resnet_v1, or a fusion sface+dlib_resnet_v1); default: the engine "
                   "configuration's face_model (NASNAME_FACE_MODEL)")
    p.add_argument("--limit", type=int, help="first N subjects of each modality only")
    p.add_argument("--pairs-per-fold", type=int, help="first N same + N different pairs of each fold only")
    p.add_argument("--no-mate-excluded", action="store_true",
                   help="non-mated searches from single-sample subjects only (no mate-excluded searches)")
    p.add_argument("--keep-refused", action="store_true",
                   help="also score the samples the quality gate refused and save every sample's quality "
                        "reasons in scores.npz (input of models/calibrate_quality.py)")
    p.add_argument("--multi-sample", type=int, metavar="K", action="append", default=[],
                   help="also measure enrolment with 1..K samples per subject (subjects with more than K "
                        "samples), combined as the engine combines a station's frames (repeat for several K)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.rescore is not None:
            doc = rescore(args.rescore, args.out, not args.no_mate_excluded)
        else:
            doc = evaluate(args.manifest, args.out, pairs=args.pairs, modality=args.modality,
                           limit=args.limit, mate_excluded=not args.no_mate_excluded,
                           pairs_per_fold=args.pairs_per_fold, progress=not args.no_progress,
                           face_model=args.face_model, keep_refused=args.keep_refused,
                           multi_sample=args.multi_sample,
                           command="nasname evaluate " + " ".join(shlex.quote(a) for a in argv))
    except NasnameError as exc:
        print(f"nasname evaluate: {exc}", file=sys.stderr)
        return 2
    print(_summary_text(doc))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0


def _summary_text(doc: Mapping[str, Any]) -> str:
    lines = []
    if doc.get("models"):
        lines.append("models: " + ", ".join(
            f"{kind} {m['name']} ({m['ref']})" if "name" in m else f"{kind} {m['ref']}"
            for kind, m in doc["models"].items()))
    for kind, fig in doc["per_modality"].items():
        if "eer" not in fig:
            lines.append(f"{kind}: {fig.get('note', 'not available')}")
            continue
        fnmr = ", ".join(f"{p['target_fmr']:g}: {_pct(p['fnmr'])}" for p in fig["fnmr_at_fmr"])
        fnir = ", ".join(f"{p['target_fpir']:g}: {_pct(p['fnir'])}" for p in fig["fnir_at_fpir"])
        c = fig["comparisons"]
        lines.append(
            # FTE counts gallery enrolments only; failed samples are counted over every sample
            f"{kind}: {fig['failed_samples']} of {fig['samples']} samples failed (FTA "
            f"{_pct(fig['fta_rate'])} of searches, FTE {_pct(fig['fte_rate'])} of "
            f"{fig['searches']['gallery_subjects']} gallery enrolments)\n"
            f"    EER {_pct(fig['eer']['eer'])} "
            f"({c['genuine']} genuine / {c['impostor']} impostor pairs)  rank-1 "
            f"{_pct(fig['rank1_hit_rate']['rate'])}  rank-10 {_pct(fig['rank10_hit_rate']['rate'])}\n"
            f"    FNMR at FMR {fnmr}\n    FNIR at FPIR {fnir}\n"
            f"    matcher only (pairs without failures): EER {_pct(fig['matcher_only']['eer']['eer'])}")
    for kind, designs in doc.get("multi_sample", {}).items():
        lines.extend(_multi_text(kind, multi) for multi in designs.values())
    for kind, acc in doc.get("verification_accuracy", {}).items():
        lines.append(f"{kind} pairs: accuracy {acc['mean']:.4f} +- {acc['std']:.4f} "
                     f"over {acc['folds']} folds ({acc.get('failed_pairs', 0)} failed)")
    return "\n".join(lines)


def _multi_text(kind: str, multi: Mapping[str, Any]) -> str:
    """The multi-sample variants of one kind as a table."""
    d = multi["design"]
    head = (f"{kind} multi-sample enrolment, 1 to {d['enrolment_samples']} samples: {d['gallery_subjects']} "
            f"subjects, {d['mated_probes']} mated and {d['nonmated_probes']} non-mated probes")
    fpirs = [p["target_fpir"] for p in next(iter(multi["variants"].values()))["fnir_at_fpir"]]
    rows = [[name, _pct(v["fte_rate"]), _pct(v["rank1_hit_rate"]),
             *(_pct(p["fnir"]) for p in v["fnir_at_fpir"]), _pct(v["eer"]),
             _pct(v["fnmr_at_fmr"][1]["fnmr"] if len(v["fnmr_at_fmr"]) > 1 else None),
             *_engine_cells(v.get("at_engine_threshold"))]
            for name, v in multi["variants"].items()]
    headers = ["enrolment", "FTE", "rank-1", *(f"FNIR@{f:g}" for f in fpirs), "EER", "FNMR@FMR 1e-3",
               "engine 1:1 FMR / FNMR", "engine 1:N FPIR / FNIR"]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    table = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [headers, *rows]]
    return "\n".join([head, *("    " + t for t in table)])


def _engine_cells(at: Mapping[str, Any] | None) -> list[str]:
    """The rates at the engine's own thresholds (FMR 1e-3 1:1, FPIR 0.003 1:N), per calibration."""
    if not at:
        return ["n/a", "n/a"]
    one = "; ".join(f"{_pct(r['fmr'])} / {_pct(r['fnmr'])} ({c})" for c, r in at.items())
    many = "; ".join(f"{_pct(r['fpir'])} / {_pct(r['fnir'])} ({c})" for c, r in at.items())
    return [one, many]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
