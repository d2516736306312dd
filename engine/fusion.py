"""Score fusion and FPIR thresholds.

Each modality's similarity ``s`` becomes a log-likelihood ratio ``LLR(s) = ln g(s) / i(s)`` with ``g``
and ``i`` the genuine and impostor densities measured for that model (``engine.calibration``). LLRs of
independent modalities add, so the fused score of a candidate is the sum of the LLRs of the modalities
the probe and the candidate share: this is the Neyman-Pearson optimal rule for independent modalities
and needs no hand-set weights. ``LLR`` is forced non-decreasing in ``s`` (a higher similarity is never
weaker evidence) and clipped to ``±LLR_CLIP``.

Thresholds: a target FPIR at gallery size N means a per-comparison false match rate
``f = 1 - (1 - FPIR) ** (1 / N)``. The threshold on the fused LLR is the smallest ``t`` with
``P_impostor(fused >= t) <= f``, computed from the impostor distribution of the fused LLR (the
convolution of each modality's impostor LLR distribution). Far beyond the measured impostor scores the
impostor tail is extrapolated with a Gaussian fitted to the upper impostor quantiles (QQ fit), which is
what iris (binomial Hamming distances) and cosine-similarity impostors look like in their tails.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import special

from engine.calibration import ScoreDistributions, load_distributions
from engine.errors import InvalidInput
from engine.types import Modality, ModelRef

__all__ = ["Fusion", "ModalityCalibration", "per_comparison_fmr"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

LLR_CLIP = 60.0
GENUINE_OUTLIER_SHARE = 1e-3
_LLR_STEP = 0.02  # resolution of the fused-LLR distribution (nats)
_TAIL_QUANTILE = 0.99  # the Gaussian tail is fitted to impostor scores above this quantile

# Used only when a model has no calibration file: coarse, documented, deliberately conservative
# parametric distributions (mean, std) of similarities, so a fresh install still makes sane decisions.
# The extractor issues measure and ship the real ones (engine/calibration_data/).
DEFAULT_DISTRIBUTIONS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    # kind: ((genuine mean, std), (impostor mean, std)). Face: typical of ArcFace-style embedding
    # models (a site's drop-in model); the shipped models have measured files (dlib's cosines are
    # unusually high: impostors ~0.84, genuines ~0.95, see engine/calibration_data).
    "face": ((0.65, 0.12), (0.02, 0.10)),
    "iris": ((0.80, 0.06), (0.53, 0.02)),
}


def per_comparison_fmr(target_fpir: float, gallery_size: int) -> float:
    """The 1:1 false match rate that gives ``target_fpir`` over ``gallery_size`` independent comparisons."""
    if not 0.0 < target_fpir < 1.0:
        raise InvalidInput(f"target FPIR must be in (0, 1), got {target_fpir}", reason="INVALID_THRESHOLD")
    n = max(int(gallery_size), 1)
    return float(-np.expm1(np.log1p(-target_fpir) / n))


@dataclass(frozen=True)
class ModalityCalibration:
    """LLR mapping and impostor tail of one model, tabulated on a fine similarity grid."""

    model: ModelRef
    kind: str
    grid: F64  # similarity values, ascending
    llr: F64  # LLR at each grid point, non-decreasing
    impostor_sf: F64  # P_impostor(S >= grid[j])
    measured: bool  # False when built from DEFAULT_DISTRIBUTIONS

    def llr_of(self, scores: npt.ArrayLike) -> F64:
        s = np.asarray(scores, dtype=np.float64)
        return np.interp(s, self.grid, self.llr)

    def fmr_at(self, score: float) -> float:
        """Estimated 1:1 false match rate at a similarity threshold (tail extrapolated)."""
        return float(np.interp(score, self.grid, self.impostor_sf))

    @classmethod
    def from_distributions(cls, dist: ScoreDistributions) -> ModalityCalibration:
        centres = 0.5 * (dist.edges[1:] + dist.edges[:-1])
        return cls._build(dist.model, dist.kind, centres, dist.genuine.astype(np.float64),
                          dist.impostor.astype(np.float64), dist.impostor_tail, measured=True)

    @classmethod
    def default(cls, model: ModelRef, kind: str) -> ModalityCalibration:
        (gm, gs), (im, is_) = DEFAULT_DISTRIBUTIONS[kind]
        lo, hi = (-1.0, 1.0) if kind == "face" else (0.0, 1.0)
        centres = np.linspace(lo, hi, 2001)
        width = centres[1] - centres[0]
        scale = 1e6
        g = scale * width * np.exp(-0.5 * ((centres - gm) / gs) ** 2) / (gs * np.sqrt(2 * np.pi))
        i = scale * width * np.exp(-0.5 * ((centres - im) / is_) ** 2) / (is_ * np.sqrt(2 * np.pi))
        # the exact tail of a 1e6-sample impostor set from the same normal
        ranks = np.arange(1, 2001, dtype=np.float64)
        tail = im + is_ * special.ndtri(1.0 - ranks / (scale + 1.0))
        return cls._build(model, kind, centres, g, i, tail, measured=False)

    @classmethod
    def _build(cls, model: ModelRef, kind: str, centres: F64, gen: F64, imp: F64, tail: F64,
               *, measured: bool) -> ModalityCalibration:
        n_gen, n_imp = float(gen.sum()), float(imp.sum())
        if n_gen <= 0 or n_imp <= 0:
            raise InvalidInput(f"calibration of {model} has no genuine or no impostor scores")
        width = float(centres[1] - centres[0])
        # Smooth both histograms with a Gaussian kernel (Silverman bandwidth on the binned data).
        g_pdf = _kde(centres, gen, width)
        i_pdf = _kde(centres, imp, width)
        # Gaussian tail of the impostors from a QQ fit of the upper quantiles.
        mu, sigma = _fit_upper_tail(centres - width / 2, imp, np.sort(tail)[::-1], n_imp)
        tail_pdf = np.exp(-0.5 * ((centres - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        tail_sf = special.ndtr(-(centres - mu) / sigma)
        emp_sf = np.cumsum(imp[::-1])[::-1] / n_imp  # P(S >= bin), histogram resolution
        start = float(centres[np.searchsorted(np.cumsum(imp) / n_imp, _TAIL_QUANTILE)])
        in_tail = centres >= start
        # Beyond the fitted start the model's tail replaces the (sparse, then empty) histogram, scaled
        # to join it continuously.
        join = np.argmax(in_tail) if in_tail.any() else len(centres) - 1
        k = emp_sf[join] / max(tail_sf[join], 1e-300)
        impostor_sf = np.where(in_tail, np.minimum(k * tail_sf, emp_sf[join]), emp_sf)
        i_density = np.where(in_tail, k * tail_pdf, i_pdf)
        # Density floors where a histogram has no data: a normal fit of the same scores, so that the
        # ratio stays defined (and small) far from the data instead of 0/0.
        g_density = np.maximum(g_pdf, 1e-3 * _normal_fit_pdf(centres, gen))
        # Genuine outliers: a small share of genuine comparisons can land anywhere (a poor photo, an
        # occluded eye), far more often than a Gaussian lower tail admits. Modelling them as a uniform
        # component keeps the evidence of a score that no impostor reaches positive, however unusual
        # it is for genuines, so the impostor tail (the FPIR) governs decisions there.
        span = float(centres[-1] - centres[0]) + width
        g_density = (1.0 - GENUINE_OUTLIER_SHARE) * g_density + GENUINE_OUTLIER_SHARE / span
        i_density = np.maximum(i_density, 1e-3 * _normal_fit_pdf(centres, imp) * ~in_tail)
        llr = np.log(np.maximum(g_density, 1e-300)) - np.log(np.maximum(i_density, 1e-300))
        # Non-decreasing by a running minimum from the top: a spurious high ratio below the data (where
        # both densities are floors) cannot lift the evidence of scores above it.
        llr = np.clip(np.minimum.accumulate(llr[::-1])[::-1], -LLR_CLIP, LLR_CLIP)
        return cls(model, kind, centres.astype(np.float64), llr, np.clip(impostor_sf, 0.0, 1.0), measured)

    def impostor_llr_pmf(self) -> F64:
        """Probability mass of this modality's LLR under impostors on the fused grid."""
        bins = _llr_bins()
        mass = -np.diff(np.append(self.impostor_sf, 0.0))  # P(S in [grid_j, grid_j+1))
        mass[0] += 1.0 - self.impostor_sf[0]  # everything below the grid
        idx = np.clip(np.round((self.llr + LLR_CLIP) / _LLR_STEP).astype(np.int64), 0, len(bins) - 1)
        pmf = np.zeros(len(bins))
        np.add.at(pmf, idx, np.maximum(mass, 0.0))
        return np.asarray(pmf / pmf.sum(), dtype=np.float64)


