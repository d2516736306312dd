"""Calibrate the quality gate: for every rule, how the samples it flags match compared with the rest.

    .venv/bin/nasname evaluate --manifest ../shared/data/iris_mmu2.csv --keep-refused --out /tmp/q-mmu2
    .venv/bin/python models/calibrate_quality.py /tmp/q-mmu2 [/tmp/q-casia ...] [--fmr 1e-3] [--json F]

Input: the ``scores.npz`` of ``nasname evaluate --keep-refused`` runs (every sample that gave a
template is scored, refused or not, and its quality reasons are kept). Per set and rule:

* flagged samples (the rule fires) and their genuine comparisons (pairs with at least one flagged
  sample) against the genuine comparisons of unflagged samples: median genuine score and FNMR at the
  operating threshold (the set's own impostor scores at ``--fmr``);
* their impostor comparisons: FMR at the same threshold, flagged against unflagged (a rule whose
  samples cause false matches would be a reason to reject too);
* the verdict: **reject** when the flagged samples are measurably worse, i.e. their FNMR is at least
  twice the unflagged FNMR and a one-sided binomial test over the flagged *samples* (not pairs: a
  sample's pairs are not independent; a flagged sample counts as a failure when most of its genuine
  pairs fail) gives p < 0.01; otherwise **warn** (accepted, reason and instruction shown). A rule that
  never fires on these sets has no evidence and is reported as such.
* the product figures (FTE, FTA, EER, FNIR at FPIR) under three gates: every rule rejects, the
  engine's configured warn/reject split (``QualityThresholds.warn_only``, ``QualityParams.warn_only``)
  and no gate, recomputed from the same scores with ``engine.evaluation.analysis``.

Only numbers are printed (docs/QUALITY.md records them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import binom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evaluation.analysis import KindScores, analyse  # noqa: E402
from engine.face.config import QualityThresholds  # noqa: E402
from engine.iris.quality import QualityParams  # noqa: E402

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

WARN_ONLY = {"face": set(QualityThresholds().warn_only), "iris": set(QualityParams().warn_only)}


def _pairs(subjects: npt.NDArray[Any], have: B) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], B]:
    iu, ju = np.triu_indices(len(subjects), k=1)
    keep = have[iu] & have[ju]
    iu, ju = iu[keep], ju[keep]
    return iu, ju, subjects[iu] == subjects[ju]


def rule_table(scores: F64, subjects: npt.NDArray[Any], have: B, reasons: list[set[str]],
               fmr: float) -> tuple[float, list[dict[str, Any]]]:
    """(threshold, one row per rule that fires) for one set and modality."""
    iu, ju, same = _pairs(subjects, have)
    s = scores[iu, ju]
    thr = float(np.quantile(s[~same], 1.0 - fmr))
    gi, gj, gs = iu[same], ju[same], s[same]
    ii, ij, is_ = iu[~same], ju[~same], s[~same]
    rows = []
    for rule in sorted(set().union(*reasons)):
        flagged = np.array([rule in r for r in reasons]) & have
        hit = flagged[gi] | flagged[gj]
        ref, acc = gs[hit], gs[~hit]
        fnmr_acc = float((acc < thr).mean()) if acc.size else float("nan")
        fnmr_ref = float((ref < thr).mean()) if ref.size else float("nan")
        imp_hit = flagged[ii] | flagged[ij]
        fmr_ref = float((is_[imp_hit] >= thr).mean()) if imp_hit.any() else None
        fmr_acc = float((is_[~imp_hit] >= thr).mean())
        # per flagged sample: a failure when most of its genuine pairs fall below the threshold
        units = [np.concatenate([gs[gi == k], gs[gj == k]]) for k in np.flatnonzero(flagged)]
        units = [u for u in units if u.size]
        k_fail = sum(int((u < thr).mean() > 0.5) for u in units)
        p_value = float(binom.sf(k_fail - 1, len(units), max(fnmr_acc, 1e-6))) if units else 1.0
        worse = bool(units) and fnmr_ref >= 2 * fnmr_acc and p_value < 0.01
        rows.append({
            "rule": rule, "flagged_samples": int(flagged.sum()), "samples_with_mates": len(units),
            "genuine_pairs_flagged": int(ref.size), "genuine_pairs_unflagged": int(acc.size),
            "median_genuine_flagged": float(np.median(ref)) if ref.size else None,
            "median_genuine_unflagged": float(np.median(acc)) if acc.size else None,
            "fnmr_flagged": fnmr_ref if ref.size else None, "fnmr_unflagged": fnmr_acc,
            "fmr_flagged": fmr_ref, "fmr_unflagged": fmr_acc,
            "flagged_samples_failing": k_fail, "p_value": p_value,
            "verdict": "reject" if worse else "warn",
        })
    return thr, rows


def product_figures(kind: str, scores: F64, subjects: list[str], have: B, reasons: list[set[str]],
                    warn_only: set[str] | None) -> dict[str, Any]:
    """Figures through the product when the rules outside ``warn_only`` reject (None: no gate)."""
    ok = have.copy()
    if warn_only is not None:
        ok &= np.array([not (r - warn_only) for r in reasons])
    masked = scores.astype(np.float32).copy()
    masked[~ok, :] = np.nan
    masked[:, ~ok] = np.nan
    fig = analyse(KindScores(kind, subjects, ok, masked), True).figures
    fnir = {f"{p['target_fpir']:g}": p["fnir"] for p in fig["fnir_at_fpir"]}
    return {"fte": fig["fte_rate"], "fta": fig["fta_rate"], "eer": fig["eer"]["eer"],
            "matcher_only_eer": fig["matcher_only"]["eer"]["eer"], "fnir_at_fpir": fnir,
            "refused": int((have & ~ok).sum())}


def calibrate(run_dir: Path, fmr: float) -> dict[str, Any]:
    with np.load(run_dir / "scores.npz") as z:
        arrays = {k: z[k] for k in z.files}
    out: dict[str, Any] = {}
    for kind in ("face", "iris"):
        if f"{kind}_reasons" not in arrays:
            continue
        scores = arrays[f"{kind}_scores_ungated"].astype(np.float64)
        subjects = np.array([str(s) for s in arrays[f"{kind}_subjects"]])
        have = arrays[f"{kind}_extracted"].astype(bool)
        reasons = [set(filter(None, str(r).split(","))) for r in arrays[f"{kind}_reasons"]]
        thr, rows = rule_table(scores, subjects, have, reasons, fmr)
        subj = subjects.tolist()
        out[kind] = {
            "samples": len(subj), "extracted": int(have.sum()), "threshold": thr, "fmr": fmr, "rules": rows,
            "gate_all_reject": product_figures(kind, scores, subj, have, reasons, set()),
            "gate_configured": product_figures(kind, scores, subj, have, reasons, WARN_ONLY[kind]),
            "gate_off": product_figures(kind, scores, subj, have, reasons, None),
            "warn_only_configured": sorted(WARN_ONLY[kind]),
        }
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def markdown(label: str, doc: dict[str, Any]) -> str:
    lines = []
    for kind, d in doc.items():
        lines.append(f"### {label} ({kind}): {d['samples']} samples, threshold {d['threshold']:.4f} "
                     f"(FMR {d['fmr']:g} on this set's impostors)\n")
        lines.append("| rule | flagged | with mates | genuine pairs flagged / unflagged | median genuine "
                     "flagged / unflagged | FNMR flagged / unflagged | FMR flagged / unflagged "
                     "| flagged samples failing | p | verdict |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in d["rules"]:
            lines.append(
                f"| {r['rule']} | {r['flagged_samples']} | {r['samples_with_mates']} | "
                f"{r['genuine_pairs_flagged']} / {r['genuine_pairs_unflagged']} | "
                f"{_num(r['median_genuine_flagged'])} / {_num(r['median_genuine_unflagged'])} | "
                f"{_pct(r['fnmr_flagged'])} / {_pct(r['fnmr_unflagged'])} | "
                f"{_pct(r['fmr_flagged'])} / {_pct(r['fmr_unflagged'])} | {r['flagged_samples_failing']} | "
                f"{r['p_value']:.3g} | {r['verdict']} |")
        lines.append("")
        lines.append("| gate | refused | FTE | FTA | EER (failures count) | matcher-only EER "
                     "| FNIR@FPIR 0.003 |")
        lines.append("|---|---|---|---|---|---|---|")
        for name, key in (("every rule rejects", "gate_all_reject"),
                          (f"configured (warn only: {', '.join(d['warn_only_configured']) or 'none'})",
                           "gate_configured"), ("no gate", "gate_off")):
            f = d[key]
            lines.append(f"| {name} | {f['refused']} | {_pct(f['fte'])} | {_pct(f['fta'])} | "
                         f"{_pct(f['eer'])} | {_pct(f['matcher_only_eer'])} | "
                         f"{_pct(f['fnir_at_fpir'].get('0.003'))} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="models/calibrate_quality.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="output folders of nasname evaluate --keep-refused")
    ap.add_argument("--fmr", type=float, default=1e-3, help="operating point (default 1e-3)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args(argv)
    everything = {}
    for run in args.runs:
        doc = calibrate(run, args.fmr)
        everything[str(run)] = doc
        print(markdown(run.name, doc))
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
