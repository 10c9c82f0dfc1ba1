"""A curious party (party 1) records everything it receives; its view must not depend on the hash.

Two statistics over the view, for a hash inside a cluster of set entries and for an
unrelated one:

* every field element party 1 receives during multiplications, against uniform;
* the natural attack on the first (squaring) round: party 1 holds w_1, w_2 and receives
  z_2 = w_2(w_2 + 2 w_0) + α_2; solving for w_0 gives w, hence the distance, unless α_2
  masks it. The solved distances must look uniform over the field and not differ
  between the two hashes (two-sample chi-square).

``test_detects_a_deliberate_leak`` runs the same statistics with the zero-sharing
switched off (unmasked products) and requires them to fire: the test can fail.

Count mode adds a learner who sees the three components of the count: with the
client's shares held fixed (a malicious client can choose them), each component must
still be uniform over repeated queries, so the components say nothing beyond their
sum (the count). Without the zero-sharing they are a fixed function of the shares
and the set.
"""

from __future__ import annotations

import numpy as np
import pytest
from blindmatch.protocol.mpc import _sharing
from blindmatch.protocol.mpc._circuit import SetColumns, column_tables, linear_component
from blindmatch.protocol.mpc._field import P
from blindmatch.protocol.mpc._sharing import share_vector
from scipy import stats

from .mpc_helpers import bits_of, run_three

RADIUS = 31
QUERIES = 6
BINS = 32


def _set_and_hashes(seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, 4, dtype=np.uint64) * 2
    near = np.repeat(a[None, :], 128, axis=0)
    flips = rng.integers(0, 64, (128, 4)).astype(np.uint64)
    near ^= np.uint64(1) << flips  # one bit per word: distance ≤ 4 from a
    words = np.concatenate([near, rng.integers(0, 2**63, (128, 4), dtype=np.uint64)])
    b = ~a
    return words, bits_of(a), bits_of(b)


def _party1_view(cols: SetColumns, x: np.ndarray, count: bool) -> tuple[np.ndarray, np.ndarray]:
    """(all multiplication elements party 1 received, the distances solved from round one)."""
    elements, solved = [], []
    for _ in range(QUERIES):
        comps = share_vector(x)
        run = run_three(cols, x, comps=comps, count=count)
        assert run.errors == [None, None, None]
        frames = [np.frombuffer(f, "<u2").astype(np.int64) for peer, f in run.views[1] if peer == 2]
        frames = frames[1:]  # frame 0 is the input check (digests), not field elements
        elements.append(np.concatenate(frames))
        w1 = linear_component(column_tables(comps[1]), cols.cols, None).astype(np.int64)
        w2 = linear_component(column_tables(comps[2]), cols.cols, None).astype(np.int64)
        z2 = frames[0]
        w0 = (z2 - w2 * w2) % P * pow_inv(2 * w2 % P) % P
        w = (w0 + w1 + w2) % P
        solved.append((w + RADIUS) * pow(2, P - 2, P) % P)
    return np.concatenate(elements), np.concatenate(solved)


def pow_inv(v: np.ndarray) -> np.ndarray:
    out = np.ones_like(v)
    base, e = v.copy(), P - 2
    while e:
        if e & 1:
            out = out * base % P
        base = base * base % P
        e >>= 1
    return out


def _statistics(count: bool = False) -> dict[str, float]:
    words, a, b = _set_and_hashes()
    cols = SetColumns.build(words, RADIUS)
    ea, sa = _party1_view(cols, a, count)
    eb, sb = _party1_view(cols, b, count)
    hist = lambda v: np.histogram(v, bins=BINS, range=(0, P))[0]  # noqa: E731
    # fine bins over the possible distances 0..256, one bin for the rest of the field
    near = lambda v: np.histogram(v, bins=[*range(0, 257, 8), P])[0]  # noqa: E731
    return {
        "uniform_elements_a": stats.chisquare(hist(ea)).pvalue,
        "uniform_elements_b": stats.chisquare(hist(eb)).pvalue,
        "uniform_solved_a": stats.chisquare(hist(sa)).pvalue,
        "uniform_solved_b": stats.chisquare(hist(sb)).pvalue,
        "same_solved_a_b": stats.chi2_contingency(np.stack([near(sa), near(sb)]) + 1).pvalue,
    }


@pytest.mark.parametrize("count", [False, True], ids=["any", "count"])
def test_curious_party_view_is_independent_of_the_hash(count: bool) -> None:
    pvalues = _statistics(count)
    # five tests at 1e-4 each: a false alarm has probability < 5e-4 per run
    assert min(pvalues.values()) > 1e-4, pvalues


def test_detects_a_deliberate_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unmasked products (no zero-sharing): the same statistics must reject."""
    monkeypatch.setattr(_sharing.PairKeys, "zero", lambda self, label, n: np.zeros(n, dtype=np.uint32))
    pvalues = _statistics()
    assert pvalues["uniform_solved_a"] < 1e-6 and pvalues["same_solved_a_b"] < 1e-6, pvalues


LEARNER_RUNS = 240  # 15 per bin of the uniformity test
LEAK_RUNS = 40  # an unmasked component repeats, which 40 runs reject as surely as 240


def _learner_components(runs: int = LEARNER_RUNS) -> np.ndarray:
    """Party 0's output component in count mode over repeated queries with the same client shares."""
    words, a, _ = _set_and_hashes()
    cols = SetColumns.build(words[120:140], RADIUS)  # 8 entries near a, 12 far: count 8
    comps = share_vector(a)
    out = []
    for _ in range(runs):
        run = run_three(cols, a, comps=comps, count=True)
        assert run.errors == [None, None, None] and int(run.opened[0]) == 8
        assert run.outputs[0] is not None
        out.append(int(run.outputs[0][0]))
    return np.array(out)


def test_count_learner_sees_uniform_components() -> None:
    hist = np.histogram(_learner_components(), bins=16, range=(0, P))[0]
    assert stats.chisquare(hist).pvalue > 1e-4, hist


def test_count_learner_test_detects_unmasked_components(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sharing.PairKeys, "zero", lambda self, label, n: np.zeros(n, dtype=np.uint32))
    hist = np.histogram(_learner_components(LEAK_RUNS), bins=16, range=(0, P))[0]
    assert stats.chisquare(hist).pvalue < 1e-6, hist
