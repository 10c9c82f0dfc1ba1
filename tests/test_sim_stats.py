"""Interval estimates, distribution fits and the extrapolation models, against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from blindmatch.sim.cost.capacity import cores_needed, fit_linear, qps_per_core
from blindmatch.sim.cost.netmodel import LatencyInputs, NetworkProfile, simulate
from blindmatch.sim.derive.population import (
    account_flag_probability,
    exact_probe_pair_rate,
    fmr_for_set,
)
from blindmatch.sim.stats import clopper_pearson, fit_beta_binomial, rate, wilson
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import stats as st
from scipy.stats import binomtest

# Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 17 (1998),
# Table I: method 3 (Wilson score, no continuity correction) and method 5 (Clopper–Pearson).
NEWCOMBE = [
    # k, n, wilson low, wilson high, exact low, exact high
    (81, 263, 0.2553, 0.3662, 0.2527, 0.3676),
    (15, 148, 0.0624, 0.1605, 0.0578, 0.1617),
    (0, 20, 0.0000, 0.1611, 0.0000, 0.1684),
    (1, 29, 0.0061, 0.1718, 0.0009, 0.1776),
]


@pytest.mark.parametrize(("k", "n", "wl", "wh", "el", "eh"), NEWCOMBE)
def test_intervals_match_newcombe_table(k: int, n: int, wl: float, wh: float, el: float, eh: float) -> None:
    lo, hi = wilson(k, n)
    assert (round(lo, 4), round(hi, 4)) == (wl, wh)
    lo, hi = clopper_pearson(k, n)
    assert (round(lo, 4), round(hi, 4)) == (el, eh)


@settings(max_examples=60, deadline=None)
@given(hst.integers(1, 2000).flatmap(lambda n: hst.tuples(hst.integers(0, n), hst.just(n))))
def test_intervals_agree_with_scipy(kn: tuple[int, int]) -> None:
    k, n = kn
    r = binomtest(k, n)
    w = r.proportion_ci(method="wilson")
    e = r.proportion_ci(method="exact")
    assert wilson(k, n) == pytest.approx((w.low, w.high), abs=1e-9)
    assert clopper_pearson(k, n) == pytest.approx((e.low, e.high), abs=1e-9)
    lo, hi = wilson(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_rate_edge_cases() -> None:
    r = rate(0, 0)
    assert r["rate"] is None and r["wilson"] == [0.0, 1.0]
    with pytest.raises(ValueError):
        wilson(5, 4)
    with pytest.raises(ValueError):
        clopper_pearson(-1, 4)
    r = rate(3, 10)
    assert r["k"] == 3 and r["n"] == 10 and r["rate"] == pytest.approx(0.3)


def test_beta_binomial_fit_recovers_binomial_and_overdispersion() -> None:
    rng = np.random.default_rng(0)
    fair = rng.binomial(256, 0.5, 200_000)
    fit = fit_beta_binomial(fair, 256)
    assert fit.rho < 1e-3
    assert fit.cdf(100) == pytest.approx(st.binom.cdf(100, 256, 0.5), rel=0.3)
    # over-dispersed: p itself varies between pairs
    ps = rng.beta(40, 40, 200_000)
    over = rng.binomial(256, ps)
    fit = fit_beta_binomial(over, 256)
    assert fit.alpha == pytest.approx(40, rel=0.1) and fit.beta == pytest.approx(40, rel=0.1)
    assert fit.cdf(80) > 100 * st.binom.cdf(80, 256, 0.5)  # heavier tail than the fair coin


def test_fmr_for_set_is_stable_for_tiny_rates() -> None:
    assert fmr_for_set(1e-30, 1e6) == pytest.approx(1e-24, rel=1e-9)
    assert fmr_for_set(0.5, 1) == pytest.approx(0.5)
    assert fmr_for_set(1e-3, 1000) == pytest.approx(1 - (1 - 1e-3) ** 1000)
    assert fmr_for_set(0.0, 1e6) == 0.0 and fmr_for_set(1.0, 10) == 1.0


def test_exact_probe_rate_under_the_fair_coin() -> None:
    fit = fit_beta_binomial(np.random.default_rng(1).binomial(64, 0.5, 100_000), 64)
    if fit.alpha is not None:  # tiny sampling over-dispersion: use the exact binomial for this check
        fit = type(fit)(64, 32.0, 4.0, 0.0, None, None)
    assert exact_probe_pair_rate(fit, 0) == pytest.approx(2.0**-64, rel=1e-9)
    assert exact_probe_pair_rate(fit, 4) == pytest.approx(
        16 * 2.0**-64, rel=1e-9
    )  # 2^k equally likely points


def test_account_flag_probability() -> None:
    # P(X >= 1) = 1 - (1 - p)^n exactly
    fp = account_flag_probability(1000, 1e-4, 1)
    assert fp.binomial == pytest.approx(1 - (1 - 1e-4) ** 1000, rel=1e-9)
    assert fp.poisson == pytest.approx(1 - math.exp(-0.1), rel=1e-9)
    # Apple-style regime: tiny and still representable in log space
    fp = account_flag_probability(10_000, 1e-6, 30)
    lead = 30 * math.log10(0.01) - math.lgamma(31) / math.log(10)  # λ^t / t!, λ = n·p = 0.01
    assert fp.log10_binomial == pytest.approx(lead, abs=0.05)
    assert fp.log10_poisson == pytest.approx(fp.log10_binomial, abs=0.05)
    assert account_flag_probability(10, 0.0, 3).binomial == 0.0
    assert account_flag_probability(10, 0.1, 0).binomial == 1.0
    # monotone in t
    ps = [account_flag_probability(5000, 1e-3, t).binomial for t in (1, 2, 5, 10)]
    assert ps == sorted(ps, reverse=True)


def test_capacity_model() -> None:
    fit = fit_linear([1000, 10000, 100000], [1.0, 1.9, 10.9])
    assert fit.a == pytest.approx(0.9, abs=0.05) and fit.b == pytest.approx(1e-4, rel=0.05)
    assert not fit.extrapolated(100000) and fit.extrapolated(1e6)
    assert fit_linear([1000], [2.0]).at(1e6) == 2.0
    # 8.64e6 images/day = 100/s mean, 300/s peak at 10 ms = 3 cores busy, 5 at 60% utilisation
    assert cores_needed(8.64e6, 10.0, 3.0, 0.6) == 5
    assert qps_per_core(4.0) == 250.0


def test_latency_model_without_jitter_is_exact() -> None:
    prof = NetworkProfile("x", rtt_ms=100.0, down_mbps=8.0, up_mbps=1.0, jitter_ms=0.0)
    inp = LatencyInputs(np.array([5.0]), np.array([2.0]), np.array([1.0]), 2.0, 1000.0, 1000.0, 1_000_000.0)
    r = simulate(prof, inp, 100, np.random.default_rng(0))
    up = (1000 + 2 * 350) * 8 / 1e6 * 1000
    down = (1000 + 2 * 250) * 8 / 8e6 * 1000
    assert r["p50_ms"] == pytest.approx(5 + 2 + 1 + 200 + up + down)
    assert r["p99_ms"] == pytest.approx(r["p50_ms"])
    assert r["cold_p50_ms"] == pytest.approx(r["p50_ms"] + 200 + 1e6 * 8 / 8e6 * 1000, rel=1e-6)


def test_latency_jitter_only_adds_delay() -> None:
    base = NetworkProfile("a", 50.0, 10.0, 10.0, 0.0)
    jit = NetworkProfile("b", 50.0, 10.0, 10.0, 20.0)
    inp = LatencyInputs(np.array([1.0, 2.0]), np.array([1.0]), np.array([1.0]), 1.0, 100.0, 100.0, 0.0)
    a = simulate(base, inp, 2000, np.random.default_rng(1))
    b = simulate(jit, inp, 2000, np.random.default_rng(1))
    assert b["p50_ms"] > a["p50_ms"] and b["p99_ms"] > b["p95_ms"] > b["p50_ms"]
