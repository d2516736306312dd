"""Multi-sample enrolment design of ``nasname evaluate --multi-sample K``: what several frames at
enrolment buy, with the engine's own combination (``engine.multisample.combine``).

Subjects with at least ``K + 1`` samples are enrolled; their samples from position ``K`` on (manifest
order) are the mated probes, the same probes for every variant. Every sample of the other subjects
is a non-mated probe, and (unless ``mate_excluded`` is off) every usable mated probe is searched once
more with its mate left out, as in the single-sample design (``engine.evaluation.analysis``).

Variants, per ``k`` in ``1..K``: the subject's first ``k`` samples, of which those the quality gate
refused are dropped, combined by each strategy (``best`` by quality, ``fuse``; with ``k = 1`` both are
the one sample). A subject none of whose ``k`` samples is usable failed to enroll (FTE); its probes
are misses. Probes are single samples (a failed probe is a miss, never a false positive).

Variant ``K_fuse_probes``: the ``K``-fused gallery searched with probes of several frames too (a
station sending its three frames to identify): each subject's probe samples, in manifest order, are cut
into groups of ``K`` (the last group may be smaller), each group combined as the engine combines them.

Figures per variant: FTE, 1:N rank-1 hit rate and FNIR at FPIR, and 1:1 (every probe against every
enrolled subject) EER and FNMR at FMR with failures counted, as in the main figures. Those are at
thresholds read off the measured scores. ``at_engine_threshold`` says what the engine itself would
decide: at the similarity its calibration gives for FMR 1e-3 (1:1), and for FPIR 0.003 over a gallery
of this variant's size (1:N), the rates measured there, per calibration the engine may decide that
variant with. Face: an engine that fuses face frames (``face_frames = "fuse"``) thresholds face
comparisons with the calibrations of fused templates (when the model has them): a one-frame probe
with ``FUSED_FACE_VS_ONE``, a fused probe with ``FUSED_FACE`` (``Engine.calibration_variants``); one
that keeps the best frame with the plain one. So a fused variant is reported with its fused
calibration, a best-frame variant with the plain one, and one sample with both (a station that
sends one photo, under either setting). Iris: always the plain calibration. A measured rate above
the target is a calibration that does not keep its promise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.calibration import FUSED_FACE, fused_face_variant, has_distributions
from engine.errors import InvalidInput
from engine.evaluation.analysis import FMR_TARGETS, FPIR_TARGETS, score_summary, searches
from engine.evaluation.extraction import ExtractionRun
from engine.evaluation.scoring import Scorer
from engine.fusion import Fusion, per_comparison_fmr
from engine.metrics import eer, fmr_fnmr, fnir_at_fpir, fnmr_at_fmr, fpir_fnir, rank_hit_rate
from engine.metrics.identification import SearchOutcomes
from engine.multisample import Frame, Strategy, combine
from engine.types import Modality, ModelRef, Template

#: The operating points ``at_engine_threshold`` reports (the engine's default FPIR; a 1:1 FMR).
ENGINE_FMR = 1e-3
ENGINE_FPIR = 0.003

__all__ = ["MultiDesign", "evaluate_multi", "make_multi_design"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MultiDesign:
    """``enrol[g]``: sample indices of gallery subject ``g``'s first ``K`` samples; ``probes``: sample
    indices; ``probe_mate``: gallery position of each probe's subject, -1 for a non-mated probe."""

    k_max: int
    subjects: list[str]
    enrol: list[list[int]]
    probes: I64
    probe_mate: I64


def make_multi_design(subjects: Sequence[str], k_max: int) -> MultiDesign:
    if k_max < 2:
        raise InvalidInput(f"--multi-sample needs at least 2 enrolment samples, got {k_max}")
    by_subject: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        by_subject.setdefault(s, []).append(i)
    gallery = [s for s, idx in by_subject.items() if len(idx) > k_max]
    position = {s: g for g, s in enumerate(gallery)}
    probes: list[int] = []
    mates: list[int] = []
    for s, idx in by_subject.items():
        rest = idx[k_max:] if s in position else idx
        probes.extend(rest)
        mates.extend([position.get(s, -1)] * len(rest))
    return MultiDesign(k_max, gallery, [by_subject[s][:k_max] for s in gallery],
                       np.array(probes, dtype=np.int64), np.array(mates, dtype=np.int64))


