"""The simulator's verification of decision functions against real protocol halves.

``plain`` exercises the client-verdict path in process and over a real uvicorn
server. The server-reveal path (threshold protocols such as ``tpsi``) is
exercised with ``RevealPlain``: a small but complete server-learns protocol
defined in sim_test_protocols.py — the client sends its hash, account and associated data; the
server answers nothing useful and reveals an account's matching associated data
once it has seen ``threshold`` matches. It is registered only for these tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blindmatch.protocol import REGISTRY, Protocol, get_algo
from blindmatch.sim.config import load_config
from blindmatch.sim.decide.accuracy import QueryPool
from blindmatch.sim.decide.database import build_set_dir, filler_hashes
from blindmatch.sim.decide.rules import nearest_distances, to_words
from blindmatch.sim.decide.variants import Variant, protocol_variants
from blindmatch.sim.verify.checks import choose_sample, verify_protocol
from blindmatch.sim.verify.oracle import SimQuery, local_session, real_verdicts

from tests.sim_test_protocols import LogPlain, RevealPlain, registered


@pytest.fixture
def reveal_protocol() -> Iterator[Protocol]:
    p = RevealPlain()
    with registered(p):
        yield p


def _cfg() -> dict[str, Any]:
    """The quick configuration without dihedral variants: these pools are hashes, not images."""
    cfg = load_config(quick=True)
    cfg["variants"]["dihedral"] = False
    return cfg


def _pool(algo_name: str = "pdq", seed: int = 3, known: int = 20, size: int = 200) -> QueryPool:
    """A small synthetic pool: known hashes, copies at set distances, random negatives."""
    algo = get_algo(algo_name)
    rng = np.random.default_rng(seed)
    known_rows = rng.integers(0, 256, (known, algo.nbytes), dtype=np.uint8)
    filler = filler_hashes(algo, size - known, seed)
    pos = []
    for i in range(known):
        for dist in (
            0,
            5,
            algo.default_threshold - 1,
            algo.default_threshold,
            algo.default_threshold + 1,
            60,
        ):
            bits = np.unpackbits(known_rows[i]).copy()
            flip = rng.choice(algo.bits, dist, replace=False)
            bits[flip] ^= 1
            pos.append(np.packbits(bits))
    neg = rng.integers(0, 256, (40, algo.nbytes), dtype=np.uint8)
    raw = np.concatenate([np.array(pos), neg])
    rows = np.concatenate([known_rows, filler])
    nearest = nearest_distances(to_words(rows), to_words(raw))
    n = raw.shape[0]
    return QueryPool(
        algo_name,
        raw,
        None,
        np.full(n, -1, np.int16),
        np.arange(n) < len(pos),
        np.where(np.arange(n) < len(pos), 1, -1).astype(np.int64),
        np.zeros(n, bool),
        nearest,
        np.zeros(len(pos), np.uint16),
        np.zeros((40, 1), np.uint16),
        known_rows,
        filler,
        [size],
        size,
    )


def _with_verdicts(pool: QueryPool, variants: list[Variant]) -> QueryPool:
    for v in variants:
        pool.verdicts[v.label] = pool.nearest_verify <= v.decision(get_algo(pool.algo)).radius
    return pool


def _verify(
    proto: Protocol,
    variants: list[Variant],
    pool: QueryPool,
    cfg: dict[str, Any],
    tmp: Path,
    http: bool = False,
) -> list[dict[str, Any]]:
    """verify_protocol on PDQ with one worker over the pool's two perturbations."""
    return verify_protocol(proto, variants, "pdq", pool, cfg, tmp, 1, http=http, pert_names=["identity", "x"])


def test_sample_prefix_mixes_matches_and_non_matches() -> None:
    cfg = _cfg()
    v = protocol_variants(REGISTRY["plain"], cfg)[0]
    pool = _with_verdicts(_pool(), [v])
    idx = choose_sample(pool, v, 12, np.random.default_rng(0))
    assert len(idx) == len(set(idx)) == 12
    verd = pool.verdicts[v.label]
    assert verd[idx[0]] != verd[idx[1]]  # the first two already cover both outcomes
    assert {bool(verd[i]) for i in idx[:4]} == {True, False}
    assert idx == choose_sample(pool, v, 12, np.random.default_rng(0))


