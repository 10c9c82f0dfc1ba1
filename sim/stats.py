"""Interval estimates and distribution fits used by every accuracy number.

Why Wilson for the headline and Clopper–Pearson beside it: Wilson's interval has
close to nominal coverage and stays sensible at 0 or n successes (the usual case
for false-match counts); Clopper–Pearson is exact and conservative, and it is
what many evaluation standards quote. Both are reported so a reader can pick.

The beta-binomial fit describes unrelated-pair Hamming distances with one extra
parameter for over-dispersion: real hashes are not independent fair coin flips,
and the excess variance over binomial(bits, ½) is what makes far-tail false
matches more likely than the textbook model says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as st

__all__ = [
    "BetaBinomialFit",
    "clopper_pearson",
    "fit_beta_binomial",
    "percentiles",
    "rate",
    "wilson",
]


def wilson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (no continuity correction)."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..{n}")
    z = float(st.norm.ppf(0.5 + conf / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half) if k > 0 else 0.0, min(1.0, centre + half) if k < n else 1.0)


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval from beta quantiles."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..{n}")
    a = 1 - conf
    lo = 0.0 if k == 0 else float(st.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(st.beta.ppf(1 - a / 2, k + 1, n - k))
    return (lo, hi)


def rate(k: int, n: int, conf: float = 0.95) -> dict[str, Any]:
    """A proportion with both intervals, as stored in results.json."""
    w = wilson(k, n, conf)
    cp = clopper_pearson(k, n, conf)
    return {
        "k": int(k),
        "n": int(n),
        "rate": (k / n) if n else None,
        "wilson": [w[0], w[1]],
        "clopper_pearson": [cp[0], cp[1]],
    }


@dataclass(frozen=True)
class BetaBinomialFit:
    """Method-of-moments beta-binomial over ``bits`` trials (``rho``: intra-class correlation)."""

    bits: int
    mean: float
    sd: float
    rho: float
    alpha: float | None
    beta: float | None

    def cdf(self, r: int) -> float:
        """P(distance <= r) for an unrelated pair under the fit."""
        if self.alpha is None or self.beta is None:
            return float(st.binom.cdf(r, self.bits, self.mean / self.bits))
        return float(st.betabinom.cdf(r, self.bits, self.alpha, self.beta))

    def pmf(self, ks: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        if self.alpha is None or self.beta is None:
            return np.asarray(st.binom.pmf(ks, self.bits, self.mean / self.bits), dtype=np.float64)
        return np.asarray(st.betabinom.pmf(ks, self.bits, self.alpha, self.beta), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "mean": self.mean,
            "sd": self.sd,
            "rho": self.rho,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def fit_beta_binomial(distances: npt.ArrayLike, bits: int) -> BetaBinomialFit:
    """Fit mean and over-dispersion of pair distances; falls back to binomial if under-dispersed."""
    d = np.asarray(distances, dtype=np.float64)
    if d.size < 2:
        raise ValueError("need at least two distances to fit")
    m, v = float(d.mean()), float(d.var(ddof=1))
    p = min(max(m / bits, 1e-9), 1 - 1e-9)
    binom_var = bits * p * (1 - p)
    rho = (v / binom_var - 1.0) / (bits - 1) if bits > 1 else 0.0
    if rho <= 1e-9:
        return BetaBinomialFit(bits, m, math.sqrt(v), 0.0, None, None)
    s = 1.0 / rho - 1.0
    return BetaBinomialFit(bits, m, math.sqrt(v), rho, p * s, (1 - p) * s)


def percentiles(values: npt.ArrayLike, qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {f"p{int(q)}": float("nan") for q in qs}
    return {f"p{int(q)}": float(np.percentile(a, q)) for q in qs}