def evaluate_multi(subjects: Sequence[str], run: ExtractionRun, scorer: Scorer, k_max: int,
                   mate_excluded: bool = True) -> dict[str, Any]:
    """Figures of every variant (see the module's docstring) for one modality kind: ``run`` is the
    extraction of the samples (``subjects[i]`` is sample i's subject)."""
    d = make_multi_design(subjects, k_max)
    if not d.subjects:
        raise InvalidInput(f"no subject has more than {k_max} samples: nothing to enroll with "
                           f"{k_max} and still probe")
    probe_t = [run.templates[i] for i in d.probes]
    failed = np.array([t is None for t in probe_t], dtype=bool)
    good = [t for t in probe_t if t is not None]
    variants: dict[str, Any] = {}
    pairs: dict[str, tuple[F64, F64]] = {}
    searched: dict[str, tuple[SearchOutcomes, int, Strategy]] = {}  # outcomes, gallery size, how
    for k in range(1, k_max + 1):
        for strategy in (Strategy.BEST,) if k == 1 else (Strategy.BEST, Strategy.FUSE):
            name = f"{k}_{strategy.value}" if k > 1 else "1"
            gallery = [_enrolment(idx[:k], run, strategy) for idx in d.enrol]
            variants[name], pairs[name], outcomes = _figures(gallery, good, failed, d.probe_mate, scorer,
                                                             mate_excluded)
            searched[name] = (outcomes, variants[name]["enrolled"], strategy)
    # several frames on both sides: the K-fused gallery, probes fused in groups of K
    groups, group_mate = _probe_groups(subjects, d, k_max)
    group_t = [_enrolment(g, run, Strategy.FUSE) for g in groups]
    group_failed = np.array([t is None for t in group_t], dtype=bool)
    gallery = [_enrolment(idx, run, Strategy.FUSE) for idx in d.enrol]
    name = f"{k_max}_fuse_probes"
    variants[name], pairs[name], outcomes = _figures(
        gallery, [t for t in group_t if t is not None], group_failed, group_mate, scorer, mate_excluded)
    variants[name]["probes"] = {"groups": len(groups), "mated": int((group_mate >= 0).sum()),
                                "max_frames_per_probe": k_max}
    searched[name] = (outcomes, variants[name]["enrolled"], Strategy.FUSE)
    model = next((t.model for t in run.templates if t is not None), None)
    if model is not None:
        kind = _kind_of(run)
        modality = Modality.FACE if kind == "face" else Modality.IRIS_LEFT
        fusions: dict[str, Fusion] = {}  # per calibration variant, loaded once for every design variant
        for name, (outcomes, size, strategy) in searched.items():
            at: dict[str, Any] = {}
            for calibration in _engine_calibrations(model, kind, strategy, name == "1",
                                                    fused_probes=name.endswith("_probes")):
                if calibration not in fusions:
                    fusions[calibration] = Fusion.for_models(
                        {modality: model}, variants={modality: calibration} if calibration else None)
                at[calibration or "single-sample"] = _at_engine_threshold(
                    fusions[calibration], modality, size, pairs[name], outcomes)
            variants[name]["at_engine_threshold"] = at
    return {
        "design": {"enrolment_samples": k_max, "gallery_subjects": len(d.subjects),
                   "mated_probes": int((d.probe_mate >= 0).sum()),
                   "nonmated_probes": int((d.probe_mate < 0).sum()),
                   "failed_probes": int(failed.sum()),
                   "note": "variant 'k_strategy': the first k samples of each subject, refused ones dropped, "
                           "combined by engine.multisample.combine; '1': the first sample alone"},
        "variants": variants,
    }


def _kind_of(run: ExtractionRun) -> str:
    return next(t.modality_kind for t in run.templates if t is not None)


def _probe_groups(subjects: Sequence[str], d: MultiDesign, k: int) -> tuple[list[list[int]], I64]:
    """Each subject's probe samples, in order, cut into groups of ``k`` (the last may be smaller), and
    each group's gallery position (-1: non-mated)."""
    by_subject: dict[str, list[int]] = {}
    mate_of: dict[str, int] = {}
    for i, mate in zip(d.probes.tolist(), d.probe_mate.tolist(), strict=True):
        by_subject.setdefault(subjects[i], []).append(i)
        mate_of[subjects[i]] = mate
    groups = [idx[j:j + k] for idx in by_subject.values() for j in range(0, len(idx), k)]
    mates = [mate_of[subjects[g[0]]] for g in groups]
    return groups, np.array(mates, dtype=np.int64)


