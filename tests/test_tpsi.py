"""tPSI end to end in-process: threshold behaviour, synthetic mix, durability, bad input."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blindmatch.protocol import (
    BatchTooLargeError,
    BodyTooLargeError,
    CorruptStoreError,
    DecodeError,
    DeserializeError,
    DigestMismatchError,
    HashSet,
    InputError,
    InsecureKeyFileError,
    LengthError,
    LocalTransport,
    ParameterError,
    Query,
    Request,
    SignatureError,
    StorageUnavailableError,
    Transport,
    TransportReply,
    UnknownEpochError,
    get_algo,
)
from blindmatch.protocol.tpsi import (
    TPSI,
    TpsiClient,
    TpsiServer,
    UploadBatch,
    UploadReply,
    Voucher,
    detection_probability,
    false_report_probability,
    list_reveals,
)

from blindmatch.corpus import random_set

PDQ = get_algo("pdq")
T = 30


def nonmember() -> Any:
    return PDQ.from_bytes(secrets.token_bytes(32))


def server(hs: HashSet, d: Path, **opts: Any) -> TpsiServer:
    s = TPSI.open_server(hs, d, {"reveal_mode": "inline", "synthetic_rate": 0.0, **opts})
    assert isinstance(s, TpsiServer)
    return s


TEST_FLOORS = {"min_threshold": 2, "min_synthetic_rate": 0.0}  # tests run small t and s = 0


def client(d: Path | None, **opts: Any) -> TpsiClient:
    c = TPSI.new_client(PDQ, d, {**TEST_FLOORS, **opts})
    assert isinstance(c, TpsiClient)
    return c


def signed_batch(c: TpsiClient, account: str, vouchers: tuple[bytes, ...]) -> bytes:
    """An upload body signed with the client's key for ``account``, as the client sends it."""
    return UploadBatch(account, vouchers).signed(c._account(account)[1]).to_bytes()


def ads(srv: TpsiServer, account: str) -> set[bytes]:
    return {r.ad for r in srv.reveals(account)}


@pytest.fixture(scope="module")
def hs() -> HashSet:
    return random_set(120, seed=None)


def test_threshold_boundary(hs: HashSet, tmp_path: Path) -> None:
    """t-1 matches plus non-matches reveal nothing; the t-th reveals exactly the matching ADs."""
    srv = server(hs, tmp_path / "s", threshold=T)
    tr, c = LocalTransport(srv), client(tmp_path / "c")
    members = hs.values()
    rng = secrets.SystemRandom()
    queries = [
        Query(members[i], account="acct", associated_data=f"match-{i}".encode())
        for i in range(T - 1)
    ]
    queries += [
        Query(nonmember(), account="acct", associated_data=f"other-{i}".encode()) for i in range(60)
    ]
    rng.shuffle(queries)
    for q in queries:
        r = c.scan(q, tr)
        assert r.matched is None
    assert srv.reveals("acct") == [] and list_reveals(tmp_path / "s", "acct") == []
    events = {e["event"] for e in srv.store.audit_log("acct")}
    assert events <= {"account_bound", "admin_list"}
    c.scan(Query(members[T - 1], account="acct", associated_data=b"match-last"), tr)
    want = {f"match-{i}".encode() for i in range(T - 1)} | {b"match-last"}
    assert ads(srv, "acct") == want
    assert {r.ad for r in list_reveals(tmp_path / "s", "acct")} == want
    events = [e["event"] for e in srv.store.audit_log("acct")]
    assert events.count("threshold_reached") == 1 and events.count("reveal") == T
    # other accounts are unaffected
    assert srv.reveals("someone-else") == []
    srv.close()


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.10])
def test_realistic_synthetic_mix(hs: HashSet, tmp_path: Path, rate: float) -> None:
    """t = 30, hundreds of vouchers, synthetic rate 1-10%: reveal exactly at t real matches."""
    srv = server(hs, tmp_path / "s", threshold=T, synthetic_rate=rate)
    tr, c = LocalTransport(srv), client(tmp_path / "c")
    members = hs.values()
    queries = [
        Query(members[i], account="mix", associated_data=f"m{i}".encode()) for i in range(50)
    ]
    queries += [
        Query(nonmember(), account="mix", associated_data=f"n{i}".encode()) for i in range(250)
    ]
    secrets.SystemRandom().shuffle(queries)
    real: set[bytes] = set()
    synthetic_seen = 0
    c.setup(tr)
    for start in range(0, len(queries), 10):
        batch = queries[start : start + 10]
        c.scan_many(batch, tr)
        for q in batch:
            syn = c.is_synthetic("mix", q.hash)
            synthetic_seen += syn
            if q.associated_data.startswith(b"m") and not syn:
                real.add(q.associated_data)
        assert ads(srv, "mix") == (real if len(real) >= T else set())
    assert len(real) >= T, "fixture should cross the threshold"
    assert not any(a.startswith(b"n") for a in ads(srv, "mix"))
    assert srv.store.opened_count("mix") >= len(real)


