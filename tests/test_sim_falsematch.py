"""False matches measured first: the per-pair bound, the pairs a corpus needs, and the tail model's
calibration check — accepted on distances the model describes, rejected once near-duplicates are planted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from blindmatch.sim.derive import calibrate, false_match_row, pairs_needed
from blindmatch.sim.derive.falsematch import fit_above, measured_pair_rate
from blindmatch.sim.stats import clopper_pearson
from scipy import stats as st

PDQ_BITS = 256


def _pdq_like(n: int, seed: int) -> np.ndarray:
    """Unrelated-pair distances as PDQ gives them: even, over-dispersed around 128."""
    rng = np.random.default_rng(seed)
    return 2 * st.betabinom.rvs(PDQ_BITS // 2, 150, 150, size=n, random_state=rng)


def _hist(d: np.ndarray, bits: int = PDQ_BITS) -> np.ndarray:
    return np.bincount(d, minlength=bits + 1)


def test_measured_rate_is_the_count_with_its_exact_interval() -> None:
    h = _hist(np.array([4, 10, 30, 31, 32, 128, 130, 140]))
    m = measured_pair_rate(h, 31)
    assert (m["k"], m["n"]) == (4, 8)
    assert m["clopper_pearson"] == list(clopper_pearson(4, 8))


def test_pairs_needed_matches_the_zero_count_bound() -> None:
    for target in (1e-3, 1e-6, 1e-9):
        n = pairs_needed(target)
        assert clopper_pearson(0, n)[1] <= target < clopper_pearson(0, n - 1)[1]
    assert math.isclose(pairs_needed(1e-6), 3.69e6, rel_tol=0.01)  # ≈ 3.7 / target
    # the example: 0 of 90,000 pairs bounds the rate only below about 4.1e-5
    assert math.isclose(clopper_pearson(0, 90_000)[1], 4.1e-5, rel_tol=0.01)
    with pytest.raises(ValueError):
        pairs_needed(0.0)


def test_truncated_fit_recovers_the_distribution() -> None:
    d = st.betabinom.rvs(64, 40, 40, size=50_000, random_state=np.random.default_rng(3))
    fit = fit_above(_hist(d, 64), 22)  # only the pairs above 22 are seen
    assert abs(fit.mean - 32) < 0.5
    assert fit.alpha is not None and 25 < fit.alpha < 70


def test_model_accepted_when_it_describes_the_corpus() -> None:
    accepted = 0
    for seed in range(10):
        cal = calibrate(_hist(_pdq_like(90_000, seed)), 31)
        accepted += cal.accepted
        assert cal.scale == 2  # even distances: the model describes d / 2
    assert accepted >= 8  # a 5% test accepts a correct model about 95% of the time
    cal = calibrate(_hist(_pdq_like(90_000, 0)), 31)
    assert cal.accepted, cal.reason
    assert cal.pair_rate(31) is not None and cal.pair_rate(31) < 1e-6
    assert cal.window is not None and cal.window[0] > 20


def test_model_rejected_with_planted_near_duplicates() -> None:
    """Two photographs of the same castle: a handful of unrelated pairs within the threshold."""
    d = _pdq_like(90_000, 0)
    clean = calibrate(_hist(d), 31)
    assert clean.accepted
    planted = np.concatenate([d, [8, 14, 20, 26]])  # 4 of 90,004 pairs are near-duplicates
    cal = calibrate(_hist(planted), 31)
    assert cal.status == "rejected", cal.reason
    assert cal.tail is not None and cal.tail[0] == 4 and cal.tail[1] < 0.01
    assert cal.pair_rate(31) is None and cal.probe_pair_rate(0, PDQ_BITS) is None
    row = false_match_row(
        {"algo": "pdq", "bits": PDQ_BITS, "histogram": _hist(planted).tolist()}, "fuzzy", 31, (1e-6,)
    )
    assert row["model_pair_rate"] is None and row["calibration"]["status"] == "rejected"
    assert row["measured"]["k"] == 4 and row["upper95"] == clopper_pearson(4, 90_004)[1]
    assert row["label"] == "upper bound from 90,004 pairs"


def test_model_rejected_when_the_bulk_shape_is_wrong() -> None:
    """A mixture the beta-binomial cannot follow fails the window test even with no pair in the tail."""
    rng = np.random.default_rng(5)
    d = np.concatenate(
        [
            st.betabinom.rvs(256, 400, 400, size=80_000, random_state=rng),
            st.betabinom.rvs(256, 30, 50, size=10_000, random_state=rng),
        ]
    )
    d = d[d > 40]
    cal = calibrate(_hist(d), 31)
    assert cal.status == "rejected", cal.reason
    assert cal.window is not None and cal.window[2] < 0.025


def test_too_few_pairs_are_not_checked() -> None:
    cal = calibrate(_hist(_pdq_like(40, 1)), 31)
    assert cal.status == "not checked" and cal.pair_rate(31) is None
    empty = calibrate(np.zeros(PDQ_BITS + 1, dtype=np.int64), 31)
    assert empty.status == "not checked"


def test_exact_rule_counts_pairs_within_the_probe_bits() -> None:
    d = np.concatenate([_pdq_like(20_000, 2), [0, 2, 4, 6]])
    dist = {"algo": "pdq", "bits": PDQ_BITS, "histogram": _hist(d).tolist()}
    k0 = false_match_row(dist, "exact", 0, (1e-6,))
    k4 = false_match_row(dist, "exact", 4, (1e-6,))
    assert k0["measured"]["k"] == 1 and k4["measured"]["k"] == 3
    assert k0["rule"] == "exact, 1 probe(s)" and k4["rule"] == "exact, 16 probe(s)"
