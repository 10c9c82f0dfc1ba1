"""The ``oprf`` protocol end to end (in process): correctness, verification, privacy."""

from __future__ import annotations

import contextlib
import math
import os
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from blindmatch.protocol import (
    REGISTRY,
    BatchTooLargeError,
    CorruptStoreError,
    DecodeError,
    DeserializeError,
    DigestMismatchError,
    HashSet,
    HashValue,
    InsecureKeyFileError,
    LengthError,
    LocalTransport,
    ProbeError,
    Query,
    Request,
    SignatureError,
    Transport,
    TransportReply,
    UnknownEpochError,
    VerifyError,
    get_algo,
)
from blindmatch.protocol.hazmat import ristretto as R
from blindmatch.protocol.hazmat.voprf import Proof, VOPRFClient
from blindmatch.protocol.multiprobe import least_stable_bits, probe_hashes
from blindmatch.protocol.oprf import (
    EvaluateRequest,
    EvaluateResponse,
    Manifest,
    OprfServer,
    describe_state,
    rotate_epoch,
)
from blindmatch.protocol.wire import decode_fields, encode_fields
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blindmatch.corpus import random_set

PDQ = get_algo("pdq")
OPRF = REGISTRY["oprf"]
P = 2**255 - 19


Rewrite = Callable[[str, str, TransportReply], TransportReply]


class Tap(Transport):
    """Records every request and optionally rewrites responses (a hostile network/server)."""

    def __init__(self, inner: Transport, rewrite: Rewrite | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.rewrite = rewrite
        self.log: list[tuple[str, str, bytes, dict[str, str]]] = []

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        self.log.append((method, path, body, dict(headers or {})))
        rep = self.inner.request(method, path, body, headers)
        if self.rewrite is not None:
            rep = self.rewrite(method, path, rep)
        self.bytes_up += len(body)
        self.bytes_down += len(rep.body)
        return rep


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[HashSet, OprfServer, Path]:
    hs = random_set(64, seed=1)
    state = tmp_path_factory.mktemp("oprf-state")
    srv = OPRF.open_server(hs, state, {"max_batch": 300})
    assert isinstance(srv, OprfServer)
    return hs, srv, state


def _client(tmp: Path | None, **opts: object):  # type: ignore[no-untyped-def]
    return OPRF.new_client(PDQ, tmp, opts)


# --------------------------------------------------------------------------- correctness


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=12, unique=True),
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6),
)
def test_member_iff_matched(
    tmp_path_factory: pytest.TempPathFactory, members: list[bytes], others: list[bytes]
) -> None:
    d = tmp_path_factory.mktemp("prop")
    hs = HashSet.from_values(PDQ, [PDQ.from_bytes(m) for m in members])
    srv = OPRF.open_server(hs, d / "state", {"fpr": 2.0**-40})
    tr = LocalTransport(srv)
    client = _client(d / "cache")
    queries = [Query(PDQ.from_bytes(x)) for x in members + others]
    results = client.scan_many(queries, tr)
    for q, r in zip(queries, results):
        assert r.matched == (q.hash.raw in set(members))
        assert r.distance == (0 if r.matched else None)
    # one-by-one agrees with the batch
    assert [client.scan(q, tr).matched for q in queries[:3]] == [r.matched for r in results[:3]]


def test_false_positives_within_configured_rate(tmp_path: Path) -> None:
    hs = random_set(300, seed=5)
    fpr = 2.0**-8
    srv = OPRF.open_server(hs, tmp_path / "state", {"fpr": fpr, "max_batch": 1024})
    tr = LocalTransport(srv)
    client = _client(tmp_path / "cache")
    rng = np.random.default_rng(99)
    trials = 3000
    outsiders = [PDQ.from_bytes(rng.bytes(32)) for _ in range(trials)]
    members = {hs.value(i).raw for i in range(len(hs))}
    assert not any(h.raw in members for h in outsiders)
    fps = sum(r.matched for r in client.scan_many([Query(h) for h in outsiders], tr))
    mean, sd = trials * fpr, math.sqrt(trials * fpr * (1 - fpr))
    assert fps <= mean + 6 * sd
    assert all(r.matched for r in client.scan_many([Query(hs.value(i)) for i in range(50)], tr))