def test_non_matching_never_revealed_far_above_threshold(hs: HashSet, tmp_path: Path) -> None:
    srv = server(hs, tmp_path / "s", threshold=5, synthetic_rate=0.10, dhf_dim=64)
    tr, c = LocalTransport(srv), client(tmp_path / "c")
    members = hs.values()
    qs = [Query(members[i], account="far", associated_data=b"M%d" % i) for i in range(100)]
    qs += [Query(nonmember(), account="far", associated_data=b"N%d" % i) for i in range(300)]
    secrets.SystemRandom().shuffle(qs)
    c.scan_many(qs, tr)
    got = ads(srv, "far")
    want = {
        q.associated_data
        for q in qs
        if q.associated_data.startswith(b"M") and not c.is_synthetic("far", q.hash)
    }
    assert got == want and len(got) > 20 * 5 // 2
    assert all(not a.startswith(b"N") for a in got)


def test_rescans_and_replays_count_once(hs: HashSet, tmp_path: Path) -> None:
    t = 6
    srv = server(hs, tmp_path / "s", threshold=t, dhf_dim=16)
    tr, c = LocalTransport(srv), client(tmp_path / "c")
    members = hs.values()
    qs = [Query(members[i], account="r", associated_data=b"img%d" % i) for i in range(t - 1)]
    c.scan_many(qs, tr)
    c.scan_many(qs, tr)  # the same images again: new voucher ids, same shares
    c.setup(tr)
    body = signed_batch(c, "r", tuple(v.to_bytes() for q in qs for v in c.vouchers_for(q)))
    first = UploadReply.from_bytes(tr.post("vouchers", body).body)
    replay = UploadReply.from_bytes(tr.post("vouchers", body).body)
    assert first.accepted == t - 1 and first.duplicates == 0
    assert replay.accepted == 0 and replay.duplicates == t - 1 and replay.acked == first.acked
    assert srv.store.voucher_count("r") == 3 * (t - 1)
    assert srv.reveals("r") == []
    c.scan(Query(members[t], account="r", associated_data=b"last"), tr)
    assert ads(srv, "r") == {b"img%d" % i for i in range(t - 1)} | {b"last"}
    assert len(srv.reveals("r")) == 3 * (t - 1) + 1  # every voucher of a matching image


def test_durability_across_reopen(hs: HashSet, tmp_path: Path) -> None:
    """Close and reopen mid-account: vouchers, epoch and client secrets carry over."""
    sdir, cdir = tmp_path / "s", tmp_path / "c"
    srv = server(hs, sdir, threshold=T, reveal_mode="manual")
    manifest = srv.manifest_bytes
    members = hs.values()
    c1 = client(cdir)
    c1.scan_many(
        [Query(members[i], account="dur", associated_data=b"%d" % i) for i in range(20)],
        LocalTransport(srv),
    )
    assert srv.process_reveals("dur") == 0
    srv.close()

    srv = server(hs, sdir, threshold=T, reveal_mode="manual")
    assert srv.manifest_bytes == manifest and srv.store.voucher_count("dur") == 20
    c2 = client(cdir)  # a new process: the account seed comes from the 0600 key file
    c2.scan_many(
        [Query(members[i], account="dur", associated_data=b"%d" % i) for i in range(20, T)],
        LocalTransport(srv),
    )
    keyfiles = list(cdir.rglob("*.key"))
    assert len(keyfiles) == 1 and stat.S_IMODE(keyfiles[0].stat().st_mode) == 0o600
    assert srv.process_reveals("dur") == T
    # pending work left before a restart is picked up by the background worker
    c2.scan_many(
        [Query(members[i], account="bob", associated_data=b"b%d" % i) for i in range(T)],
        LocalTransport(srv),
    )
    srv.close()
    srv = server(hs, sdir, threshold=T, reveal_mode="background")
    srv.wait_idle()
    assert len(srv.reveals("bob")) == T and len(srv.reveals("dur")) == T
    srv.close()


