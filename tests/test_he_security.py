"""``he`` privacy claims and hostile input, tested on the real implementation.

* The decrypting client's view depends only on the number of matching entries:
  not on which entry matched, nor on any distance (slot values, zero positions,
  noise left after flooding).
* server-learns: the client's decryptions are uniform whatever the verdict.
* Bad input is a typed error before or inside the isolated worker; a crashed,
  hung or memory-starved worker is a typed error and the server keeps serving.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from blindmatch.protocol import (
    BlindmatchError,
    BodyTooLargeError,
    DecodeError,
    DeserializeError,
    LengthError,
    LocalTransport,
    ParameterError,
    Query,
    Request,
    get_algo,
    get_protocol,
)
from blindmatch.protocol.hazmat.bfv import Bfv, get_param_set
from blindmatch.protocol.he import (
    HEClient,
    UnknownKeysError,
    UnknownSessionError,
    WorkerCrashedError,
    WorkerMemoryError,
    WorkerTimeoutError,
    WrongParametersError,
    secure_permutation,
    slot_layout,
)
from blindmatch.protocol.he._messages import (
    MODE_CLIENT,
    KeysMessage,
    ParamsMessage,
    PsiMessage,
    QueryMessage,
    ResultMessage,
    key_digest,
)

from blindmatch.corpus import random_set

from .he_helpers import SERVER_LEARNS, at_distance, far_from, open_server

T = 65537


class Spy(LocalTransport):
    """A real transport that also keeps the last result body (what the client decrypts)."""

    last: bytes = b""

    def request(self, method, path, body=b"", headers=None):  # type: ignore[no-untyped-def]
        rep = super().request(method, path, body, headers)
        if path == "query":
            self.last = rep.body
        return rep


def _client_slots(client: HEClient, body: bytes) -> tuple[np.ndarray, list[int]]:
    """Decrypt a result exactly as the client does; return slots and noise budgets left."""
    bfv, keys = client._bfv, client._keys
    assert bfv is not None and keys is not None
    res = ResultMessage.from_bytes(body, bfv.params.poly_degree, 64)
    out, budgets = [], []
    for raw in res.ciphertexts(bfv.params.poly_degree):
        vals, b = keys.decrypt(bfv.import_raw(raw, bfv.output_parms_id))
        out.append(vals)
        budgets.append(b)
    return np.concatenate(out), budgets


def _uniform_chi2(values: np.ndarray, bins: int = 32) -> float:
    counts = np.histogram(values, bins=bins, range=(1, T))[0]
    exp = values.size / bins
    return float(((counts - exp) ** 2 / exp).sum())


def test_client_view_independent_of_which_entry_and_distance(he_phash_server, tmp_path: Path) -> None:
    hs, srv = he_phash_server
    rng = np.random.default_rng(5)
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    tr = Spy(srv)
    scenarios = {
        "entry 0 at d=0": hs.value(0),
        "entry 77 at d=r": at_distance(hs.value(77), srv.spec.radius, rng),
        "entry 77 at d=r again": at_distance(hs.value(77), srv.spec.radius, rng),
    }
    zero_pos, nonzero = [], []
    for q in scenarios.values():
        assert client.scan(Query(q), tr).matched is True
        slots, budgets = _client_slots(client, tr.last)
        assert np.count_nonzero(slots == 0) == 1  # the count, nothing else
        zero_pos.append(int(np.flatnonzero(slots == 0)[0]))
        nz = slots[slots != 0]
        assert nz.min() >= 1 and nz.max() < T
        # 16383 values in 32 bins: χ²(31) has mean 31; 80 is beyond the 99.99th percentile
        assert _uniform_chi2(nz) < 80
        nonzero.append(nz)
        assert all(0 < b <= 4 for b in budgets)  # noise left is set by the flood, not the data
    assert len(set(zero_pos)) == 3  # fresh slot permutation per query (P[collision] < 1e-3)
    # non-matching scenarios: nearest entry at r+1 versus everything far away
    near = client.scan(Query(at_distance(hs.value(3), srv.spec.radius + 1, rng)), tr)
    s_near, _ = _client_slots(client, tr.last)
    far = client.scan(Query(far_from(hs, rng, 16)), tr)
    s_far, _ = _client_slots(client, tr.last)
    assert near.matched is False and far.matched is False
    assert np.count_nonzero(s_near == 0) == np.count_nonzero(s_far == 0) == 0
    h1 = np.histogram(s_near, bins=16, range=(1, T))[0]
    h2 = np.histogram(s_far, bins=16, range=(1, T))[0]
    chi = float((((h1 - h2) ** 2) / (h1 + h2)).sum())  # two-sample χ²(15)
    assert chi < 60


def test_results_are_rerandomised(he_phash_server, tmp_path: Path) -> None:
    hs, srv = he_phash_server
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    tr = Spy(srv)
    client.scan(Query(hs.value(5)), tr)
    a = tr.last
    client.scan(Query(hs.value(5)), tr)
    assert a != tr.last and len(a) == len(tr.last)


def test_slot_layout_position_is_uniform() -> None:
    """Where a given entry lands is uniform over all slots (spread layout)."""
    slots, trials = 64, 6400
    counts = np.zeros(slots)
    cands = np.arange(10, dtype=np.int64)
    for _ in range(trials):
        lay = slot_layout(cands, slots, compact=False)
        counts[int(np.flatnonzero(lay == 3)[0])] += 1
        assert sorted(lay[lay >= 0].tolist()) == list(range(10))
    chi = float(((counts - trials / slots) ** 2 / (trials / slots)).sum())
    assert chi < 130  # χ²(63): 99.99th percentile ≈ 117
    compact = slot_layout(cands, slots, compact=True)
    assert sorted(compact[:10].tolist()) == list(range(10)) and (compact[10:] == -1).all()
    p = secure_permutation(1000)
    assert sorted(p.tolist()) == list(range(1000))


def test_server_learns_client_view_is_uniform(he_phash_server, tmp_path: Path) -> None:
    """v_j = ρ_j·P + m_j: the client's decryptions look the same for member and non-member."""
    hs, srv = he_phash_server
    rng = np.random.default_rng(9)
    client = get_protocol("he").new_client(hs.algo, tmp_path, SERVER_LEARNS)
    tr = Spy(srv)
    views = []
    for q in (hs.value(1), far_from(hs, rng, 16)):
        assert client.scan(Query(q), tr).matched is None
        slots, _ = _client_slots(client, tr.last)
        used = ResultMessage.from_bytes(tr.last, 16384, 64).used_slots
        views.append(slots[:used])
        assert _uniform_chi2(slots[slots != 0]) < 80
    assert np.count_nonzero(views[0] == 0) <= 2 and np.count_nonzero(views[1] == 0) <= 2
    assert [v.matched for v in srv.verdicts()[-2:]] == [True, False]


