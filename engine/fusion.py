"""Score fusion and FPIR thresholds.

Each modality's similarity ``s`` becomes a log-likelihood ratio ``LLR(s) = ln g(s) / i(s)`` with ``g``
and ``i`` the genuine and impostor densities measured for that model (``engine.calibration``). LLRs of
independent modalities add, so the fused score of a candidate is the sum of the LLRs of the modalities
the probe and the candidate share: this is the Neyman-Pearson optimal rule for independent modalities
and needs no hand-set weights. ``LLR`` is forced non-decreasing in ``s`` (a higher similarity is never
weaker evidence).

Densities: a kernel-smoothed histogram where the measured scores are dense; above the top 1 % of the
impostors and the top 10 % of the genuines, a Beta tail fitted to those scores (``engine.tails``: it
ends exactly at the top of the score range, where only identical samples land). Both are taken as
probabilities of the calibration grid's bins, so the LLR is finite everywhere, also for the top bin
(an identical sample), and rises with the score right up to it: every threshold a large gallery
needs is reachable by a strong genuine score.

Thresholds: a target FPIR at gallery size N means a per-comparison false match rate
``f = 1 - (1 - FPIR) ** (1 / N)``. The threshold on the fused LLR is the smallest ``t`` with
``P_impostor(fused >= t) <= f``, computed from the impostor distribution of the fused LLR (the
convolution of each modality's impostor LLR distribution). When even identical samples are too
common among impostors for ``f`` (an FPIR no calibration can promise), the threshold is the fused LLR
of identical samples, and the result says that the target is not met and what FPIR it gives instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from engine.calibration import ScoreDistributions, load_distributions
from engine.errors import ConfigurationError, InvalidInput
from engine.tails import BetaTail, fit_upper_tail
from engine.types import Modality, ModelRef

__all__ = ["MIN_FUSED_THRESHOLD", "FusedThreshold", "Fusion", "FusionSource", "ModalityCalibration",
           "calibration_summary", "expected_fpir", "per_comparison_fmr"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

# The range (nats, per modality) of the impostor LLR distributions that thresholds are computed from:
# larger LLRs count as LLR_CLIP there. Every threshold for a per-comparison FMR down to 1e-15 lies far
# inside it (tests/unit/core/test_fusion_tails.py). The LLR tables themselves are not clipped: they
# are bounded by the genuine-outlier floor below and by the smallest float above.
LLR_CLIP = 60.0
# The fused threshold never goes below zero: a candidate is never reported on evidence that favours
# "different persons" (LLR < 0), even when the impostor distribution is so narrow that the target FPIR
# alone would allow it (tiny galleries, extreme calibrations). This only ever lowers FPIR.
MIN_FUSED_THRESHOLD = 0.0
GENUINE_OUTLIER_SHARE = 1e-3
IMPOSTOR_TAIL_SHARE = 0.01  # the top 1 % of impostor scores are modelled by the fitted tail
GENUINE_TAIL_SHARE = 0.10
_LLR_STEP = 0.02  # resolution of the fused-LLR distribution (nats)
_TINY = 1e-300

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


def expected_fpir(fmr: float, gallery_size: int) -> float:
    """The FPIR that a per-comparison false match rate ``fmr`` gives over ``gallery_size`` comparisons
    (the inverse of :func:`per_comparison_fmr`)."""
    n = max(int(gallery_size), 1)
    return float(-np.expm1(n * np.log1p(-min(max(fmr, 0.0), 1.0 - 1e-16))))


@dataclass(frozen=True)
class FusedThreshold:
    """A decision threshold on the fused LLR: candidates need ``fused >= value``. ``fmr``: the
    impostor rate ``P(fused >= value)`` it gives; ``met``: whether that is within the rate asked for
    (False only when even identical samples are too common among impostors for it: ``value`` is then
    the fused LLR of identical samples, the strictest threshold that can still be passed)."""

    value: float
    fmr: float
    met: bool


@dataclass(frozen=True)
class ModalityCalibration:
    """LLR mapping and impostor tail of one model, tabulated on the calibration's bins (``grid``: their
    centres; a score is looked up by interpolation, a score above the last centre gets the last bin's
    LLR, which is that of an identical sample)."""

    model: ModelRef
    kind: str
    grid: F64  # similarity values, ascending
    llr: F64  # LLR at each grid point, non-decreasing
    impostor_sf: F64  # P_impostor(S >= lower edge of bin j)
    measured: bool  # False when built from DEFAULT_DISTRIBUTIONS
    impostor_tail: BetaTail | None = None
    genuine_tail: BetaTail | None = None
    variant: str = ""  # the templates it describes (engine.calibration; "" = plain)

    def llr_of(self, scores: npt.ArrayLike) -> F64:
        s = np.asarray(scores, dtype=np.float64)
        return np.interp(s, self.grid, self.llr)

    def fmr_at(self, score: float) -> float:
        """Estimated 1:1 false match rate at a similarity threshold (tail extrapolated)."""
        return float(np.interp(score, self.grid, self.impostor_sf))

    @property
    def identical_llr(self) -> float:
        """The LLR of an identical sample (similarity at the top of the range)."""
        return float(self.llr[-1])

    @classmethod
    def from_distributions(cls, dist: ScoreDistributions) -> ModalityCalibration:
        built = cls._build(dist.model, dist.kind, dist.edges.astype(np.float64),
                           dist.genuine.astype(np.float64), dist.impostor.astype(np.float64), measured=True)
        return replace(built, variant=dist.variant)

    @classmethod
    def default(cls, model: ModelRef, kind: str) -> ModalityCalibration:
        (gm, gs), (im, is_) = DEFAULT_DISTRIBUTIONS[kind]
        lo, hi = (-1.0, 1.0) if kind == "face" else (0.0, 1.0)
        edges = np.linspace(lo, hi, 2001)
        centres = 0.5 * (edges[1:] + edges[:-1])
        width = edges[1] - edges[0]
        scale = 1e6  # as if a million scores had been measured
        g = scale * width * np.exp(-0.5 * ((centres - gm) / gs) ** 2) / (gs * np.sqrt(2 * np.pi))
        i = scale * width * np.exp(-0.5 * ((centres - im) / is_) ** 2) / (is_ * np.sqrt(2 * np.pi))
        return cls._build(model, kind, edges, g, i, measured=False)

    @classmethod
    def _build(cls, model: ModelRef, kind: str, edges: F64, gen: F64, imp: F64,
               *, measured: bool) -> ModalityCalibration:
        if float(gen.sum()) <= 0 or float(imp.sum()) <= 0:
            raise InvalidInput(f"calibration of {model} has no genuine or no impostor scores")
        centres = 0.5 * (edges[1:] + edges[:-1])
        width = float(edges[1] - edges[0])
        span = float(edges[-1] - edges[0])
        i_tail = fit_upper_tail(edges, imp, IMPOSTOR_TAIL_SHARE)
        g_tail = fit_upper_tail(edges, gen, GENUINE_TAIL_SHARE)
        i_mass = _body_and_tail(edges, imp, i_tail)
        g_mass = _body_and_tail(edges, gen, g_tail)
        # Floors where a histogram has no data below its tail: a normal fit of the same scores, so
        # that the ratio stays defined (and small) far from the data instead of 0/0.
        g_floor = 1e-3 * width * _normal_fit_pdf(centres, gen) * (edges[:-1] < g_tail.start)
        g_mass = np.maximum(g_mass, g_floor)
        # Genuine outliers: a small share of genuine comparisons can land anywhere (a poor photo, an
        # occluded eye), far more often than a Gaussian lower tail admits. Modelling them as a uniform
        # component keeps the evidence of a score that no impostor reaches positive, however unusual
        # it is for genuines, so the impostor tail (the FPIR) governs decisions there.
        g_mass = (1.0 - GENUINE_OUTLIER_SHARE) * g_mass + GENUINE_OUTLIER_SHARE * width / span
        i_floor = 1e-3 * width * _normal_fit_pdf(centres, imp) * (edges[:-1] < i_tail.start)
        i_mass = np.maximum(i_mass, i_floor)
        i_mass = np.maximum(i_mass / i_mass.sum(), _TINY)
        llr = np.log(np.maximum(g_mass, _TINY)) - np.log(i_mass)
        # Non-decreasing by a running minimum from the top: a spurious high ratio below the data (where
        # both densities are floors) cannot lift the evidence of scores above it. In the tails the
        # fitted models make the LLR rise to the top bin by themselves.
        llr = np.minimum.accumulate(llr[::-1])[::-1]
        impostor_sf = np.minimum(np.cumsum(i_mass[::-1])[::-1], 1.0)
        return cls(model, kind, centres.astype(np.float64), llr, impostor_sf, measured, i_tail, g_tail)

    def summary(self, target_fpir: float = 0.003) -> list[str]:
        """Lines for people: the fitted tails, and the similarity a candidate needs at ``target_fpir``
        for galleries of 1e3 to 1e8 records of this modality alone (what calibration scripts print)."""
        lines = []
        for name, tail in (("impostor", self.impostor_tail), ("genuine", self.genuine_tail)):
            if tail is not None:
                lines.append(f"{name} tail: top {tail.mass:.1%} of scores (from {tail.start:.4f}) ~ "
                             f"Beta(a={tail.a:.3g}, b={tail.b:.3g}) on the normalised score")
        lines.append(f"LLR of an identical sample: {self.identical_llr:.1f}")
        fusion = Fusion({Modality.FACE: self})  # the slot does not matter for one modality
        for n in (1_000, 100_000, 10_000_000, 100_000_000):
            t = fusion.decide_threshold([Modality.FACE], per_comparison_fmr(target_fpir, n))
            score = float(np.interp(t.value, self.llr, self.grid))
            lines.append(f"FPIR {target_fpir:g} at {n:>11,} records: LLR >= {t.value:.2f}, similarity >= "
                         f"{score:.4f}, impostor rate {t.fmr:.2e}{'' if t.met else ' (target NOT met)'}")
        return lines

    def impostor_llr_pmf(self) -> F64:
        """Probability mass of this modality's LLR under impostors on the fused grid."""
        bins = _llr_bins()
        mass = -np.diff(np.append(self.impostor_sf, 0.0))  # P(S in bin j)
        mass[0] += 1.0 - self.impostor_sf[0]
        pmf = np.zeros(len(bins))
        np.add.at(pmf, _llr_index(self.llr), np.maximum(mass, 0.0))
        return np.asarray(pmf / pmf.sum(), dtype=np.float64)