def test_client_without_cache_keeps_secrets_in_memory(hs: HashSet, tmp_path: Path) -> None:
    srv = server(hs, tmp_path / "s", threshold=3, dhf_dim=8)
    c = client(None)
    tr = LocalTransport(srv)
    for i in range(3):
        c.scan(Query(hs.value(i), account="mem", associated_data=b"x%d" % i), tr)
    assert len(srv.reveals("mem")) == 3
    srv.close()


def _valid_batch(srv: TpsiServer, c: TpsiClient, hs: HashSet, n: int = 3) -> list[Voucher]:
    c.setup(LocalTransport(srv))
    out: list[Voucher] = []
    for i in range(n):
        out += c.vouchers_for(Query(hs.value(i), account="bad", associated_data=b"x"))
    return out


def test_malformed_batches_store_nothing(hs: HashSet, tmp_path: Path) -> None:
    srv = server(hs, tmp_path / "s", threshold=3, dhf_dim=8)
    c, tr = client(tmp_path / "c"), LocalTransport(srv)
    vs = _valid_batch(srv, c, hs)
    good = [v.to_bytes() for v in vs]
    flipped_point = bytearray(good[1])
    flipped_point[4 + 4 + 16 + 4 + 4 + 4 + 31] ^= 0x80  # top bit of the first Q
    bad_bodies: list[tuple[bytes, type[Exception]]] = [
        (signed_batch(c, "bad", (good[0], bytes(flipped_point))), DeserializeError),
        (signed_batch(c, "bad", (good[0], good[1][:-1])), DecodeError),
        (
            signed_batch(c, "bad", (good[0], replace(vs[1], rct=vs[1].rct[:-1]).to_bytes())),
            LengthError,
        ),
        (
            signed_batch(c, "bad", (good[0], replace(vs[1], pairs=vs[1].pairs[:2]).to_bytes())),
            LengthError,
        ),
        (b"", DecodeError),
        (b"\x01\x03\x05", DecodeError),
        (signed_batch(c, "bad", (tuple(good) * 86)[:257]), BatchTooLargeError),
        (signed_batch(c, "bad", tuple(good) * 100), BodyTooLargeError),
    ]
    for body, err in bad_bodies:
        with pytest.raises(err) as ei:
            tr.post("vouchers", body)
        assert ei.value.http_status in (400, 413)
    assert srv.store.voucher_count() == 0
    ok = UploadReply.from_bytes(
        tr.post("vouchers", signed_batch(c, "bad", tuple(good))).body
    )
    assert ok.accepted == 3 and srv.store.voucher_count() == 3
    srv.close()


