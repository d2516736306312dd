"""Parametric upper tails of similarity distributions: the extreme scores that histograms cannot hold.

Thresholds for large galleries sit at per-comparison false match rates of 1e-8 to 1e-12, far beyond
any measured impostor score, so the calibration must say how the impostor distribution ends. Above a
high quantile ``start`` the scores of a distribution are modelled by a **Beta distribution of the
normalised score** ``u = (s - lo) / (hi - lo)``, fitted by maximum likelihood to the binned
exceedances (conditioned on ``s >= start``). Why Beta:

- it has the true support. Similarities are bounded: a cosine and ``1 - fractional Hamming distance``
  top out at 1.0, which only an identical sample reaches. The Beta's survival function falls to 0
  exactly at the top of the range, so no probability lands on impossible scores above it. A Gaussian
  tail does put mass there: for dlib's impostors (cosines around 0.84) 4e-10 of it, which made every
  threshold below that rate, i.e. every face-only threshold of a gallery past ~22k records at FPIR
  0.003, unreachable even by an exact copy;
- near the top it decays like ``(hi - s) ** b``: the power law that extreme-value theory gives for
  bounded variables (Weibull domain of attraction) and, for cosines, the geometry of the sphere (the
  share of a d-sphere within angle theta of a point falls like theta ** (d - 1));
- further down its ``u ** (a - 1)`` factor adds the faster, Gaussian-like fall-off of binomial
  Hamming distances (iris) and of cosines far from 1, so one two-parameter family fits both kinds.

The same model serves the upper tail of the genuine scores, where the few genuine pairs above ~0.99
(and the identical samples at 1.0) leave the histogram sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

__all__ = ["BetaTail", "fit_upper_tail"]

F64 = npt.NDArray[np.float64]

MIN_EXCEEDANCES = 25  # fewer scores above the start than this cannot pin down two parameters
_TINY = 1e-300


@dataclass(frozen=True)
class BetaTail:
    """``P(S >= s) = mass * B(s) / B(start)`` for ``start <= s <= hi``, with ``B`` the survival
    function of Beta(a, b) on ``u = (s - lo) / (hi - lo)``. ``mass``: the share of all scores above
    ``start`` (measured); ``a, b``: fitted."""

    lo: float
    hi: float
    start: float
    mass: float
    a: float
    b: float

    def _b(self, s: npt.ArrayLike) -> F64:
        # P(U >= u) = P(1 - U <= 1 - u) with 1 - U ~ Beta(b, a): no cancellation in the far tail
        x = np.clip((self.hi - np.asarray(s, dtype=np.float64)) / (self.hi - self.lo), 0.0, 1.0)
        return np.asarray(special.betainc(self.b, self.a, x), dtype=np.float64)

    def sf(self, s: npt.ArrayLike) -> F64:
        """``P(S >= s)`` for scores at or above ``start`` (scores below are clamped to ``start``)."""
        s = np.maximum(np.asarray(s, dtype=np.float64), self.start)
        return np.asarray(self.mass * self._b(s) / max(float(self._b(self.start)), _TINY), dtype=np.float64)

    def bin_mass(self, edges: F64) -> F64:
        """Probability of each bin ``[edges[j], edges[j+1])`` (bins below ``start`` get 0)."""
        sf = self.sf(edges)
        sf[edges < self.start] = self.mass
        return np.maximum(sf[:-1] - sf[1:], 0.0)

    def top(self, quantile_share: float) -> float:
        """The score ``s`` with ``P(S >= s) = quantile_share`` (0 < share <= mass)."""
        share = min(max(quantile_share, _TINY), self.mass)
        target = share / self.mass * float(self._b(self.start))
        x = float(special.betaincinv(self.b, self.a, target))
        return self.hi - x * (self.hi - self.lo)


def fit_upper_tail(edges: F64, counts: F64, share: float, *, min_count: int = MIN_EXCEEDANCES) -> BetaTail:
    """Fit the tail above the bin edge where the top ``share`` of ``counts`` (a histogram on
    ``edges``) begins, moved down until at least ``min_count`` scores lie above it.

    Binned likelihood (each bin's probability under the conditional Beta), so the histogram's own
    resolution is respected; Nelder-Mead on ``(log a, log b)`` from the moment estimates of the whole
    histogram."""
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("an empty histogram has no tail")
    lo, hi = float(edges[0]), float(edges[-1])
    above = np.cumsum(counts[::-1])[::-1]  # scores in bins j.. (at or above edges[j])
    need = max(share * n, min(float(min_count), n))
    j0 = int(np.nonzero(above >= need)[0][-1])
    start = float(edges[j0])
    c = counts[j0:]
    x_edges = (hi - edges[j0:]) / (hi - lo)  # descending from x0 to 0
    keep = c > 0

    def nll(theta: F64) -> float:
        a, b = np.exp(np.clip(theta, -5.0, 14.0))
        cdf = special.betainc(b, a, x_edges)  # P(1 - U <= x) at each edge
        p = (cdf[:-1] - cdf[1:]) / max(float(cdf[0]), _TINY)
        return float(-(c[keep] * np.log(np.maximum(p[keep], _TINY))).sum())

    centres = 0.5 * (edges[1:] + edges[:-1])
    u = (centres - lo) / (hi - lo)
    m = float((u * counts).sum() / n)
    v = max(float(((u - m) ** 2 * counts).sum() / n), 1e-12)
    k = max(m * (1.0 - m) / v - 1.0, 1e-3)
    a0, b0 = max(m * k, 1e-2), max((1.0 - m) * k, 1e-2)
    # One start suffices: from the moment estimates and from rescalings of them (x0.1 to x3) the
    # simplex reached the same optimum on every shipped calibration.
    best = optimize.minimize(nll, np.log([a0, b0]), method="Nelder-Mead",
                             options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000})
    a, b = np.exp(np.clip(best.x, -5.0, 14.0))
    return BetaTail(lo, hi, start, float(above[j0] / n), float(a), float(b))
