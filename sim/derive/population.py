"""From per-image rates to populations: innocent images and accounts flagged.

Assumptions, all stated in the report:

1. **Independence.** An innocent image's hash is compared with N set entries;
   each comparison is an independent trial with the per-pair false-match
   probability p of unrelated images. Then the per-image false-match rate is
   FMR(N) = 1 − (1 − p)^N ≈ N·p. Real photo collections have near-duplicates
   (memes, logos, screenshots of the same app) that break this; the model
   cannot see them, so it is a floor, not a forecast.
2. **Per-pair rate.** p comes from the beta-binomial fit to the corpus's
   unrelated-pair distances (``stats.fit_beta_binomial``), i.e. from how this
   corpus's hashes actually spread, not from the fair-coin binomial.
3. **Daily volume.** Expected innocent images flagged per day = V · FMR(N).
4. **Threshold reporting (tpsi).** An account with n innocent images a year is
   flagged when at least t of them falsely match: X ~ Binomial(n, FMR) and
   P(flag) = P(X ≥ t), with the Poisson tail as a cross-check — the analysis in
   Apple's threat-model review, which targeted < 10⁻¹² per account per year.
   Synthetic vouchers do not change this: they carry junk shares and never
   count towards t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as st

from ..stats import BetaBinomialFit

__all__ = [
    "account_flag_probability",
    "exact_probe_pair_rate",
    "fmr_for_set",
    "log10_or_none",
    "pair_rate",
]


def pair_rate(fit: BetaBinomialFit, radius: int) -> float:
    """Per-pair probability that two unrelated hashes lie within ``radius``."""
    return fit.cdf(int(radius))


def exact_probe_pair_rate(fit: BetaBinomialFit, probe_bits: int) -> float:
    """Per-pair probability that an unrelated set entry equals one of the 2^k probes.

    The probes are C(k, j) points at distance j (j = 0..k) from the query; under
    an exchangeable model each point at distance j has probability pmf(j)/C(bits, j).
    """
    total = 0.0
    for j in range(0, max(0, probe_bits) + 1):
        pj = float(fit.pmf(np.array([j]))[0])
        total += math.comb(probe_bits, j) * pj / math.comb(fit.bits, j)
    return total


def fmr_for_set(p_pair: float, set_size: float) -> float:
    """1 − (1 − p)^N, computed without cancellation for tiny p."""
    if p_pair <= 0:
        return 0.0
    if p_pair >= 1:
        return 1.0
    return float(-math.expm1(float(set_size) * math.log1p(-p_pair)))


@dataclass(frozen=True)
class FlagProbability:
    binomial: float
    poisson: float
    log10_binomial: float | None
    log10_poisson: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "binomial": self.binomial,
            "poisson": self.poisson,
            "log10_binomial": self.log10_binomial,
            "log10_poisson": self.log10_poisson,
        }


def log10_or_none(logp: float) -> float | None:
    return None if not math.isfinite(logp) else logp / math.log(10)


def account_flag_probability(n_images: int, per_image: float, threshold: int) -> FlagProbability:
    """P(at least ``threshold`` of ``n_images`` innocent images falsely match)."""
    if threshold <= 0:
        return FlagProbability(1.0, 1.0, 0.0, 0.0)
    if per_image <= 0:
        return FlagProbability(0.0, 0.0, None, None)
    lb = float(st.binom.logsf(threshold - 1, n_images, per_image))
    lam = n_images * per_image
    # Poisson tail P(X >= t) = regularised lower incomplete gamma P(t, λ)
    lp = (
        float(np.log(special.gammainc(threshold, lam)))
        if special.gammainc(threshold, lam) > 0
        else _log_poisson_tail(threshold, lam)
    )
    return FlagProbability(math.exp(lb), math.exp(lp), log10_or_none(lb), log10_or_none(lp))


def _log_poisson_tail(t: int, lam: float) -> float:
    """log P(X >= t) for tiny λ: the leading term t·log λ − λ − log t! dominates."""
    if lam <= 0:
        return float("-inf")
    return t * math.log(lam) - lam - math.lgamma(t + 1) + math.log1p(lam / (t + 1))
