"""Bit-sampling LSH for bucketed ``he`` queries: recall, cost saved, and exactly what leaks.

Candidate selection is plaintext, so recall against the exact scan is measured
here on many queries without HE; test_he.py runs a bucketed query end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
from blindmatch.protocol import InputError, ParameterError
from blindmatch.protocol.he._lsh import LshIndex, LshParams, collision_probability, recall_bound


def _bits(rng: np.random.Generator, n: int, bits: int = 256) -> np.ndarray:
    return rng.integers(0, 2, (n, bits)).astype(np.uint8)


def test_positions_spread_and_valid() -> None:
    p = LshParams.generate(256, 6, 8)
    assert p.k == 6 and p.tables == 8
    assert len(p.revealed_positions()) == 48  # k·L ≤ 256: tables sample disjoint positions
    assert all(len(set(r)) == 6 for r in p.positions)
    with pytest.raises(ParameterError):
        LshParams(256, ((1, 1, 2),))
    with pytest.raises(ParameterError):
        LshParams(64, ((70,),))
    with pytest.raises(ParameterError):
        LshParams.generate(256, 30, 8)


def test_bucket_ids_reveal_exactly_the_sampled_bits() -> None:
    """Flipping an unsampled bit never changes a bucket id; flipping a sampled bit does."""
    rng = np.random.default_rng(1)
    p = LshParams.generate(256, 6, 8)
    x = _bits(rng, 1)
    ids = p.bucket_ids(x)[0]
    sampled = set(p.revealed_positions())
    for pos in range(256):
        y = x.copy()
        y[0, pos] ^= 1
        changed = p.bucket_ids(y)[0] != ids
        assert changed.any() == (pos in sampled)
    # and the ids are those bits, verbatim
    t0 = p.positions[0]
    assert ids[0] == int("".join(str(int(x[0, i])) for i in t0), 2)


def test_recall_matches_theory_and_cost_is_saved() -> None:
    rng = np.random.default_rng(2)
    n, k, tables, queries = 20000, 6, 8, 400
    p = LshParams.generate(256, k, tables)
    data = _bits(rng, n)
    idx = LshIndex(p, data)
    for d in (10, 20, 31):
        hits, cand = 0, 0
        for _ in range(queries):
            j = int(rng.integers(n))
            q = data[j].copy()
            q[rng.choice(256, d, replace=False)] ^= 1
            c = idx.candidates([int(v) for v in p.bucket_ids(q[None, :])[0]])
            hits += int(j in set(c.tolist()))
            cand += c.size
        recall, expect = hits / queries, recall_bound(256, k, tables, d)
        assert abs(recall - expect) < 0.04, (d, recall, expect)
        # uniform hashes: each table keeps ~1/2^k of the set
        assert cand / queries < n * (1 - (1 - 2**-k) ** tables) * 1.15
    assert recall_bound(256, 6, 8, 31) > 0.99
    assert collision_probability(256, 6, 300) == 0.0


def test_candidates_validate_ids() -> None:
    p = LshParams.generate(64, 4, 6)
    idx = LshIndex(p, _bits(np.random.default_rng(3), 100, 64))
    with pytest.raises(InputError):
        idx.candidates([0] * 5)
    with pytest.raises(InputError):
        idx.candidates([16] * 6)
    assert idx.candidates([0] * 6).dtype == np.int64