# ------------------------------------------------------------------- hostile input


def _query_parts(client: HEClient, srv, q) -> QueryMessage:
    """A well-formed query from a real client (keys included), to be mutated."""
    tr = LocalTransport(srv)
    client.scan(Query(q), tr)  # sets up params and keys
    keys = client._keys
    assert keys is not None and client._bfv is not None
    ct = keys.encrypt_symmetric(np.tile(q.bits().astype(np.int64), 16384 // 64))
    p = client._params
    assert p is not None
    return QueryMessage(p.param_set, p.algo_id, MODE_CLIENT, client._digest, client._keys_bytes, ct)


def _post(srv, body: bytes):
    return LocalTransport(srv).post("query", body)


def test_bad_queries_are_typed_errors(he_phash_server, tmp_path: Path) -> None:
    hs, srv = he_phash_server
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    good = _query_parts(client, srv, hs.value(0))
    assert _post(srv, good.to_bytes()).status == 200

    def mutate(**kw: object) -> bytes:
        d = dict(good.__dict__)
        d.update(kw)
        return QueryMessage(**d).to_bytes()  # type: ignore[arg-type]

    ct = good.ciphertext
    cases = {
        "truncated message": (good.to_bytes()[:-7], LengthError),
        "truncated ciphertext": (mutate(ciphertext=ct[: len(ct) // 2]), LengthError),
        "ciphertext size field lies": (mutate(ciphertext=ct + b"\x00" * 8), LengthError),
        "not SEAL": (mutate(ciphertext=b"\x00" * 64), DecodeError),
        "wrong parameter set": (mutate(param_set=2), WrongParametersError),
        "wrong hash algorithm": (mutate(algo_id=1), WrongParametersError),
        "key digest mismatch": (mutate(digest=bytes(32)), DecodeError),
        "unknown cached keys": (mutate(keys=b"", digest=key_digest(b"other")), UnknownKeysError),
        "bucket ids for 64 tables": (mutate(bucket_ids=tuple(range(64))), BlindmatchError),
    }
    for name, (body, err) in cases.items():
        with pytest.raises(err):
            _post(srv, body)
        assert name
    with pytest.raises(BodyTooLargeError):
        LocalTransport(srv).post("query", b"\x01" * (srv.endpoints()[1].max_body + 1))


def test_corrupt_seal_bytes_rejected_in_worker(he_phash_server, tmp_path: Path) -> None:
    """Headers pass the server's pre-check; SEAL in the worker rejects the body."""
    hs, srv = he_phash_server
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    good = _query_parts(client, srv, hs.value(0))
    ct = bytearray(good.ciphertext)
    for i in range(40, len(ct), len(ct) // 5):
        ct[i] ^= 0xFF
    bad = QueryMessage(
        good.param_set, good.algo_id, good.mode, good.digest, b"", bytes(ct)
    ).to_bytes()
    with pytest.raises(DecodeError):
        _post(srv, bad)
    # a ciphertext under other parameters (N=8192) with a correct-looking header
    other = Bfv.create(get_param_set("bfv-n8192-v1")).keygen(())
    foreign = other.encrypt_symmetric(np.zeros(8192, dtype=np.int64))
    with pytest.raises(DecodeError):
        _post(srv, QueryMessage(
            good.param_set, good.algo_id, good.mode, good.digest, b"", foreign
        ).to_bytes())
    # keys for the wrong rotation steps are refused before use
    steps = Bfv.create(get_param_set("bfv-n16384-v1")).keygen((1, 2))
    keys = KeysMessage(steps.public_blob, steps.relin_blob, steps.galois_blob).to_bytes()
    with pytest.raises(DecodeError):
        _post(srv, QueryMessage(good.param_set, good.algo_id, good.mode, key_digest(keys), keys,
                                good.ciphertext).to_bytes())
    assert _post(srv, good.to_bytes()).status == 200  # still serving


def test_bad_psi_messages(he_phash_server, tmp_path: Path) -> None:
    hs, srv = he_phash_server
    tr = LocalTransport(srv)
    with pytest.raises(UnknownSessionError):
        tr.post("psi", PsiMessage(bytes(16), bytes(32), bytes(32)).to_bytes())
    with pytest.raises(LengthError):
        tr.post("psi", PsiMessage(bytes(15), bytes(32), bytes(32)).to_bytes())
    client = get_protocol("he").new_client(hs.algo, tmp_path, SERVER_LEARNS)
    spy = Spy(srv)
    client.scan(Query(hs.value(0)), spy)  # consumes its own session
    res = ResultMessage.from_bytes(spy.last, 16384, 64)
    with pytest.raises(UnknownSessionError):  # replay of a finished session
        n = res.used_slots
        tr.post("psi", PsiMessage(res.sid, bytes(32 * n), bytes(32 * n)).to_bytes())
    # a fresh session: identity elements and wrong counts are rejected
    body = _query_parts(client, srv, hs.value(0))
    body = QueryMessage(body.param_set, body.algo_id, 2, body.digest, b"", body.ciphertext)
    res = ResultMessage.from_bytes(_post(srv, body.to_bytes()).body, 16384, 64)
    with pytest.raises(LengthError):
        tr.post("psi", PsiMessage(res.sid, bytes(32), bytes(32)).to_bytes())
    body2 = QueryMessage(body.param_set, body.algo_id, 2, body.digest, b"", body.ciphertext)
    res = ResultMessage.from_bytes(_post(srv, body2.to_bytes()).body, 16384, 64)
    n = res.used_slots
    with pytest.raises(DeserializeError):
        tr.post("psi", PsiMessage(res.sid, bytes(32 * n), bytes(32 * n)).to_bytes())


def test_client_rejects_hostile_server_messages(he_phash_server, tmp_path: Path) -> None:
    hs, srv = he_phash_server
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    client.scan(Query(hs.value(0)), LocalTransport(srv))
    p = client._params
    assert p is not None
    weak = ParamsMessage(**{**p.__dict__, "primes": (p.primes[0] + 2, *p.primes[1:])})
    with pytest.raises(ParameterError):
        client._validate(weak)
    with pytest.raises(ParameterError):
        client._validate(ParamsMessage(**{**p.__dict__, "param_set": 99}))
    bfv = client._bfv
    assert bfv is not None
    raw = np.zeros((2, 2, 16384), dtype=np.uint64)
    raw[0, 0, 5] = bfv.output_primes[0]  # coefficient not reduced mod q
    with pytest.raises(DecodeError):
        bfv.import_raw(raw, bfv.output_parms_id)
    with pytest.raises(LengthError):
        ResultMessage.from_bytes(ResultMessage(1, 1, 0, 2, b"", b"\x00" * 100, b"").to_bytes(), 16384, 4)
    with pytest.raises(BlindmatchError):
        ResultMessage.from_bytes(ResultMessage(1, 9, 0, 2, b"", b"", b"").to_bytes(), 16384, 4)


# ------------------------------------------------------------------- isolation


def test_worker_crash_is_typed_and_server_recovers(he_phash_server, tmp_path: Path) -> None:
    hs, srv = he_phash_server
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    tr = LocalTransport(srv)
    client.scan(Query(hs.value(0)), tr)  # warm: keys cached, worker running
    pid = srv.pool.pids()[0]

    def kill_soon() -> None:
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill_soon).start()
    with pytest.raises(WorkerCrashedError):
        client.scan(Query(hs.value(1)), tr)
    assert client.scan(Query(hs.value(1)), tr).matched is True
    assert srv.pool.pids()[0] != pid


def test_worker_ended_by_its_cpu_cap_is_a_timeout(he_phash_server, tmp_path: Path) -> None:
    """A worker the kernel ends for its CPU cap (SIGXCPU) overran: a timeout, not a crash.

    The cap is a second beyond the wall-clock limit, so under load either can end a slow
    job first; both must give the same typed answer."""
    hs, srv = he_phash_server
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    tr = LocalTransport(srv)
    client.scan(Query(hs.value(0)), tr)
    pid = srv.pool.pids()[0]

    def cap_soon() -> None:
        time.sleep(0.3)
        os.kill(pid, signal.SIGXCPU)  # what RLIMIT_CPU sends

    threading.Thread(target=cap_soon).start()
    with pytest.raises(WorkerTimeoutError):
        client.scan(Query(hs.value(1)), tr)
    assert client.scan(Query(hs.value(1)), tr).matched is True


def test_worker_timeout_is_typed_and_server_recovers(he_phash_server, tmp_path: Path) -> None:
    hs, srv = he_phash_server
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    tr = LocalTransport(srv)
    client.scan(Query(hs.value(0)), tr)
    base, per = srv.timeout_base, srv.timeout_per_group
    srv.timeout_base, srv.timeout_per_group = 0.2, 0.0
    try:
        with pytest.raises(WorkerTimeoutError):
            client.scan(Query(hs.value(1)), tr)
    finally:
        srv.timeout_base, srv.timeout_per_group = base, per
    assert client.scan(Query(hs.value(1)), tr).matched is True


def test_worker_memory_cap_is_typed(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """A worker capped below what SEAL needs for the keys fails cleanly, not the server.

    Python allocations raise MemoryError (→ WorkerMemoryError); SEAL may instead spin
    when malloc fails under RLIMIT_AS, which the CPU cap / wall-clock timeout end.
    """
    hs = random_set(20, "phash", seed=2)
    srv = open_server(
        tmp_path_factory, hs, "phash", worker_memory_mb=260, worker_timeout_s=8,
        worker_timeout_per_group_s=0,
    )
    try:
        client = get_protocol("he").new_client(hs.algo, tmp_path, {})
        with pytest.raises((WorkerMemoryError, WorkerCrashedError, WorkerTimeoutError)):
            client.scan(Query(hs.value(0)), LocalTransport(srv))
        srv.timeout_base = 120
        srv.pool.memory_mb = 0  # lift the cap: the same server now answers
        srv.pool.restart()
        assert client.scan(Query(hs.value(0)), LocalTransport(srv)).matched is True
    finally:
        srv.close()


def test_params_etag(he_phash_server) -> None:
    _, srv = he_phash_server
    ep = {e.path: e for e in srv.endpoints()}["params"]
    first = ep.handler(Request())
    again = ep.handler(Request(headers={"if-none-match": first.headers["etag"]}))
    assert first.status == 200 and again.status == 304 and again.body == b""
    assert ParamsMessage.from_bytes(first.body).radius == 10
    assert get_algo("phash").default_threshold == 10


def test_params_golden_bytes() -> None:
    """he params, type 7 (psi_slots added); the type-1 encoding before it fails closed."""
    m = ParamsMessage(1, 3, 10, 64, 8, 3, True, 16384, 65537, (2, 3), 1, ((0, 1), (2, 3)), 256)
    core = (
        "0000000a0103000a00400008030100"  # param set, algo, r, bits, baby, modes, LSH flag
        "00001d00004000000000000001000102000000000000000200000000000000030000000400000001"
        "000000060202000102030000000400000100"
    )
    assert m.to_bytes().hex() == "01040705" + core
    assert ParamsMessage.from_bytes(m.to_bytes()) == m
    # type 1 (until the server-learns slot cap): same first four fields, no psi_slots
    v1 = bytes.fromhex(
        "010401040000000a0103000a0040000803010000001d0000400000000000000100010200000000000000"
        "020000000000000003000000040000000100000006020200010203"
    )
    with pytest.raises(DecodeError):
        ParamsMessage.from_bytes(v1)