def _engine_calibrations(model: ModelRef, kind: str, strategy: Strategy, one: bool,
                         fused_probes: bool = False) -> list[str]:
    """The calibration variants the engine may decide a variant with (see the module's docstring):
    as ``Engine.calibration_variants`` chooses them for a probe of one frame, or of several."""
    if kind != "face" or not has_distributions(model, variant=FUSED_FACE):
        return [""]
    if one:
        return ["", fused_face_variant(model, one_frame=True)]
    if strategy is not Strategy.FUSE:
        return [""]
    return [fused_face_variant(model, one_frame=not fused_probes)]


def _at_engine_threshold(fusion: Fusion, modality: Modality, gallery_size: int,
                         pairs: tuple[F64, F64], outcomes: SearchOutcomes) -> dict[str, Any]:
    """The rates measured at the thresholds ``fusion`` (one calibration of ``modality``) gives."""
    genuine, impostor = pairs
    t1 = fusion.score_threshold(modality, ENGINE_FMR)
    fmr, fnmr = fmr_fnmr(genuine, impostor, t1)
    tn = fusion.score_threshold(modality, per_comparison_fmr(ENGINE_FPIR, gallery_size))
    fpir, fnir = fpir_fnir(outcomes, tn)
    return {"fmr_target": ENGINE_FMR, "threshold_1to1": t1, "fmr": fmr, "fnmr": fnmr,
            "fpir_target": ENGINE_FPIR, "gallery_size": gallery_size, "threshold_1toN": tn,
            "fpir": fpir, "fnir": fnir, "nonmated_searches": outcomes.n_nonmated}


def _enrolment(idx: Sequence[int], run: ExtractionRun, strategy: Strategy) -> Template | None:
    frames = []
    for i in idx:
        template = run.templates[i]
        if template is not None:
            quality = run.qualities[i] if i < len(run.qualities) else None
            frames.append(Frame(template, None if quality is None else quality.score))
    return combine(frames, strategy).template if frames else None


def _figures(gallery: Sequence[Template | None], probes: Sequence[Template], failed: npt.NDArray[np.bool_],
             probe_mate: I64, scorer: Scorer, mate_excluded: bool
             ) -> tuple[dict[str, Any], tuple[F64, F64], SearchOutcomes]:
    """(figures, (genuine, impostor) 1:1 scores, search outcomes) of one enrolment variant."""
    enrolled = [t for t in gallery if t is not None]
    column = np.full(len(gallery), -2, dtype=np.int64)
    column[[i for i, t in enumerate(gallery) if t is not None]] = np.arange(len(enrolled))
    mate_col = np.where(probe_mate >= 0, column[np.maximum(probe_mate, 0)], -1)
    scores = np.full((failed.size, len(enrolled)), -np.inf)
    if probes and enrolled:
        scores[~failed] = scorer(probes, enrolled)
    outcomes, extra = searches(scores, mate_col, failed, mate_excluded)
    # 1:1: every probe against every enrolled subject; a failed probe or an unenrolled mate is a
    # genuine comparison at -inf (a false non-match), never a false match
    mated = probe_mate >= 0
    genuine = np.full(int(mated.sum()), -np.inf)
    rows = np.flatnonzero(mated)
    ok = (mate_col[rows] >= 0) & ~failed[rows]
    genuine[ok] = scores[rows[ok], mate_col[rows[ok]]]
    impostor_mask = np.ones_like(scores, dtype=bool)
    have = np.flatnonzero(mate_col >= 0)
    impostor_mask[have, mate_col[have]] = False
    impostor = scores[impostor_mask]
    e = eer(genuine, impostor)
    figures = {
        "fte_rate": float(np.mean([t is None for t in gallery])),
        "enrolled": len(enrolled),
        "rank1_hit_rate": float(rank_hit_rate(outcomes, 1)),
        "fnir_at_fpir": [p.as_dict("fnir", "fpir") for p in fnir_at_fpir(outcomes, FPIR_TARGETS, rank=1)],
        "nonmated_searches": outcomes.n_nonmated,
        "nonmated_searches_mate_excluded": int(extra.size),
        "eer": e.as_dict()["eer"],
        "fnmr_at_fmr": [p.as_dict("fnmr", "fmr") for p in fnmr_at_fmr(genuine, impostor, FMR_TARGETS)],
        "comparisons": {"genuine": int(genuine.size), "impostor": int(impostor.size)},
        # a fused template makes impostors look more alike: these show by how much
        "score_summary": score_summary(genuine, impostor),
    }
    return figures, (genuine, impostor), outcomes
