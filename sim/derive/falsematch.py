"""False matches, measured first: per-pair rates counted on the corpus, and a tail model only if it passes.

Why measured first: a model fitted to the bulk of the unrelated-pair distance
distribution cannot see near-duplicates, flat images or shared templates, and on
real photographs it under-states the tail by orders of magnitude. So the figure
every population number is built on is the count of unrelated pairs within the
threshold, with its exact (Clopper–Pearson) 95% interval; its upper end is what
the report multiplies out, marked "upper bound from N pairs".

The tail model (a beta-binomial) may stand beside it only after a calibration
check on the same corpus: fit on the pairs above a cut, predict how many pairs
lie between the threshold and the cut and how many at or below the threshold,
and compare both with the counts by exact binomial tests (two-sided for the
window, one-sided for an excess in the tail; 5% overall, Bonferroni). If either
rejects, the model is marked "rejected" and never used.

Pairs drawn from m images share images, so they are not independent; the
interval treats them as if they were, which is the usual and optimistic reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy import stats as st

from ..stats import BetaBinomialFit, fit_beta_binomial, rate

__all__ = [
    "Calibration",
    "calibrate",
    "false_match_row",
    "fit_above",
    "measured_pair_rate",
    "pairs_needed",
]

CONF = 0.95
ALPHA = 0.05  # calibration test level
MIN_WINDOW_SHARE = 0.005  # the window below the cut holds at least this share of pairs ...
MIN_WINDOW_PAIRS = 20  # ... and at least this many pairs, when the corpus has them
MIN_FIT_PAIRS = 50


def measured_pair_rate(hist: npt.ArrayLike, radius: int) -> dict[str, Any]:
    """Unrelated pairs within ``radius``: count, rate and both 95% intervals."""
    h = np.asarray(hist, dtype=np.int64)
    n = int(h.sum())
    k = int(h[: max(0, int(radius)) + 1].sum()) if radius >= 0 else 0
    return {"radius": int(radius), **rate(k, n, CONF)}


def pairs_needed(target: float, conf: float = CONF) -> int:
    """Unrelated pairs (with none matching) for the Clopper–Pearson upper bound to reach ``target``.

    With 0 of n, the two-sided upper bound is 1 − (α/2)^(1/n); about 3.7 / target at 95%.
    """
    if not 0 < target < 1:
        raise ValueError(f"target rate must lie in (0, 1), not {target}")
    return math.ceil(math.log((1 - conf) / 2) / math.log1p(-target))


def _log_pmf(bits: int, a: float, b: float) -> npt.NDArray[np.float64]:
    """log beta-binomial pmf over 0..bits, vectorised (the fit evaluates it thousands of times)."""
    k = np.arange(bits + 1, dtype=np.float64)
    log_choose = special.gammaln(bits + 1) - special.gammaln(k + 1) - special.gammaln(bits - k + 1)
    return np.asarray(log_choose + special.betaln(k + a, bits - k + b) - special.betaln(a, b))


def _truncated_nll(params: npt.NDArray[np.float64], counts: npt.NDArray[np.int64], cut: int) -> float:
    """Negative log-likelihood of the counts above ``cut`` under a beta-binomial truncated there."""
    a, b = np.exp(params)
    logp = _log_pmf(len(counts) - 1, float(a), float(b))
    upper = logp[cut + 1 :]
    top = float(upper.max())
    if not np.isfinite(top):
        return 1e300
    log_tail = top + math.log(float(np.exp(upper - top).sum()))
    above = counts[cut + 1 :]
    return float(-(above * logp[cut + 1 :]).sum() + above.sum() * log_tail)


def fit_above(hist: npt.ArrayLike, cut: int) -> BetaBinomialFit:
    """Maximum-likelihood beta-binomial fitted to the distances above ``cut`` only (truncated)."""
    h = np.asarray(hist, dtype=np.int64)
    bits = len(h) - 1
    ks = np.arange(cut + 1, bits + 1)
    counts = h[cut + 1 :]
    if counts.sum() < 2:
        raise ValueError("fewer than two pairs above the cut")
    start = fit_beta_binomial(np.repeat(ks, counts), bits)
    a0 = start.alpha if start.alpha is not None else 50.0 * start.mean / bits
    b0 = start.beta if start.beta is not None else 50.0 * (1 - start.mean / bits)
    res = optimize.minimize(
        _truncated_nll,
        np.log([a0, b0]),
        args=(h, cut),
        method="L-BFGS-B",
        bounds=[(-5.0, 12.0), (-5.0, 12.0)],
    )
    a, b = (float(x) for x in np.exp(res.x))
    mean = bits * a / (a + b)
    rho = 1.0 / (a + b + 1)
    var = bits * (a / (a + b)) * (b / (a + b)) * (a + b + bits) / (a + b + 1)
    return BetaBinomialFit(bits, mean, math.sqrt(var), rho, a, b)


@dataclass(frozen=True)
class Calibration:
    """Outcome of the calibration check for one hash and threshold.

    ``scale`` is 2 for hashes whose distances are always even (PDQ and pHash set
    exactly half their bits): the model then describes d / 2.
    """

    status: str  # "accepted" | "rejected" | "not checked"
    reason: str
    cut: int | None = None
    fitted_pairs: int = 0
    window: tuple[int, float, float] | None = None  # observed, expected, p in (radius, cut]
    tail: tuple[int, float, float] | None = None  # observed, expected, p (excess) at or below radius
    fit: BetaBinomialFit | None = None
    scale: int = 1

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def model_pmf(self, d: int) -> float:
        if self.fit is None or d % self.scale:
            return 0.0
        return float(self.fit.pmf(np.array([d // self.scale]))[0])

    def pair_rate(self, radius: int) -> float | None:
        """The model's per-pair rate within ``radius``; None unless the model was accepted."""
        return self.fit.cdf(radius // self.scale) if self.accepted and self.fit is not None else None

    def probe_pair_rate(self, probe_bits: int, bits: int) -> float | None:
        """Per-pair chance an unrelated entry equals one of the 2^k probes (exchangeable model)."""
        if not self.accepted:
            return None
        return sum(
            math.comb(probe_bits, j) * self.model_pmf(j) / math.comb(bits, j) for j in range(probe_bits + 1)
        )

    def to_dict(self) -> dict[str, Any]:
        def part(x: tuple[int, float, float] | None) -> dict[str, Any] | None:
            return None if x is None else {"observed": x[0], "expected": x[1], "p_value": x[2]}

        return {
            "status": self.status,
            "reason": self.reason,
            "cut": self.cut,
            "fitted_pairs": self.fitted_pairs,
            "window": part(self.window),
            "tail": part(self.tail),
            "test": "exact binomial tests at 5% (Bonferroni over the two): two-sided on the window "
            "between the threshold and the cut, one-sided for excess at or below the threshold",
            "distance_scale": self.scale,
            "fit": self.fit.to_dict() if self.fit is not None else None,
        }


def _choose_cut(h: npt.NDArray[np.int64], radius: int) -> int | None:
    """Smallest cut above the threshold whose window holds enough pairs to test the model."""
    n = int(h.sum())
    need = max(MIN_WINDOW_PAIRS, math.ceil(MIN_WINDOW_SHARE * n))
    cum = np.cumsum(h)
    for cut in range(radius + 1, len(h) - 1):
        if cum[cut] - cum[radius] >= need:
            return cut if n - int(cum[cut]) >= MIN_FIT_PAIRS else None
    return None


def _binom_p(k: int, n: int, p: float, alternative: str) -> float:
    return float(st.binomtest(k, n, min(max(p, 1e-300), 1.0), alternative=alternative).pvalue)


def calibrate(hist: npt.ArrayLike, radius: int) -> Calibration:
    """Fit above a cut; predict the pairs between the threshold and the cut and at or below the
    threshold; test both predictions against the counts."""
    h = np.asarray(hist, dtype=np.int64)
    n = int(h.sum())
    if n < MIN_FIT_PAIRS + MIN_WINDOW_PAIRS:
        return Calibration("not checked", f"only {n} unrelated pairs: too few to fit and test a tail model")
    scale = 2 if len(h) % 2 == 1 and int(h[1::2].sum()) == 0 else 1
    hs, r = (h[0::2], radius // 2) if scale == 2 else (h, radius)
    cut = _choose_cut(hs, r)
    if cut is None:
        return Calibration(
            "not checked", "no cut leaves enough pairs both below it (to test) and above it (to fit)"
        )
    fit = fit_above(hs, cut)
    in_window = int(hs[r + 1 : cut + 1].sum())
    p_window = fit.cdf(cut) - fit.cdf(r)
    in_tail = int(hs[: r + 1].sum())
    p_tail = fit.cdf(r)
    window = (in_window, n * p_window, _binom_p(in_window, n, p_window, "two-sided"))
    tail = (in_tail, n * p_tail, _binom_p(in_tail, n, p_tail, "greater"))
    status = "accepted" if min(window[2], tail[2]) >= ALPHA / 2 else "rejected"
    d = f"distance {cut * scale}"
    reason = (
        f"fitted on {n - in_window - in_tail:,} pairs above {d}; between the threshold and {d} it "
        f"predicts {window[1]:.3g} pairs, counted {in_window:,} (p = {window[2]:.2g}); at or below the "
        f"threshold it predicts {tail[1]:.3g}, counted {in_tail:,} (p = {tail[2]:.2g})"
    )
    return Calibration(status, reason, cut * scale, n - in_window - in_tail, window, tail, fit, scale)


def false_match_row(
    dist: dict[str, Any], kind: str, param: int, targets: tuple[float, ...]
) -> dict[str, Any]:
    """Measured rate, calibration check, model (if accepted) and pairs needed, for one hash and rule.

    ``kind`` "fuzzy": a pair matches within Hamming radius ``param``. ``kind`` "exact" with
    ``param`` = k probe bits: a probe can only hit an entry within k bits, so the count of pairs
    within k bits bounds the probe-match count from above (exactly equal for k = 0).
    """
    hist = dist["histogram"]
    meas = measured_pair_rate(hist, param)
    cal = calibrate(hist, param)
    model = cal.pair_rate(param) if kind == "fuzzy" else cal.probe_pair_rate(param, int(dist["bits"]))
    return {
        "algo": dist["algo"],
        "rule": f"within {param} bits" if kind == "fuzzy" else f"exact, {2**param} probe(s)",
        "kind": kind,
        "radius": int(param),
        "measured": meas,
        "upper95": meas["clopper_pearson"][1],
        "pairs": meas["n"],
        "label": f"upper bound from {meas['n']:,} pairs",
        "calibration": cal.to_dict(),
        "model_pair_rate": model,
        "pairs_needed": {f"{t:.0e}": pairs_needed(t) for t in targets},
    }
