"""Thresholds of a job and fusion of candidate pairs across the modalities both records share.

Decision rule (the engine's, ``engine.fusion``): a pair is a suspected duplicate when the sum of the
calibrated LLRs of the modalities both records hold reaches ``T_M``, the fused threshold of that shared
modality set ``M`` at the per-comparison false match rate ``f`` (from a target FPIR at the gallery size
like the engine, or given explicitly).

Candidate generation runs per modality, so it needs a per-modality similarity floor ``tau_m`` such
that no pair that passes the fused rule is missed by every modality. With ``lambda_m = min over sets M
containing m of max(T_M / |M|, T_M - sum of the other modalities' largest LLR)`` and ``tau_m`` the
lowest similarity whose LLR can reach ``lambda_m``: a pair of set M that passes has some modality with
``LLR_m >= T_M / |M|`` (else the sum is below ``T_M``), and every modality of a passing pair has
``LLR_m >= T_M - sum of the others' maxima``; so that modality is above its floor (exactness of the
candidate stage).
With a single modality ``tau`` is exactly the decision threshold.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from engine.dedup.data import RecordSet
from engine.dedup.pairs import IrisExact
from engine.errors import InvalidInput
from engine.fusion import Fusion, expected_fpir, per_comparison_fmr
from engine.iris.matcher import MatchParams
from engine.types import Modality

__all__ = ["MODALITIES", "FusedPairs", "Thresholds", "fuse_candidates", "make_thresholds"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MODALITIES: tuple[Modality, ...] = tuple(Modality)  # column order of per-modality score arrays


@dataclass(frozen=True)
class Thresholds:
    """``fmr`` per comparison; ``fused[key]`` = T_M for the shared set named by ``key`` (modality values
    joined by ``+``); ``floor[m]`` = candidate similarity floor ``tau_m``. ``unmet[key]``: the
    per-comparison rate that set really gives, for sets where ``fmr`` cannot be met at all (even
    identical samples are too common among impostors): pairs judged on that set alone will hold
    more false matches than asked for, and the job's report must say so."""

    fmr: float
    gallery_size: int
    target_fpir: float | None
    fused: dict[str, float]
    floor: dict[Modality, float]
    unmet: dict[str, float] = field(default_factory=dict)

    def unmet_text(self) -> str:
        """One sentence per shared set whose rate cannot be met ("" when every set meets it)."""
        words = []
        for key, rate in sorted(self.unmet.items()):
            got = expected_fpir(rate, self.gallery_size)
            words.append(f"{key.replace('+', ' and ')} alone cannot reach the asked rate at "
                         f"{self.gallery_size:,} records: expect a false-alarm rate of about {got:.3g} "
                         f"per record (asked {expected_fpir(self.fmr, self.gallery_size):.3g})")
        return "; ".join(words)

    def fused_for(self, modalities: Sequence[Modality]) -> float:
        return self.fused[set_key(modalities)]

    def to_json(self) -> dict[str, object]:
        return {
            "fmr": self.fmr,
            "gallery_size": self.gallery_size,
            "target_fpir": self.target_fpir,
            "fused": self.fused,
            "floor": {m.value: v for m, v in self.floor.items()},
            "unmet": self.unmet,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Thresholds:
        fused = d["fused"]
        floor = d["floor"]
        if not isinstance(fused, dict) or not isinstance(floor, dict):
            raise InvalidInput("malformed thresholds in job file", reason="INVALID_JOB")
        fpir = d.get("target_fpir")
        unmet = d.get("unmet") or {}  # absent in job files written before it was recorded
        if not isinstance(unmet, dict):
            raise InvalidInput("malformed thresholds in job file", reason="INVALID_JOB")
        return cls(
            float(str(d["fmr"])),
            int(str(d["gallery_size"])),
            None if fpir is None else float(str(fpir)),
            {str(k): float(v) for k, v in fused.items()},
            {Modality(k): float(v) for k, v in floor.items()},
            {str(k): float(v) for k, v in unmet.items()},
        )


def set_key(modalities: Sequence[Modality]) -> str:
    return "+".join(m.value for m in sorted(modalities))


def make_thresholds(
    fusion: Fusion,
    modalities: Sequence[Modality],
    gallery_size: int,
    *,
    target_fpir: float | None = None,
    fmr: float | None = None,
) -> Thresholds:
    """Thresholds for every non-empty subset of ``modalities`` and the candidate floors."""
    if (target_fpir is None) == (fmr is None):
        raise InvalidInput(
            "give exactly one of a target FPIR or a per-comparison FMR", reason="INVALID_THRESHOLD"
        )
    if fmr is None:
        assert target_fpir is not None
        fmr = per_comparison_fmr(target_fpir, max(gallery_size, 1))
    elif not 0.0 < fmr < 1.0:
        raise InvalidInput(f"FMR must be in (0, 1), got {fmr}", reason="INVALID_THRESHOLD")
    mods = sorted(set(modalities))
    top = {m: float(fusion.calibration(m).llr.max()) for m in mods}
    fused: dict[str, float] = {}
    unmet: dict[str, float] = {}
    lam: dict[Modality, float] = {m: float("inf") for m in mods}
    for r in range(1, len(mods) + 1):
        for subset in itertools.combinations(mods, r):
            decided = fusion.decide_threshold(subset, fmr)
            t = decided.value
            fused[set_key(subset)] = t
            if not decided.met:
                unmet[set_key(subset)] = float(decided.fmr)
            for m in subset:
                # the others at their best still need LLR_m >= t - sum(top others) (holds for every m)
                need = t - sum(top[o] for o in subset if o != m)
                lam[m] = min(lam[m], max(t / len(subset), need))
    floor: dict[Modality, float] = {}
    for m in mods:
        cal = fusion.calibration(m)
        ok = np.nonzero(cal.llr >= lam[m])[0]
        if ok.size == 0:
            floor[m] = float("inf")  # this modality alone can never carry a pair over the threshold
        elif ok[0] == 0:
            floor[m] = float("-inf")
        else:
            # the grid point below the first reaching one: LLR is interpolated between grid points
            floor[m] = float(cal.grid[ok[0] - 1])
    return Thresholds(float(fmr), int(gallery_size), target_fpir, fused, floor, unmet)


@dataclass(frozen=True)
class FusedPairs:
    """Accepted pairs (k of them): records ``u < v``; ``fused`` LLR sums and their ``threshold``;
    ``scores``/``llrs`` (k, len(MODALITIES)) per modality, NaN where not shared."""

    u: I64
    v: I64
    fused: F64
    threshold: F64
    scores: F64
    llrs: F64
    candidate_fused: F64  # fused LLR of every candidate examined (for the score histogram)
    candidate_threshold: F64

    def __len__(self) -> int:
        return int(self.u.size)


def fuse_candidates(
    records: RecordSet,
    u: I64,
    v: I64,
    fusion: Fusion,
    thresholds: Thresholds,
    iris_params: MatchParams | None = None,
    chunk: int = 200_000,
) -> FusedPairs:
    """Score every candidate pair exactly in every modality both records hold, fuse, keep those at or
    above the fused threshold of their shared set. ``u``/``v`` may repeat (one row per modality that
    found the pair); they are de-duplicated here."""
    key = np.unique(u.astype(np.int64) * np.int64(records.n) + v.astype(np.int64))
    pu, pv = key // records.n, key % records.n
    k = pu.size
    scores = np.full((k, len(MODALITIES)), np.nan)
    for c, m in enumerate(MODALITIES):
        data = records.modalities.get(m)
        if data is None:
            continue
        pos = np.full(records.n, -1, dtype=np.int64)
        pos[data.rows] = np.arange(data.rows.size)
        a, b = pos[pu], pos[pv]
        both = np.nonzero((a >= 0) & (b >= 0))[0]
        if data.vectors is not None:
            x = data.vectors
            for lo in range(0, both.size, chunk):
                sel = both[lo : lo + chunk]
                # float64 dot: the decision does not depend on GEMM rounding
                scores[sel, c] = np.einsum(
                    "ij,ij->i", x[a[sel]].astype(np.float64), x[b[sel]].astype(np.float64)
                )
        elif both.size:
            kern = IrisExact(data, iris_params)
            scores[both, c] = kern.score_pairs(a[both], b[both])
    shared = ~np.isnan(scores)
    llrs = np.full_like(scores, np.nan)
    for c, m in enumerate(MODALITIES):
        col = shared[:, c]
        if col.any():
            llrs[col, c] = fusion.calibration(m).llr_of(scores[col, c])
    fused = np.nansum(llrs, axis=1)
    threshold = np.full(k, np.inf)
    patterns, inverse = np.unique(shared, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        mods = [m for c, m in enumerate(MODALITIES) if pattern[c]]
        if mods:
            threshold[inverse.reshape(-1) == p] = thresholds.fused_for(mods)
    keep = fused >= threshold
    return FusedPairs(
        pu[keep], pv[keep], fused[keep], threshold[keep], scores[keep], llrs[keep], fused, threshold
    )
