"""From an all-against-all score matrix of one modality to the reported figures.

1:1 (FMR/FNMR, EER, DET): every unordered pair of distinct samples is one comparison, genuine when
both are of the same subject. A pair involving a failed sample keeps its place with score -inf: it is
a false non-match when genuine and never a false match when impostor (generalised rates, as NIST FRTE
does with failures to template); the counts of such pairs are reported.
1:N (FPIR/FNIR, rank-k): the ``design`` module's gallery; failed probes and probes whose subject failed
to enroll are misses; failed non-mated probes return no candidate. Data sets where every subject has
several samples have no singleton non-mated probes, so by default every usable mated probe whose mate
is enrolled is *also* searched once with its mate left out of the gallery ("mate-excluded"
non-mated search: its subject is then absent, the gallery one entry smaller). Both kinds of
non-mated searches are counted separately in ``searches``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInput
from engine.evaluation.design import make_design
from engine.metrics import (
    ErrorCurve,
    SearchOutcomes,
    cmc,
    det_curve,
    eer,
    fnir_at_fpir,
    fnir_fpir_curve,
    fnmr_at_fmr,
    rank_hit_rate,
    search_outcomes,
)

__all__ = ["FMR_TARGETS", "FPIR_TARGETS", "KindAnalysis", "KindScores", "analyse", "score_summary",
           "searches"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

FMR_TARGETS = (1e-2, 1e-3, 1e-4)
FPIR_TARGETS = (0.01, 0.003, 0.001)


@dataclass(frozen=True)
class KindScores:
    """``scores`` (n, n) similarity of sample i to sample j (values where a sample failed are ignored);
    ``subjects`` (n,) subject label per sample; ``ok`` (n,) extraction succeeded."""

    kind: str
    subjects: list[str]
    ok: B
    scores: F32

    def __post_init__(self) -> None:
        n = len(self.subjects)
        if self.ok.shape != (n,) or self.scores.shape != (n, n):
            raise InvalidInput(f"score data of {self.kind} has inconsistent shapes")


@dataclass(frozen=True)
class KindAnalysis:
    """``det`` over all pairs (failures as misses), ``det_matcher`` over pairs where both samples gave
    a template, ``fnir_fpir`` at rank 1."""

    figures: dict[str, Any]
    det: ErrorCurve
    det_matcher: ErrorCurve
    fnir_fpir: ErrorCurve
    outcomes: SearchOutcomes


def pair_scores(data: KindScores) -> tuple[F64, F64, int, int]:
    """(genuine, impostor, failed genuine pairs, failed impostor pairs) over pairs i < j."""
    sid = np.unique(np.asarray(data.subjects), return_inverse=True)[1]
    s = data.scores.astype(np.float64)
    gen: list[F64] = []
    imp: list[F64] = []
    for i in range(len(sid) - 1):
        row = s[i, i + 1 :].copy()
        row[~(data.ok[i] & data.ok[i + 1 :])] = -np.inf
        same = sid[i + 1 :] == sid[i]
        gen.append(row[same])
        imp.append(row[~same])
    g = np.concatenate(gen) if gen else np.zeros(0)
    m = np.concatenate(imp) if imp else np.zeros(0)
    return g, m, int(np.isneginf(g).sum()), int(np.isneginf(m).sum())


def searches(scores: F64, mate_col: npt.NDArray[np.int64], failed: B,
             mate_excluded: bool = True) -> tuple[SearchOutcomes, F64]:
    """Outcomes of the searches of a (probes, enrolled) score matrix (-inf where nothing compares;
    ``mate_col`` and ``failed`` as ``engine.metrics.search_outcomes``) and, with ``mate_excluded``,
    the top scores of the extra non-mated searches: each usable mated probe whose mate is enrolled,
    searched again with its mate left out (they are part of the returned outcomes too)."""
    outcomes = search_outcomes(scores, mate_col, failed)
    extra = np.zeros(0)
    if mate_excluded:
        rows = np.flatnonzero((mate_col >= 0) & ~failed)
        without = scores[rows].copy()
        without[np.arange(rows.size), mate_col[rows]] = -np.inf
        extra = without.max(axis=1) if without.shape[1] > 1 else np.full(rows.size, -np.inf)
        outcomes = SearchOutcomes(outcomes.mated_scores, outcomes.mated_ranks,
                                  np.concatenate([outcomes.nonmated_top, extra]))
    return outcomes, extra


def identification(data: KindScores, mate_excluded: bool = True) -> tuple[SearchOutcomes, dict[str, Any]]:
    d = make_design(data.subjects)
    ok_g = data.ok[d.gallery]
    enrolled = d.gallery[ok_g]
    column = np.full(d.gallery.size, -2, dtype=np.int64)
    column[ok_g] = np.arange(enrolled.size)
    mate_col = np.where(d.probe_mate >= 0, column[np.maximum(d.probe_mate, 0)], -1)
    failed = ~data.ok[d.probes]
    # NaN (a failed sample's row/column) -> -inf: never a hit, never a false positive
    scores = np.nan_to_num(data.scores[np.ix_(d.probes, enrolled)].astype(np.float64), nan=-np.inf,
                           posinf=np.inf, neginf=-np.inf)
    outcomes, extra = searches(scores, mate_col, failed, mate_excluded)
    mated = d.probe_mate >= 0
    counts = {
        "gallery_subjects": int(d.gallery.size),
        "enrolled": int(enrolled.size),
        "failed_to_enroll": int((~ok_g).sum()),
        "mated_searches": int(mated.sum()),
        "nonmated_searches": int((~mated).sum()) + int(extra.size),
        "nonmated_searches_singletons": int((~mated).sum()),
        "nonmated_searches_mate_excluded": int(extra.size),
        "failed_mated_searches": int((failed & mated).sum()),
        "failed_nonmated_searches": int((failed & ~mated).sum()),
        "mated_searches_without_enrolled_mate": int((mate_col == -2).sum()),
    }
    return outcomes, counts


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _none_if_nan(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def analyse(data: KindScores, mate_excluded: bool = True) -> KindAnalysis:
    gen, imp, gen_fail, imp_fail = pair_scores(data)
    outcomes, counts = identification(data, mate_excluded)
    n = len(data.subjects)
    e = eer(gen, imp)
    figures: dict[str, Any] = {
        "samples": n,
        "subjects": len(set(data.subjects)),
        "failed_samples": int((~data.ok).sum()),
        "fte_rate": _rate(counts["failed_to_enroll"], counts["gallery_subjects"]),
        "fta_rate": _rate(counts["failed_mated_searches"] + counts["failed_nonmated_searches"],
                          counts["mated_searches"] + counts["nonmated_searches_singletons"]),
        "eer": {**e.as_dict(), "failed_genuine_pairs": gen_fail, "failed_impostor_pairs": imp_fail},
        "fnmr_at_fmr": [p.as_dict("fnmr", "fmr") for p in fnmr_at_fmr(gen, imp, FMR_TARGETS)],
        "fnir_at_fpir": [p.as_dict("fnir", "fpir") for p in fnir_at_fpir(outcomes, FPIR_TARGETS, rank=1)],
        "rank1_hit_rate": {"rate": _none_if_nan(rank_hit_rate(outcomes, 1)) if outcomes.n_mated else None,
                           "n_mated_searches": outcomes.n_mated},
        "rank10_hit_rate": {"rate": _none_if_nan(rank_hit_rate(outcomes, 10)) if outcomes.n_mated else None,
                            "n_mated_searches": outcomes.n_mated},
        "cmc": {"ranks": "1..20", "hit_rate": [_none_if_nan(x) for x in cmc(outcomes, 20)]},
        "matcher_only": _matcher_only(gen, imp),
        "comparisons": {"genuine": int(gen.size), "impostor": int(imp.size),
                        "failed_genuine": gen_fail, "failed_impostor": imp_fail},
        "searches": counts,
        "score_summary": score_summary(gen, imp),
    }
    det_matcher = det_curve(gen[np.isfinite(gen)], imp[np.isfinite(imp)])
    return KindAnalysis(figures, det_curve(gen, imp), det_matcher, fnir_fpir_curve(outcomes, rank=1),
                        outcomes)


def _matcher_only(gen: F64, imp: F64) -> dict[str, Any]:
    """EER and FNMR at FMR over the pairs where both samples gave a template: the matcher alone,
    without the acquisition failures that the headline (generalised) figures include."""
    g, i = gen[np.isfinite(gen)], imp[np.isfinite(imp)]
    return {"eer": eer(g, i).as_dict(),
            "fnmr_at_fmr": [p.as_dict("fnmr", "fmr") for p in fnmr_at_fmr(g, i, FMR_TARGETS)]}


def score_summary(gen: F64, imp: F64) -> dict[str, Any]:
    """Mean, std, min and max of the finite genuine and impostor scores."""
    def stats(x: F64) -> dict[str, float | None]:
        f = x[np.isfinite(x)]
        if f.size == 0:
            return {"mean": None, "std": None, "min": None, "max": None}
        return {"mean": float(f.mean()), "std": float(f.std()), "min": float(f.min()), "max": float(f.max())}

    return {"genuine": stats(gen), "impostor": stats(imp)}