def test_plain_verified_in_process(tmp_path: Path) -> None:
    cfg = _cfg()
    variants = protocol_variants(REGISTRY["plain"], cfg)
    pool = _with_verdicts(_pool(), variants)
    recs = _verify(REGISTRY["plain"], variants, pool, cfg, tmp_path)
    (r,) = recs
    assert r["verified"] and r["verdict_source"] == "client"
    assert r["local"]["agree"] == r["local"]["n"] > 0 and r["local"]["disagree"] == 0


def test_wrong_decision_function_is_caught(tmp_path: Path) -> None:
    """A decision function with the wrong radius must fail verification, not pass silently."""
    cfg = _cfg()
    (v,) = protocol_variants(REGISTRY["plain"], cfg)
    pool = _pool()
    pool.verdicts[v.label] = pool.nearest_verify <= 3  # plain really uses radius 31
    (r,) = _verify(REGISTRY["plain"], [v], pool, cfg, tmp_path)
    assert not r["verified"]
    assert r["local"]["disagree"] > 0
    d = r["local"]["disagreements"][0]
    assert d["expected"] is False and d["protocol_said"] is True and 3 < d["nearest_distance"] <= 31


def test_plain_verified_over_http(tmp_path: Path) -> None:
    cfg = _cfg()
    cfg["accuracy"]["verify_http"] = 4
    variants = protocol_variants(REGISTRY["plain"], cfg)
    pool = _with_verdicts(_pool(), variants)
    (r,) = _verify(REGISTRY["plain"], variants, pool, cfg, tmp_path, http=True)
    assert r["http"] is not None and r["http"]["source"] == "client", r["http"]
    assert r["http"]["agree"] == r["http"]["n"] > 0
    assert r["verified"]


def test_server_reveal_path_reads_verdicts_after_threshold(tmp_path: Path, reveal_protocol: Protocol) -> None:
    cfg = _cfg()
    cfg["protocols"]["test-reveal"] = {"server_options": {"threshold": 3}}
    variants = protocol_variants(reveal_protocol, cfg)
    (v,) = variants
    assert v.learner == "server" and v.threshold == 3
    pool = _with_verdicts(_pool(), variants)
    (r,) = _verify(reveal_protocol, variants, pool, cfg, tmp_path)
    assert r["verdict_source"] == "server-reveal", r
    assert r["verified"] and r["local"]["agree"] == r["local"]["n"] > 0


def test_server_reveal_without_primers_revealed_is_unavailable(
    tmp_path: Path, reveal_protocol: Protocol
) -> None:
    """If the threshold is never reached, nothing is guessed: the verdicts are unavailable."""
    cfg = _cfg()
    cfg["protocols"]["test-reveal"] = {"server_options": {"threshold": 3}}
    (v,) = protocol_variants(reveal_protocol, cfg)
    # the server needs 1000 matches, the simulator primes only the configured 3
    v2 = Variant(
        v.protocol,
        v.label,
        v.learner,
        v.matching,
        v.client_options,
        {"threshold": 1000},
        {},
        0,
        None,
        3,
    )
    pool = _with_verdicts(_pool(), [v2])
    sd = build_set_dir(tmp_path / "set", get_algo("pdq"), pool.rows(pool.verify_size), "t")
    with local_session(reveal_protocol, sd, v2) as sess:
        primers = [SimQuery(-1 - j, pool.known_rows[j].tobytes()) for j in range(3)]
        qs = [SimQuery(i, pool.raw[i].tobytes()) for i in range(6)]
        out = real_verdicts(
            sess, v2, get_algo("pdq"), qs, primers, "acct", tmp_path / "c", 30.0
        )
    assert out.source == "unavailable"
    assert all(x is None for x in out.verdicts)


def test_server_verdict_log_path(tmp_path: Path) -> None:
    """A server-learns protocol that keeps an ordered verdict log (like he) is read through it."""
    p = LogPlain()
    with registered(p):
        cfg = _cfg()
        variants = protocol_variants(p, cfg)
        (v,) = variants
        assert v.learner == "server" and v.threshold == 0
        pool = _with_verdicts(_pool(), variants)
        (r,) = _verify(p, variants, pool, cfg, tmp_path)
    assert r["verdict_source"] == "server-log", r
    assert r["verified"] and r["local"]["agree"] == r["local"]["n"] > 0