def calibration_summary(model: ModelRef, directory: Path | None = None, variant: str = "") -> list[str]:
    """:meth:`ModalityCalibration.summary` of ``model``'s calibration file (of ``variant``; ``[]`` when
    it has none)."""
    dist = load_distributions(model, directory, variant)
    return [] if dist is None else ModalityCalibration.from_distributions(dist).summary()


def _llr_bins() -> F64:
    return np.arange(-LLR_CLIP, LLR_CLIP + _LLR_STEP / 2, _LLR_STEP)


def _llr_index(llr: F64) -> npt.NDArray[np.int64]:
    n = len(_llr_bins())
    return np.clip(np.round((llr + LLR_CLIP) / _LLR_STEP).astype(np.int64), 0, n - 1)


def _body_and_tail(edges: F64, counts: F64, tail: BetaTail) -> F64:
    """Probability of each bin: the kernel-smoothed histogram below ``tail.start`` (scaled to hold
    ``1 - tail.mass``), the fitted tail above."""
    width = float(edges[1] - edges[0])
    centres = 0.5 * (edges[1:] + edges[:-1])
    body = _kde(centres, counts, width) * width * (edges[:-1] < tail.start)
    total = float(body.sum())
    if total > 0:
        body *= (1.0 - tail.mass) / total
    return np.asarray(body + tail.bin_mass(edges), dtype=np.float64)


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