def test_wrong_epoch_rejected_and_set_change_starts_new_epoch(hs: HashSet, tmp_path: Path) -> None:
    sdir = tmp_path / "s"
    srv = server(hs, sdir, threshold=3, dhf_dim=8)
    c, tr = client(tmp_path / "c"), LocalTransport(srv)
    vs = _valid_batch(srv, c, hs)
    future = [replace(v, epoch=v.epoch + 1).to_bytes() for v in vs]
    with pytest.raises(UnknownEpochError) as ei:
        tr.post("vouchers", signed_batch(c, "bad", tuple(future)))
    assert ei.value.http_status == 400 and srv.store.voucher_count() == 0
    for i in range(3):
        c.scan(Query(hs.value(i), account="e", associated_data=b"%d" % i), tr)
    assert len(srv.reveals("e")) == 3
    epoch = srv.manifest.epoch
    srv.close()

    hs2 = random_set(50, seed=None)
    srv2 = server(hs2, sdir, threshold=3, dhf_dim=8)
    assert srv2.manifest.epoch == epoch + 1
    with pytest.raises(UnknownEpochError):
        LocalTransport(srv2).post(
            "vouchers", signed_batch(c, "bad", tuple(v.to_bytes() for v in vs))
        )
    assert len(srv2.reveals("e")) == 3  # reveals survive the new epoch
    # a live client holding the old manifest refetches it once and succeeds
    r = c.scan(Query(hs2.value(0), account="e2", associated_data=b"new"), LocalTransport(srv2))
    assert r.extra["epoch"] == epoch + 1 and srv2.store.voucher_count("e2") == 1
    assert sorted(p.name for p in sdir.iterdir() if p.name.startswith(("alpha-", "table-"))) == [
        f"alpha-{epoch + 1}.key",
        f"table-{epoch + 1}.bin",
    ]
    srv2.close()


def test_storage_failure_is_503_and_keeps_data(hs: HashSet, tmp_path: Path) -> None:
    """A full store (SQLite page quota) fails the write with 503 and keeps what was acknowledged."""
    sdir = tmp_path / "s"
    srv = server(hs, sdir, threshold=T, reveal_mode="manual")
    srv.close()
    srv = server(hs, sdir, threshold=T, reveal_mode="manual", max_pages=40)
    c, tr = client(tmp_path / "c"), LocalTransport(srv)
    acked: set[bytes] = set()
    with pytest.raises(StorageUnavailableError) as ei:
        for i in range(400):
            r = c.scan(Query(hs.value(i % len(hs)), account="full", associated_data=b"%d" % i), tr)
            acked.update(bytes.fromhex(v) for v in r.extra["voucher_ids"])
    assert ei.value.http_status == 503 and acked
    assert srv.store.voucher_count("full") == len(acked)
    srv.close()
    srv = server(hs, sdir, threshold=T, reveal_mode="manual")  # quota lifted: all still there
    assert srv.store.voucher_count("full") == len(acked)
    srv.close()


def test_etag_and_304(hs: HashSet, tmp_path: Path) -> None:
    srv = server(hs, tmp_path / "s", threshold=3, dhf_dim=8)
    tr = LocalTransport(srv)
    for path in ("table", "manifest"):
        r = tr.get(path)
        etag = r.headers["ETag"]
        assert r.status == 200 and r.body and etag.startswith('"')
        r2 = tr.get(path, {"If-None-Match": etag})
        assert r2.status == 304 and r2.body == b"" and r2.headers["ETag"] == etag
        r3 = tr.get(path, {"If-None-Match": '"stale", ' + etag})
        assert r3.status == 304
        assert tr.get(path, {"If-None-Match": '"stale"'}).status == 200
    assert srv.setup_bytes() == len(tr.get("table").body) + len(tr.get("manifest").body)
    srv.close()