def test_multi_probe_finds_near_duplicates(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    fv = rng.normal(size=256)
    h = PDQ.from_bits((fv > np.median(fv)).astype(np.uint8))
    unstable = least_stable_bits(fv, 8)
    assert len(set(unstable)) == 8
    order = np.argsort(np.abs(fv - np.median(fv)), kind="stable")
    assert unstable == [int(i) for i in order[:8]]
    near = h.flip([unstable[0], unstable[5]])  # 2 unstable bits differ
    far = h.flip([int(order[-1])])  # the most stable bit differs
    srv = OPRF.open_server(
        HashSet.from_values(PDQ, [near, far.flip([0, 1, 2])]), tmp_path / "s", {}
    )
    tr = LocalTransport(srv)
    q = Query(h, float_values=tuple(float(x) for x in fv))
    for k, want in [(0, False), (1, False), (6, True), (8, True)]:
        r = _client(tmp_path / f"c{k}", probe_bits=k).scan(q, tr)
        assert r.matched is want, k
        assert r.extra["elements"] == 2**k and r.extra["probes"] == 2**k
        if want:
            assert r.distance == 2
    assert len(probe_hashes(q.hash, q.float_values, 8)) == 256
    assert len({p.raw for p, _ in probe_hashes(q.hash, q.float_values, 8)}) == 256


def test_probe_bits_without_float_values_refused_before_sending(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """protocol.multiprobe's rule: no float values with probe_bits > 0 is a ProbeError, and
    nothing reaches the server (so nothing about the query leaks either)."""
    hs, srv, _ = served
    tap = Tap(LocalTransport(srv))
    client = _client(tmp_path, probe_bits=3)
    with pytest.raises(ProbeError):
        client.scan(Query(hs.value(2)), tap)
    assert not [e for e in tap.log if e[1] == "evaluate"]


def test_probe_bits_bounds() -> None:
    with pytest.raises(ValueError):
        _client(None, probe_bits=11)
    with pytest.raises(ValueError):
        _client(None, probe_bits=-1)
    _client(None, probe_bits=10)
    for bad in ("zz" * 32, "00" * 31, b"\x00" * 5):
        with pytest.raises(ValueError):
            _client(None, pinned_signing_key=bad)
        with pytest.raises(ValueError):
            _client(None, pinned_root_digest=bad)
        with pytest.raises(ValueError):
            _client(None, pinned_set_digest=bad)


# --------------------------------------------------------------------------- privacy


def _requests(tap: Tap) -> list[tuple[str, str, int]]:
    return [(m, p, len(b)) for m, p, b, _ in tap.log]


@pytest.mark.parametrize("k", [0, 3])
def test_request_bytes_independent_of_membership(served, tmp_path: Path, k: int) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served
    rng = np.random.default_rng(11)
    fv = tuple(float(x) for x in rng.normal(size=256))
    client = _client(tmp_path, probe_bits=k)
    warm = Tap(LocalTransport(srv))
    client.scan(Query(hs.value(0), float_values=fv), warm)  # one-time downloads
    member, outsider = hs.value(5), hs.value(5).flip(range(0, 256, 3))
    taps = {}
    for name, h in (("member", member), ("outsider", outsider)):
        tap = Tap(LocalTransport(srv))
        r = client.scan(Query(h, float_values=fv), tap)
        assert r.matched is (name == "member")
        taps[name] = tap
    m, o = taps["member"], taps["outsider"]
    assert _requests(m) == _requests(o) == [("POST", "evaluate", 16 + 32 * 2**k)]
    mreq, oreq = (EvaluateRequest.from_bytes(t.log[0][2]) for t in (m, o))
    assert mreq.epoch == oreq.epoch
    # the hash never appears on the wire, and the same hash is blinded afresh each time
    assert member.raw not in m.log[0][2]
    again = Tap(LocalTransport(srv))
    client.scan(Query(member, float_values=fv), again)
    assert set(EvaluateRequest.from_bytes(again.log[0][2]).elements).isdisjoint(mreq.elements)
    # the server's view is the same size for both, and its answer too
    assert m.bytes_up == o.bytes_up and m.bytes_down == o.bytes_down


def test_leakage_declared() -> None:
    assert OPRF.private and not OPRF.leakage.server_sees_hash and not OPRF.leakage.client_sees_set
    assert any("set size" in c for c in OPRF.leakage.client)


# ------------------------------------------------------------------ server input validation


def _post(srv: OprfServer, body: bytes) -> bytes:
    return LocalTransport(srv).post("evaluate", body).body


def _epoch(srv: OprfServer) -> int:
    return srv.store.current().number


def _non_canonical() -> list[bytes]:
    """Encodings RFC 9496 §4.3.1 Decode must reject."""
    out = [
        (P).to_bytes(32, "little"),  # s = p (not reduced)
        (P + 2).to_bytes(32, "little"),  # s >= p
        (1).to_bytes(32, "little"),  # s negative (odd)
        b"\xff" * 32,
        bytes(31) + b"\x80",  # high bit set
    ]
    return out


@pytest.mark.parametrize(
    "elem", [R.IDENTITY, *_non_canonical()], ids=["identity", "p", "p+2", "odd", "ff", "hibit"]
)
def test_bad_points_rejected(served, elem: bytes) -> None:  # type: ignore[no-untyped-def]
    _, srv, _ = served
    good = R.hash_to_group(b"x", b"t")
    for elems in ([elem], [good, elem]):
        body = encode_fields(2, 1, [_epoch(srv).to_bytes(4, "big"), b"".join(elems)])
        with pytest.raises(DeserializeError):
            _post(srv, body)


def test_malformed_requests_are_typed_errors(served) -> None:  # type: ignore[no-untyped-def]
    _, srv, _ = served
    ep = _epoch(srv).to_bytes(4, "big")
    good = R.hash_to_group(b"x", b"t")
    ok = encode_fields(2, 1, [ep, good])
    assert len(EvaluateResponse.from_bytes(_post(srv, ok)).elements) == 1
    cases = [
        encode_fields(2, 1, [ep, good[:-1]]),  # element 31 bytes
        encode_fields(2, 1, [ep, good + b"\x00"]),  # 33 bytes
        encode_fields(2, 1, [ep, b""]),  # empty batch
        encode_fields(2, 1, [ep[:3], good]),  # short epoch
        ok[:-1],  # truncated
        ok + b"\x00",  # extended
        b"\x02" + ok[1:],  # unknown version
        ok[:1] + b"\x03" + ok[2:],  # wrong protocol
        ok[:2] + b"\x02" + ok[3:],  # wrong message type
    ]
    for body in cases:
        with pytest.raises(DecodeError):
            _post(srv, body)
    with pytest.raises(UnknownEpochError):
        _post(srv, encode_fields(2, 1, [(999).to_bytes(4, "big"), good]))
    with pytest.raises(BatchTooLargeError):
        _post(srv, encode_fields(2, 1, [ep, good * 301]))
    assert (
        len(EvaluateResponse.from_bytes(_post(srv, encode_fields(2, 1, [ep, good * 300]))).elements)
        == 300
    )


def test_bit_flips_in_request_never_crash(served) -> None:  # type: ignore[no-untyped-def]
    _, srv, _ = served
    good = R.hash_to_group(b"y", b"t")
    ok = encode_fields(2, 1, [_epoch(srv).to_bytes(4, "big"), good])
    from blindmatch.protocol import BlindmatchError

    for i in range(len(ok) * 8):
        bad = bytearray(ok)
        bad[i // 8] ^= 1 << (i % 8)
        with contextlib.suppress(BlindmatchError):  # any other exception fails the test
            _post(srv, bytes(bad))


def test_evaluate_cost_and_limits(served) -> None:  # type: ignore[no-untyped-def]
    _, srv, _ = served
    ep = {e.path: e for e in srv.endpoints()}
    assert ep["evaluate"].rate_limited and ep["evaluate"].method == "POST"
    assert ep["evaluate"].cost is not None
    assert (
        ep["evaluate"].cost(EvaluateRequest(1, (R.hash_to_group(b"a", b"t"),) * 16).to_bytes())
        == 16
    )
    assert ep["evaluate"].cost(b"") == 1
    assert ep["evaluate"].max_body >= 16 + 32 * 300


# --------------------------------------------------------------------------- client verification


def _swap_proof(rep: TransportReply, proof: bytes) -> TransportReply:
    f = decode_fields(rep.body, 2, 2, 3)
    return TransportReply(rep.status, encode_fields(2, 2, [f[0], f[1], proof]), rep.headers)


def test_tampered_proof_rejected(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served

    def flip_proof(method: str, path: str, rep: TransportReply) -> TransportReply:
        if path != "evaluate":
            return rep
        p = decode_fields(rep.body, 2, 2, 3)[2]
        c, s = Proof.from_bytes(p).c, Proof.from_bytes(p).s
        return _swap_proof(rep, c + R.scalar_add(s, (1).to_bytes(32, "little")))

    with pytest.raises(VerifyError):
        _client(tmp_path).scan(Query(hs.value(1)), Tap(LocalTransport(srv), flip_proof))


def test_non_canonical_proof_rejected(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served

    def bad(method: str, path: str, rep: TransportReply) -> TransportReply:
        return _swap_proof(rep, b"\xff" * 64) if path == "evaluate" else rep

    with pytest.raises(DeserializeError):
        _client(tmp_path).scan(Query(hs.value(1)), Tap(LocalTransport(srv), bad))


def test_identity_or_swapped_evaluation_rejected(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served

    def identity(method: str, path: str, rep: TransportReply) -> TransportReply:
        if path != "evaluate":
            return rep
        f = decode_fields(rep.body, 2, 2, 3)
        return TransportReply(
            rep.status,
            encode_fields(2, 2, [f[0], R.IDENTITY * (len(f[1]) // 32), f[2]]),
            rep.headers,
        )

    with pytest.raises(DeserializeError):
        _client(tmp_path).scan(Query(hs.value(1)), Tap(LocalTransport(srv), identity))

    def swap(method: str, path: str, rep: TransportReply) -> TransportReply:
        if path != "evaluate":
            return rep
        f = decode_fields(rep.body, 2, 2, 3)
        els = [f[1][i : i + 32] for i in range(0, len(f[1]), 32)]
        return TransportReply(
            rep.status, encode_fields(2, 2, [f[0], b"".join(els[::-1]), f[2]]), rep.headers
        )

    fv = tuple(float(x) for x in np.random.default_rng(2).normal(size=256))
    with pytest.raises(VerifyError):
        _client(tmp_path / "b", probe_bits=2).scan(
            Query(hs.value(1), float_values=fv), Tap(LocalTransport(srv), swap)
        )


def test_proof_under_another_key_rejected(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A server answering one user under a different key (e.g. to tag them) is caught."""
    hs, srv, _ = served
    other = OPRF.open_server(hs, tmp_path / "other", {})
    assert isinstance(other, OprfServer)
    other_ep = other.store.current()

    def other_key(method: str, path: str, rep: TransportReply) -> TransportReply:
        if path != "evaluate":
            return rep
        req = EvaluateResponse.from_bytes(rep.body)
        sent = tap.log[-1][2]
        elems = EvaluateRequest.from_bytes(sent).elements
        ev, proof = other_ep.server.blind_evaluate_batch(elems)
        return TransportReply(200, EvaluateResponse(req.epoch, tuple(ev), proof).to_bytes(), {})

    tap = Tap(LocalTransport(srv), other_key)
    with pytest.raises(VerifyError):
        _client(tmp_path / "c").scan(Query(hs.value(1)), tap)
    # and the honest proof from the other key does verify against the other key
    vc = VOPRFClient(other_ep.manifest.public_key)
    st_ = vc.blind(b"z")
    ev, proof = other_ep.server.blind_evaluate_batch([st_.blinded_element])
    assert len(vc.finalize(st_, ev[0], proof)) == 64


def _resign(raw: bytes, key: Ed25519PrivateKey, **changes: object) -> bytes:
    m = Manifest.verify(raw)
    fields = {**m.__dict__, **changes, "signing_key": key.public_key().public_bytes_raw()}
    return Manifest(**fields).sign(key)  # type: ignore[arg-type]


def test_forged_manifest_signature_rejected(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served

    def tamper(method: str, path: str, rep: TransportReply) -> TransportReply:
        if path != "manifest":
            return rep
        payload, sig = decode_fields(rep.body, 2, 3, 2, max_field=4096)
        m = Manifest.from_payload(payload)
        forged = Manifest(**{**m.__dict__, "set_size": m.set_size + 1}).payload()
        return TransportReply(200, encode_fields(2, 3, [forged, sig]), rep.headers)

    with pytest.raises(SignatureError):
        _client(tmp_path / "a").scan(Query(hs.value(1)), Tap(LocalTransport(srv), tamper))


def test_manifest_from_another_signer_rejected_after_first_use(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served
    cache = tmp_path / "cache"
    assert _client(cache).scan(Query(hs.value(1)), Tap(LocalTransport(srv))).matched
    mallory = Ed25519PrivateKey.generate()

    def fresh(method: str, path: str, rep: TransportReply) -> TransportReply:
        if path != "manifest":
            return rep
        honest = LocalTransport(srv).get("manifest")  # ignore the client's If-None-Match
        return TransportReply(200, _resign(honest.body, mallory), honest.headers)

    with pytest.raises(SignatureError):
        _client(cache).scan(Query(hs.value(1)), Tap(LocalTransport(srv), fresh))
    # a pinned key overrides first use, and a pinned root digest is checked too
    good = Manifest.verify(LocalTransport(srv).get("manifest").body)
    ok = _client(
        None,
        pinned_signing_key=good.signing_key.hex(),
        pinned_root_digest=good.root_digest(),
        pinned_set_digest=good.set_digest.hex(),
    )
    assert ok.scan(Query(hs.value(1)), LocalTransport(srv)).matched
    with pytest.raises(SignatureError):
        _client(None, pinned_signing_key=mallory.public_key().public_bytes_raw().hex()).scan(
            Query(hs.value(1)), LocalTransport(srv)
        )
    with pytest.raises(SignatureError):
        _client(None, pinned_root_digest="00" * 32).scan(Query(hs.value(1)), LocalTransport(srv))
    with pytest.raises(SignatureError):
        _client(None, pinned_set_digest="00" * 32).scan(Query(hs.value(1)), LocalTransport(srv))


def test_filter_digest_mismatch_rejected(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served

    def flip(method: str, path: str, rep: TransportReply) -> TransportReply:
        if path != "filter":
            return rep
        b = bytearray(rep.body)
        b[len(b) // 2] ^= 0x10
        return TransportReply(rep.status, bytes(b), rep.headers)

    tap = Tap(LocalTransport(srv), flip)
    with pytest.raises(DigestMismatchError):
        _client(tmp_path).scan(Query(hs.value(1)), tap)
    assert [p for _, p, _, _ in tap.log].count("filter") == 2  # retried once, then refused
    cached = tmp_path / "oprf" / "filters"
    assert not cached.exists() or not list(cached.glob("*.bin"))


# ------------------------------------------------------------------ caching and HTTP semantics


def test_cache_survives_restart_and_uses_304(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hs, srv, _ = served
    tap1 = Tap(LocalTransport(srv))
    assert _client(tmp_path).scan(Query(hs.value(4)), tap1).matched
    assert [p for _, p, _, _ in tap1.log] == ["manifest", "filter", "evaluate"]
    tap2 = Tap(LocalTransport(srv))
    r = _client(tmp_path).scan(Query(hs.value(4)), tap2)  # a new process, same cache dir
    assert r.matched
    assert [p for _, p, _, _ in tap2.log] == ["manifest", "evaluate"]
    assert tap2.log[0][3]["if-none-match"].startswith('"')
    assert tap2.bytes_down < 200


def test_etag_and_304(served) -> None:  # type: ignore[no-untyped-def]
    _, srv, _ = served
    eps = {e.path: e for e in srv.endpoints()}
    for path in ("manifest", "filter"):
        rep = eps[path].handler(Request())
        assert rep.status == 200 and rep.body
        assert rep.headers["content-length"] == str(len(rep.body))
        etag = rep.headers["etag"]
        for hdr in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            again = eps[path].handler(Request(headers={"if-none-match": hdr}))
            assert again.status == 304 and again.body == b""
        assert eps[path].handler(Request(headers={"if-none-match": '"other"'})).status == 200
    man = Manifest.verify(eps["manifest"].handler(Request()).body)
    assert eps["filter"].handler(Request()).headers["etag"] == f'"{man.filter_digest.hex()}"'
    assert srv.setup_bytes() == len(eps["manifest"].handler(Request()).body) + man.filter_bytes
    assert abs(OPRF.download_bytes(64, PDQ) - srv.setup_bytes()) < 1024


# --------------------------------------------------------------------------- keys, epochs, rotation


def test_key_files_are_0600_and_insecure_refused(tmp_path: Path) -> None:
    hs = random_set(8, seed=1)
    state = tmp_path / "state"
    OPRF.open_server(hs, state, {})
    keys = [state / "signing.key", state / "epoch-1" / "oprf.key"]
    for k in keys:
        assert stat.S_IMODE(k.stat().st_mode) == 0o600
    os.chmod(keys[1], 0o644)
    with pytest.raises(InsecureKeyFileError):
        OPRF.open_server(hs, state, {})


def test_key_material_not_printed(served) -> None:  # type: ignore[no-untyped-def]
    _, srv, state = served
    ep = srv.store.current()
    secret = ep.server.private_bytes()
    for text in (repr(ep.server), repr(ep), str(describe_state(state))):
        assert secret.hex() not in text


def test_corrupt_filter_names_the_file(tmp_path: Path) -> None:
    hs = random_set(8, seed=1)
    state = tmp_path / "state"
    OPRF.open_server(hs, state, {})
    f = state / "epoch-1" / "filter.bin"
    data = f.read_bytes()
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # always a change, whatever the key
    with pytest.raises(CorruptStoreError, match=r"filter\.bin"):
        OPRF.open_server(hs, state, {})


def test_rotation_with_grace(tmp_path: Path) -> None:
    hs = random_set(16, seed=1)
    state = tmp_path / "state"
    srv = OPRF.open_server(hs, state, {})
    assert isinstance(srv, OprfServer)
    tr = LocalTransport(srv)
    a = _client(tmp_path / "a", manifest_ttl=3600)
    assert a.scan(Query(hs.value(0)), tr).extra["epoch"] == 1
    old_pk = srv.store.current().manifest.public_key

    new = rotate_epoch(state, hs, grace_seconds=3600)
    assert new.number == 2 and new.manifest.public_key != old_pk
    # the running server picks the new epoch up without a restart
    assert srv.store.current().number == 2
    # a client still on epoch 1 is answered during the grace period
    r = a.scan(Query(hs.value(0)), tr)
    assert r.matched and r.extra["epoch"] == 1
    # a fresh client moves to epoch 2
    b = _client(tmp_path / "b", manifest_ttl=3600)
    assert b.scan(Query(hs.value(0)), tr).extra["epoch"] == 2

    # rotate with no grace: epoch 2 stops at once; its client refreshes and retries
    rotate_epoch(state, hs, grace_seconds=0)
    assert srv.store.current().number == 3
    with pytest.raises(UnknownEpochError):
        srv.store.get(2)
    tap = Tap(tr)
    r = b.scan(Query(hs.value(0)), tap)
    assert r.matched and r.extra["epoch"] == 3
    assert [p for _, p, _, _ in tap.log] == ["evaluate", "manifest", "filter", "evaluate"]
    # epoch 1 is still in its grace period, and refused after it
    assert a.scan(Query(hs.value(0)), tr).extra["epoch"] == 1
    with pytest.raises(UnknownEpochError):
        srv.store.get(1, now=time.time() + 7200)
    assert not (state / "epoch-2").exists()
    info = describe_state(state)
    assert info["current"] == 3 and [e["epoch"] for e in info["epochs"]] == [1, 3]
    assert all(len(e["root_digest"]) == 64 for e in info["epochs"])


def test_expired_epoch_keys_deleted(tmp_path: Path) -> None:
    hs = random_set(4, seed=1)
    state = tmp_path / "state"
    OPRF.open_server(hs, state, {})
    rotate_epoch(state, hs, grace_seconds=0)
    rotate_epoch(state, hs, grace_seconds=0)
    assert not (state / "epoch-1").exists() and not (state / "epoch-2" / "oprf.key").exists()
    assert (state / "epoch-3" / "oprf.key").exists()


def test_set_change_rotates(tmp_path: Path) -> None:
    state = tmp_path / "state"
    a, b = random_set(10, seed=1), random_set(12, seed=2)
    srv = OPRF.open_server(a, state, {})
    assert isinstance(srv, OprfServer) and srv.store.current().number == 1
    srv2 = OPRF.open_server(a, state, {})  # same set: same epoch
    assert isinstance(srv2, OprfServer) and srv2.store.current().number == 1
    srv3 = OPRF.open_server(b, state, {"grace_seconds": 60})
    assert isinstance(srv3, OprfServer) and srv3.store.current().number == 2
    man = srv3.store.current().manifest
    from blindmatch.protocol.oprf._store import set_digest

    assert man.set_digest == set_digest(b)[1] and man.set_size == 12
    assert _client(tmp_path / "c").scan(Query(b.value(3)), LocalTransport(srv3)).matched
    assert not _client(tmp_path / "d").scan(Query(a.value(3)), LocalTransport(srv3)).matched


def test_wrong_algorithm_rejected(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, srv, _ = served
    from blindmatch.protocol import BadHashError

    client = OPRF.new_client(get_algo("phash"), tmp_path, {})
    with pytest.raises(BadHashError):
        client.scan(Query(HashValue(get_algo("phash"), bytes(8))), LocalTransport(srv))


def test_message_round_trips() -> None:
    elems = tuple(R.hash_to_group(bytes([i]), b"t") for i in range(3))
    req = EvaluateRequest(7, elems)
    assert EvaluateRequest.from_bytes(req.to_bytes()) == req
    assert len(req.to_bytes()) == 16 + 32 * 3
    proof = Proof(R.random_scalar(), R.random_scalar())
    resp = EvaluateResponse(7, elems, proof)
    assert EvaluateResponse.from_bytes(resp.to_bytes()) == resp
    assert len(resp.to_bytes()) == 84 + 32 * 3
    with pytest.raises(LengthError):
        EvaluateResponse.from_bytes(resp.to_bytes()[:-1])


def test_missing_signing_key_is_not_silently_replaced(tmp_path: Path) -> None:
    hs = random_set(4, seed=1)
    state = tmp_path / "state"
    OPRF.open_server(hs, state, {})
    (state / "signing.key").unlink()
    with pytest.raises(CorruptStoreError, match=r"signing\.key"):
        OPRF.open_server(hs, state, {})
    assert not (state / "signing.key").exists()
    assert describe_state(tmp_path / "empty") == {"current": None, "epochs": []}
    assert not (tmp_path / "empty").exists()