def _llr_bins() -> F64:
    return np.arange(-LLR_CLIP, LLR_CLIP + _LLR_STEP / 2, _LLR_STEP)


def _kde(centres: F64, counts: F64, width: float) -> F64:
    n = counts.sum()
    mean = (centres * counts).sum() / n
    std = np.sqrt(((centres - mean) ** 2 * counts).sum() / n)
    h = max(1.06 * std * n ** (-0.2), width)
    half = int(np.ceil(4 * h / width))
    x = np.arange(-half, half + 1) * width
    kernel = np.exp(-0.5 * (x / h) ** 2)
    kernel /= kernel.sum()
    return np.asarray(np.convolve(counts, kernel, mode="same") / (n * width), dtype=np.float64)


def _normal_fit_pdf(centres: F64, counts: F64) -> F64:
    n = counts.sum()
    mean = (centres * counts).sum() / n
    std = max(float(np.sqrt(((centres - mean) ** 2 * counts).sum() / n)), float(centres[1] - centres[0]))
    return np.asarray(np.exp(-0.5 * ((centres - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi)))


def _fit_upper_tail(edges_lo: F64, counts: F64, tail_desc: F64, n_imp: float) -> tuple[float, float]:
    """Gaussian tail: least-squares fit of ``s = mu + sigma * z`` to the top ``1 - _TAIL_QUANTILE`` of
    the impostor scores, one point per order statistic (``z`` = normal quantile of its rank).

    Equal weight per order statistic keeps the few most extreme (noisiest) scores from steering the
    fit. Ranks beyond the stored exact top scores are read off the histogram."""
    n_ranks = int(max(10.0, (1.0 - _TAIL_QUANTILE) * n_imp))
    ranks = np.arange(1, n_ranks + 1, dtype=np.float64)
    p = (ranks - 0.5) / n_imp
    s = np.empty(n_ranks)
    m = min(len(tail_desc), n_ranks)
    s[:m] = tail_desc[:m]
    if m < n_ranks:
        sf_hist = np.cumsum(counts[::-1])[::-1] / n_imp  # P(S >= edges_lo[j]), non-increasing
        s[m:] = np.interp(p[m:], sf_hist[::-1], edges_lo[::-1])
    z = special.ndtri(1.0 - p)
    if np.ptp(s) == 0:
        return float(s.mean()), 0.05
    sigma, mu = np.polyfit(z, s, 1)
    return float(mu), float(max(sigma, 1e-4))


class Fusion:
    """LLR fusion over modalities with per-model calibration, and FPIR thresholds (cached)."""

    def __init__(self, calibrations: Mapping[Modality, ModalityCalibration]):
        self._cal = dict(calibrations)
        self._pmf_cache: dict[frozenset[Modality], F64] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_models(cls, models: Mapping[Modality, ModelRef], directory: Path | None = None) -> Fusion:
        """Calibrations from ``directory`` (default: the shipped engine/calibration_data)."""
        cals: dict[Modality, ModalityCalibration] = {}
        for modality, model in models.items():
            dist = load_distributions(model, directory)
            if dist is None:
                log.warning("no calibration data for %s; using coarse defaults for %s", model, modality.value)
                cals[modality] = ModalityCalibration.default(model, modality.kind)
            else:
                cals[modality] = ModalityCalibration.from_distributions(dist)
        return cls(cals)

    def knows(self, modality: Modality, model: ModelRef) -> bool:
        """True when this fusion holds the calibration of ``model`` for ``modality``."""
        cal = self._cal.get(modality)
        return cal is not None and cal.model == model

    def calibration(self, modality: Modality) -> ModalityCalibration:
        return self._cal[modality]

    def llrs(self, scores: Mapping[Modality, float]) -> dict[Modality, float]:
        return {m: float(self._cal[m].llr_of(s)) for m, s in scores.items()}

    def fuse(self, scores: Mapping[Modality, float]) -> tuple[float, dict[Modality, float]]:
        llrs = self.llrs(scores)
        return float(sum(llrs.values())), llrs

    def threshold(self, modalities: Iterable[Modality], fmr: float) -> float:
        """Smallest fused LLR ``t`` whose impostor exceedance ``P(fused >= t)`` is at most ``fmr``."""
        key = frozenset(modalities)
        if not key:
            raise InvalidInput("no modality to compare", reason="NO_BIOMETRIC_DATA")
        pmf = self._fused_pmf(key)
        sf = np.cumsum(pmf[::-1])[::-1]  # P(fused >= bin value)
        fused_bins = np.arange(len(pmf)) * _LLR_STEP - LLR_CLIP * len(key)
        ok = np.nonzero(sf <= fmr)[0]
        if len(ok) == 0:  # even the clipped maximum is too common: nothing can pass
            return float(fused_bins[-1] + _LLR_STEP)
        return float(fused_bins[ok[0]])

    def _fused_pmf(self, key: frozenset[Modality]) -> F64:
        with self._lock:
            cached = self._pmf_cache.get(key)
            if cached is not None:
                return cached
        first, *rest = sorted(key)
        pmf = self._cal[first].impostor_llr_pmf()
        for m in rest:
            pmf = np.convolve(pmf, self._cal[m].impostor_llr_pmf())
        with self._lock:
            self._pmf_cache[key] = pmf
        return pmf
