"""``he`` correctness: real TenSEAL/SEAL, real worker processes, no mocks.

Membership is "some set entry within Hamming distance r"; we check it against a
plaintext scan at distances r−1, r and r+1 (PDQ, r = 31), with Hypothesis over
random sets (pHash, r = 10, cheaper circuit), in both modes, bucketed and over
real HTTP, and check the noise budget left after the full circuit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blindmatch.protocol import (
    HammingIndex,
    HashSet,
    LocalTransport,
    ParameterError,
    Query,
    get_algo,
    get_protocol,
)
from blindmatch.protocol.hazmat.bfv import Bfv, get_param_set
from blindmatch.protocol.he import HEServer
from blindmatch.protocol.he._circuit import CircuitSpec, QueryEvaluator, check_noise, uniform_mod
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blindmatch.corpus import random_set

from . import _http
from .he_helpers import SERVER_LEARNS, at_distance, far_from, open_server

PLANTED = (30, 31, 32, 10, 20)  # r−1, r, r+1, and what JPEG q50 does to PDQ (≈10–20 bits)


@pytest.fixture(scope="module")
def pdq(tmp_path_factory: pytest.TempPathFactory):
    """300 random PDQ hashes plus entries planted at known distances from one query."""
    rng = np.random.default_rng(11)
    base = random_set(300, "pdq", seed=11)
    q = far_from(base, rng, 90)
    planted = [at_distance(q, d, rng) for d in PLANTED]
    hs = HashSet.from_values(base.algo, [*base.values(), *planted])
    srv = open_server(tmp_path_factory, hs, "pdq")
    yield hs, srv, q
    srv.close()


@pytest.fixture(scope="module")
def pdq_client(tmp_path_factory: pytest.TempPathFactory):
    return get_protocol("he").new_client(get_algo("pdq"), tmp_path_factory.mktemp("he-cli"), {})


@pytest.fixture(scope="module")
def phash(tmp_path_factory: pytest.TempPathFactory):
    hs = random_set(200, "phash", seed=5)
    srv = open_server(tmp_path_factory, hs, "phash")
    yield hs, srv
    srv.close()


def _truth(hs: HashSet, q, r: int) -> bool:
    return bool(HammingIndex(hs).within(q, r).size)


def test_pdq_threshold_boundary_and_perturbed_copies(pdq, pdq_client) -> None:
    """One query, planted entries at r−1, r, r+1, 10, 20: exactly four are within r = 31.

    The zero-slot count the client sees is the number of entries within r, so this
    checks each distance; hashes 10–20 bits away stand in for JPEG q50 copies until
    image hashing lands.
    """
    hs, srv, q = pdq
    assert srv.spec.radius == 31
    d = HammingIndex(hs).distances(q)
    assert sorted(d[d < 90].tolist()) == sorted(PLANTED)
    res = pdq_client.scan(Query(q), LocalTransport(srv))
    assert res.matched is True and res.extra["zero_slots"] == 4
    assert res.distance is None  # the client never learns a distance


def test_pdq_nearest_at_r_plus_one_does_not_match(pdq, pdq_client) -> None:
    hs, srv, _ = pdq
    rng = np.random.default_rng(12)
    r = srv.spec.radius
    q2 = at_distance(hs.value(5), r + 1, rng)
    assert HammingIndex(hs).nearest(q2)[1] == r + 1
    res = pdq_client.scan(Query(q2), LocalTransport(srv))
    assert res.matched is False is _truth(hs, q2, r)
    assert res.extra["zero_slots"] == 0


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(0, 20), n=st.integers(1, 40))
def test_member_iff_matched_phash(
    tmp_path_factory: pytest.TempPathFactory, seed: int, d: int, n: int
) -> None:
    """member ⇔ matched for random pHash sets and queries around the r = 10 boundary."""
    hs = random_set(n, "phash", seed=seed)
    rng = np.random.default_rng(seed)
    q = at_distance(hs.value(int(rng.integers(n))), d, rng)
    srv = _phash_server_for(tmp_path_factory, hs)
    try:
        cache = Path(tmp_path_factory.getbasetemp()) / "he-hyp-cli"
        client = get_protocol("he").new_client(hs.algo, cache, {})
        res = client.scan(Query(q), LocalTransport(srv))
        assert res.matched is _truth(hs, q, 10)
        assert res.extra["zero_slots"] == int(HammingIndex(hs).within(q, 10).size)
    finally:
        srv.close()


def _phash_server_for(tmp_path_factory: pytest.TempPathFactory, hs: HashSet) -> HEServer:
    return open_server(tmp_path_factory, hs, "phash")


def test_server_learns_records_verdict(phash, tmp_path: Path) -> None:
    hs, srv = phash
    rng = np.random.default_rng(8)
    client = get_protocol("he").new_client(hs.algo, tmp_path, SERVER_LEARNS)
    tr = LocalTransport(srv)
    before = len(srv.verdicts())
    m = client.scan(Query(at_distance(hs.value(4), 9, rng)), tr)
    n = client.scan(Query(far_from(hs, rng, 16)), tr)
    assert m.matched is None and n.matched is None  # the client learns nothing
    v = srv.verdicts()[before:]
    assert [x.matched for x in v] == [True, False]
    assert v[0].matches == 1 and v[1].matches == 0
    assert v[0].slots == 256  # 200 entries, PSI padded to 256 slots


def test_bucketed_query_scans_fewer_entries(pdq, tmp_path: Path) -> None:
    hs, srv, _ = pdq
    rng = np.random.default_rng(21)
    client = get_protocol("he").new_client(hs.algo, tmp_path, {"bucketed": True})
    tr = LocalTransport(srv)
    res = client.scan(Query(at_distance(hs.value(9), 5, rng)), tr)
    assert res.matched is True
    assert 0 < srv.last_stats["candidates"] < len(hs)
    assert srv.last_stats["bucketed"] is True


def test_keys_cached_between_queries(phash, tmp_path: Path) -> None:
    hs, srv = phash
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    tr = LocalTransport(srv)
    first = client.scan(Query(hs.value(0)), tr)
    second = client.scan(Query(hs.value(1)), tr)
    assert first.extra["keys_sent"] and not second.extra["keys_sent"]
    assert first.bytes_up > 10 * second.bytes_up  # keys ≈ 19 MB, a query ≈ 0.8 MB
    # the keys survive in the 0600 cache dir: a new client reuses them without uploading
    again = get_protocol("he").new_client(hs.algo, tmp_path, {})
    assert (tmp_path / "he").exists()
    for cache in srv.key_caches.values():  # server lost its cache (restart): client resends transparently
        cache.clear()
    res = again.scan(Query(hs.value(2)), tr)
    assert res.matched and res.extra["keys_sent"]


def test_noise_budget_after_full_circuit_pdq() -> None:
    """Default parameters, PDQ r=31: enough budget before flooding, > 0 after everything."""
    bfv = Bfv.create(get_param_set("bfv-n16384-v1"))
    rep = check_noise(bfv, CircuitSpec(256, 31, 32), seed=1)
    b = rep.budgets
    assert rep.depth == 5
    assert b["fresh"] > b["distance"] > b["zero_test"] > b["masked"] >= b["before_flood"]
    assert b["binarity"] > b["masked"]  # the binarity term is not what limits the budget here
    assert b["before_flood"] >= rep.required_before_flood + rep.margin == 65
    assert b["after_flood"] > 0


def test_level_schedule_drops_primes_not_noise_budget() -> None:
    """Products and the binarity term run on fewer primes, with the same answer and the same
    budget before flooding as the circuit with every stage on all six primes (pHash r=10)."""
    bfv = Bfv.create(get_param_set("bfv-n16384-v1"))
    spec = CircuitSpec(64, 10, 8)
    n, top = bfv.params.slots, bfv.params.data_primes
    keys = bfv.keygen(spec.galois_steps)
    evk = bfv.load_eval_keys(keys.public_blob, keys.relin_blob, keys.galois_blob, spec.galois_steps)
    dec = keys.decryptor()
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, 64).astype(np.uint8)
    rows = rng.integers(0, 2, (n, 64)).astype(np.uint8)
    for slot, dist in enumerate((0, 9, 10, 11)):
        rows[slot] = x
        rows[slot, rng.choice(64, dist, replace=False)] ^= 1
    real = np.ones(n, dtype=bool)
    query = bfv.load_ciphertext(keys.encrypt_symmetric(np.tile(x, n // 64).astype(np.int64)))
    rho = uniform_mod(n, bfv.params.plain_modulus, 1)
    seen: dict[bool, dict[str, tuple[int, int]]] = {}
    answers = {}
    for levels in (False, True):
        stages: dict[str, tuple[int, int]] = {}

        def probe(stage: str, ct: Any, stages: dict[str, tuple[int, int]] = stages) -> None:
            stages[stage] = (ct.coeff_modulus_size(), dec.invariant_noise_budget(ct))

        ev = QueryEvaluator(bfv, spec, evk, query, levels=levels, probe=probe)
        raw = ev.evaluate_group(rows, real, rho)
        answers[levels] = keys.decrypt(bfv.import_raw(raw, bfv.output_parms_id))[0] == 0
        seen[levels] = stages
    assert np.array_equal(answers[True], answers[False])
    assert answers[True][:4].tolist() == [True, True, True, False]
    assert seen[True]["before_flood"][1] == seen[False]["before_flood"][1] >= 65
    assert seen[False]["zero_test"][0] == seen[False]["binarity"][0] == top
    assert seen[True]["zero_test"][0] == top - 2 and seen[True]["binarity"][0] == top - 2


def test_parameters_too_small_fail_at_setup(tmp_path: Path) -> None:
    """bfv-n8192 suffices for the exact test only; a fuzzy radius must fail loudly."""
    bfv = Bfv.create(get_param_set("bfv-n8192-v1"))
    assert check_noise(bfv, CircuitSpec(256, 0, 32), seed=2).ok  # exact (SHA-256) fits
    with pytest.raises(ParameterError, match="too small"):  # budget exhausted
        check_noise(bfv, CircuitSpec(64, 10, 8), seed=3)
    hs = random_set(10, "phash", seed=1)
    with pytest.raises(ParameterError):
        get_protocol("he").open_server(hs, tmp_path, {"param_set": "bfv-n8192-v1", "workers": 1})


def test_exact_sha256_on_small_parameters(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    hs = random_set(50, "sha256", seed=9)
    srv = open_server(tmp_path_factory, hs, "sha256")
    try:
        assert srv.params.name == "bfv-n8192-v1" and srv.spec.radius == 0
        client = get_protocol("he").new_client(hs.algo, tmp_path, {})
        tr = LocalTransport(srv)
        assert client.scan(Query(hs.value(7)), tr).matched is True
        assert client.scan(Query(hs.value(7).flip([0])), tr).matched is False
    finally:
        srv.close()


def test_http_end_to_end(tmp_path: Path) -> None:
    """Real uvicorn on 127.0.0.1, real HTTP: params with ETag, keys once, both modes."""
    from blindmatch.client import HttpTransport
    from blindmatch.server import LiveServer, SetDir

    hs = random_set(100, "pdq", seed=4)
    SetDir.build(tmp_path / "set", hs.algo, hs.values(), ["test"])
    rng = np.random.default_rng(4)
    env = {"BLINDMATCH_PROTOCOLS": "he", "BLINDMATCH_ADMIN_TOKEN": "tok"}
    with LiveServer(tmp_path / "set", env=env, startup_timeout=300) as live:
        tr = HttpTransport(live.url, "he", timeout=300)
        client = get_protocol("he").new_client(hs.algo, tmp_path / "cli", {})
        sl = get_protocol("he").new_client(
            hs.algo, tmp_path / "cli", SERVER_LEARNS
        )
        assert client.scan(Query(at_distance(hs.value(1), 20, rng)), tr).matched is True
        assert client.scan(Query(far_from(hs, rng, 60)), tr).matched is False
        assert sl.scan(Query(hs.value(2)), tr).matched is None
        r = _http.get(live.url + "/v1/he/verdicts", headers={"authorization": "Bearer tok"})
        assert r.status_code == 200 and r.json()[-1]["matched"] is True
        p = _http.get(live.url + "/v1/he/params")
        again = _http.get(live.url + "/v1/he/params", headers={"if-none-match": p.headers["etag"]})
        assert again.status_code == 304
        tr.close()