class Tamper(Transport):
    """An on-path attacker: flips a byte of one endpoint's response."""

    def __init__(self, inner: Transport, path: str) -> None:
        super().__init__()
        self.inner, self.path = inner, path

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        r = self.inner.request(method, path, body, headers)
        if path == self.path and r.body:
            b = bytearray(r.body)
            b[len(b) // 2] ^= 1
            return TransportReply(r.status, bytes(b), r.headers)
        return r


def test_client_checks_signature_digest_and_pins(hs: HashSet, tmp_path: Path) -> None:
    srv = server(hs, tmp_path / "s", threshold=3, dhf_dim=8)
    q = Query(hs.value(0), account="p", associated_data=b"x")
    with pytest.raises(DigestMismatchError):
        client(tmp_path / "c1").scan(q, Tamper(LocalTransport(srv), "table"))
    with pytest.raises((SignatureError, DecodeError)):
        client(tmp_path / "c2").scan(q, Tamper(LocalTransport(srv), "manifest"))
    with pytest.raises(SignatureError):
        client(tmp_path / "c3", pinned_signing_key="00" * 32).scan(q, LocalTransport(srv))
    with pytest.raises(SignatureError):
        client(tmp_path / "c4", pinned_set_digest="00" * 32).scan(q, LocalTransport(srv))
    good = client(
        tmp_path / "c5",
        pinned_signing_key=srv.public_key.hex(),
        pinned_set_digest=srv.manifest.set_digest.hex(),
    )
    r = good.scan(q, LocalTransport(srv))
    assert r.matched is None and r.extra["setup_bytes"] == srv.setup_bytes()
    # a second client on the same cache dir does not download the table again
    tr = LocalTransport(srv)
    r2 = client(tmp_path / "c5").scan(q, tr)
    assert r2.bytes_down < len(srv.table_bytes)
    with pytest.raises(InputError):  # AD longer than the server's ad_max
        good.scan(Query(hs.value(0), account="p", associated_data=b"x" * 300), tr)
    with pytest.raises(InputError):
        good.scan(Query(hs.value(0), associated_data=b"x"), tr)
    srv.close()


def test_reply_does_not_depend_on_membership(hs: HashSet, tmp_path: Path) -> None:
    srv = server(hs, tmp_path / "s", threshold=3, dhf_dim=8)
    c, tr = client(tmp_path / "c"), LocalTransport(srv)
    c.setup(tr)
    replies = []
    for h in (hs.value(5), nonmember()):
        (v,) = c.vouchers_for(Query(h, account="same", associated_data=b"x"))
        rep = tr.post("vouchers", signed_batch(c, "same", (v.to_bytes(),)))
        replies.append(
            (rep.status, dict(rep.headers), UploadReply.from_bytes(rep.body), len(rep.body))
        )
    (s1, h1, r1, n1), (s2, h2, r2, n2) = replies
    assert (s1, h1, n1, r1.accepted, r1.duplicates) == (s2, h2, n2, r2.accepted, r2.duplicates)
    srv.close()


def test_admin_endpoints(hs: HashSet, tmp_path: Path) -> None:
    srv = server(hs, tmp_path / "s", threshold=3, dhf_dim=8, reveal_mode="manual")
    eps = {(e.method, e.path): e for e in srv.endpoints()}
    assert eps[("GET", "reveals")].admin and eps[("POST", "reveals")].admin
    assert eps[("POST", "vouchers")].rate_limited and not eps[("POST", "vouchers")].admin
    assert eps[("POST", "vouchers")].cost is not None
    c, tr = client(tmp_path / "c"), LocalTransport(srv)
    c.scan_many(
        [Query(hs.value(i), account="adm", associated_data=b"a%d" % i) for i in range(3)], tr
    )
    listed = json.loads(
        eps[("GET", "reveals")].handler(Request(headers={"x-blindmatch-account": "adm"})).body
    )
    assert listed == {
        "account": "adm",
        "threshold": 3,
        "reveals": [],
    }  # manual mode: not processed yet
    rep = eps[("POST", "reveals")].handler(Request(body=b"adm"))
    got = json.loads(rep.body)
    assert rep.media_type == "application/json"
    assert sorted(r["ad_text"] for r in got["reveals"]) == ["a0", "a1", "a2"]
    assert all(bytes.fromhex(r["ad_hex"]).decode() == r["ad_text"] for r in got["reveals"])
    with pytest.raises(InputError):
        eps[("GET", "reveals")].handler(Request())
    with pytest.raises(InputError):
        eps[("POST", "reveals")].handler(Request(body=b"\x01bad"))
    log = srv.store.audit_log("adm")
    assert [e["event"] for e in log].count("admin_list") == 2
    srv.close()


def test_list_reveals_paths(hs: HashSet, tmp_path: Path) -> None:
    setdir = tmp_path / "set"
    sdir = setdir / "state" / "tpsi"
    srv = server(hs, sdir, threshold=3, dhf_dim=8)
    client(tmp_path / "c").scan_many(
        [Query(hs.value(i), account="lr", associated_data=b"%d" % i) for i in range(3)],
        LocalTransport(srv),
    )
    srv.close()
    a = list_reveals(sdir, "lr")
    b = list_reveals(setdir, "lr")
    assert [r.as_json() for r in a] == [r.as_json() for r in b] and len(a) == 3
    assert list_reveals(sdir, "nobody") == []
    with pytest.raises(CorruptStoreError):
        list_reveals(tmp_path / "nothing-here", "lr")


def test_corrupt_or_insecure_state_refuses_to_start(hs: HashSet, tmp_path: Path) -> None:
    sdir = tmp_path / "s"
    srv = server(hs, sdir, threshold=3, dhf_dim=8)
    epoch = srv.manifest.epoch
    srv.close()
    table = sdir / f"table-{epoch}.bin"
    data = bytearray(table.read_bytes())
    data[-1] ^= 1
    table.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="table"):
        server(hs, sdir, threshold=3, dhf_dim=8)
    data[-1] ^= 1
    table.write_bytes(bytes(data))
    os.chmod(sdir / f"alpha-{epoch}.key", 0o644)
    with pytest.raises(InsecureKeyFileError):
        server(hs, sdir, threshold=3, dhf_dim=8)