class Fusion:
    """LLR fusion over modalities with per-model calibration, and FPIR thresholds (cached)."""

    def __init__(self, calibrations: Mapping[Modality, ModalityCalibration]):
        self._cal = dict(calibrations)
        self._pmf_cache: dict[frozenset[Modality], F64] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_models(cls, models: Mapping[Modality, ModelRef], directory: Path | None = None,
                   variants: Mapping[Modality, str] | None = None) -> Fusion:
        """Calibrations from ``directory`` (default: the shipped engine/calibration_data).
        ``variants``: the calibration variant to use for a modality (``engine.calibration``; e.g. the
        fused face templates of ``face_frames = "fuse"``); it must exist."""
        cals: dict[Modality, ModalityCalibration] = {}
        for modality, model in models.items():
            variant = (variants or {}).get(modality, "")
            dist = load_distributions(model, directory, variant)
            if variant and dist is None:
                raise ConfigurationError(f"{model} has no calibration of its {variant!r} templates "
                                         f"(engine/calibration_data/); the engine cannot promise an FPIR "
                                         f"for them")
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

    def variant(self, modality: Modality) -> str:
        """The calibration variant used for ``modality`` (``engine.calibration``; "" = plain)."""
        return self._cal[modality].variant

    def models(self) -> dict[Modality, ModelRef]:
        """The model each modality is calibrated for."""
        return {m: c.model for m, c in self._cal.items()}

    def calibration(self, modality: Modality) -> ModalityCalibration:
        return self._cal[modality]

    def llrs(self, scores: Mapping[Modality, float]) -> dict[Modality, float]:
        return {m: float(self._cal[m].llr_of(s)) for m, s in scores.items()}

    def fuse(self, scores: Mapping[Modality, float]) -> tuple[float, dict[Modality, float]]:
        llrs = self.llrs(scores)
        return float(sum(llrs.values())), llrs

    def threshold(self, modalities: Iterable[Modality], fmr: float) -> float:
        """Smallest fused LLR ``t`` whose impostor exceedance ``P(fused >= t)`` is at most ``fmr``
        (the fused LLR of identical samples when none is: see :meth:`decide_threshold`)."""
        return self.decide_threshold(modalities, fmr).value

    def decide_threshold(self, modalities: Iterable[Modality], fmr: float,
                         floor: float = -np.inf) -> FusedThreshold:
        """The threshold (at least ``floor``) for a per-comparison impostor rate ``fmr`` over
        ``modalities``, with the rate it gives and whether that meets ``fmr``."""
        key = frozenset(modalities)
        if not key:
            raise InvalidInput("no modality to compare", reason="NO_BIOMETRIC_DATA")
        pmf = self._fused_pmf(key)
        sf = np.cumsum(pmf[::-1])[::-1]  # P(fused >= bin value)
        fused_bins = np.arange(len(pmf)) * _LLR_STEP - LLR_CLIP * len(key)
        # Identical samples in every modality: the largest fused LLR there is. Its bin is where the
        # per-modality bins of the top LLRs add up; the value itself is kept exact (minus a rounding
        # guard) so that an identical sample, whose LLRs are summed in any order, always passes.
        cals = [self._cal[m] for m in sorted(key)]
        top = sum(c.identical_llr for c in cals) - 1e-9
        top_bin = int(sum(int(_llr_index(np.array([c.identical_llr]))[0]) for c in cals))
        ok = np.nonzero(sf <= fmr)[0]
        if len(ok) == 0 or ok[0] > top_bin:
            return FusedThreshold(top, float(sf[top_bin]), False)
        j, value = int(ok[0]), float(fused_bins[ok[0]])
        if value < floor:  # a stricter threshold than asked for: its rate is that of the floor's bin
            j = min(int(np.searchsorted(fused_bins, floor - _LLR_STEP / 2)), top_bin)
            value = floor
        return FusedThreshold(min(value, top), float(sf[j]), True)

    def score_threshold(self, modality: Modality, fmr: float) -> float:
        """The similarity a comparison of ``modality`` alone needs for a per-comparison impostor rate
        ``fmr``: the engine's LLR threshold (at least ``MIN_FUSED_THRESHOLD``) mapped back through the
        calibration."""
        cal = self._cal[modality]
        value = self.decide_threshold([modality], fmr, floor=MIN_FUSED_THRESHOLD).value
        above = np.nonzero(cal.llr >= value)[0]
        return float(cal.grid[above[0]]) if len(above) else float(cal.grid[-1])

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


#: Calibrations as a job or service gets them: a ``Fusion``, or a function giving the ``Fusion`` for
#: the models at hand (the engine's ``fusion_for_models``, which knows the variants it decides with).
FusionSource: TypeAlias = Fusion | Callable[[Mapping[Modality, ModelRef]], Fusion]