def test_multiprobe_flips_least_stable_bits(tmp_path: Path) -> None:
    """With probe_bits=k a hash one unstable bit away from a set entry still matches."""
    rng = np.random.default_rng(1)
    t, k = 3, 2
    entries, queries = [], []
    for i in range(t):
        vals = rng.normal(size=256)
        med = float(np.median(vals))
        bits = (vals > med).astype(np.uint8)
        h = PDQ.from_bits(bits)
        shaky = int(np.argsort(np.abs(vals - med))[1])  # the second least stable bit
        entries.append(h.flip([shaky]))
        queries.append(Query(h, float_values=tuple(vals), account="mp", associated_data=b"p%d" % i))
    hs = HashSet.from_values(PDQ, entries + [nonmember() for _ in range(20)])
    srv = server(hs, tmp_path / "s", threshold=t, dhf_dim=8)
    tr = LocalTransport(srv)
    exact = client(tmp_path / "c0")
    exact.scan_many(queries, tr)
    assert srv.reveals("mp") == []
    probing = client(tmp_path / "c1", probe_bits=k)
    res = probing.scan_many([replace(q, account="mp2") for q in queries], tr)
    assert all(r.extra["vouchers"] == 2**k for r in res)
    assert ads(srv, "mp2") == {b"p0", b"p1", b"p2"}
    with pytest.raises(InputError):
        probing.scan(Query(queries[0].hash, account="mp3"), tr)
    srv.close()


def test_options_are_validated(hs: HashSet, tmp_path: Path) -> None:
    for bad in (
        {"threshold": 1},
        {"synthetic_rate": 1.5},
        {"n_hash": 5},
        {"reveal_mode": "x"},
        {"eps": 0.01, "n_hash": 2},
        {"bogus": 1},
        {"dhf_dim": 0},
    ):
        with pytest.raises(ParameterError):
            TPSI.open_server(hs, tmp_path / "s", bad)
    with pytest.raises(ParameterError):
        TPSI.new_client(PDQ, tmp_path, {"probe_bits": 11})


def test_false_report_probability_matches_scipy() -> None:
    from scipy.stats import binom

    for p, n, t in [
        (1e-3, 10_000, 30),
        (1e-6, 100_000, 30),
        (0.01, 1000, 5),
        (0.2, 50, 10),
        (0.5, 40, 1),
    ]:
        want = float(binom.sf(t - 1, n, p))
        got = false_report_probability(p, n, t)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300)
    assert false_report_probability(1e-3, 10_000, 30, synthetic_rate=0.5) == pytest.approx(
        float(binom.sf(29, 10_000, 5e-4)), rel=1e-9
    )
    assert (
        false_report_probability(0.0, 10, 1) == 0.0 and false_report_probability(1.0, 10, 10) == 1.0
    )
    assert false_report_probability(0.1, 10, 11) == 0.0
    seq = [false_report_probability(1e-4, 10_000, t) for t in range(1, 40)]
    assert all(a > b for a, b in itertools.pairwise(seq))
    assert detection_probability(40, 30, 0.05) == pytest.approx(
        float(binom.sf(29, 40, 0.95)), rel=1e-9
    )
    with pytest.raises(InputError):
        false_report_probability(-0.1, 10, 3)
