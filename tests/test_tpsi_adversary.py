"""tpsi against adversaries, with the real client and server: framing, downgrade, TOFU, probes."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blindmatch.client import HttpTransport, ServerError
from blindmatch.protocol import HashSet, LocalTransport, Query, get_algo
from blindmatch.protocol.hazmat import aead, dhf, shamir
from blindmatch.protocol.hazmat.ristretto import base_mult, random_scalar, scalar_mult
from blindmatch.protocol.tpsi import TPSI, TpsiClient, TpsiServer
from blindmatch.protocol.tpsi._core import (
    LABEL_INNER,
    LABEL_OUTER,
    AccountSecrets,
    _aad_ad,
    _aad_inner,
    _aad_outer,
    cuckoo_item,
    pad_ad,
)
from blindmatch.protocol.tpsi._wire import Manifest, UploadBatch, Voucher, account_bytes
from blindmatch.server import LiveServer, SetDir
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import _http

PDQ = get_algo("pdq")
TOKEN = "admin-" + secrets.token_hex(8)


def forged_voucher(m: Manifest, acct: AccountSecrets, account: str, ad: bytes) -> Voucher:
    """A voucher that opens without matching anything: Q = γ·G, S = γ·L (the synthetic trick),
    carrying a *real* share, detection vector and AD of the attacker's own polynomial."""
    acc = account_bytes(account)
    vid, rkey = secrets.token_bytes(16), secrets.token_bytes(32)
    gamma = random_scalar()
    q = base_mult(gamma)
    pairs = [(q, aead.seal_once(scalar_mult(gamma, m.big_l), rkey, _aad_outer(m.epoch, vid, q), LABEL_OUTER))]
    for _ in range(m.n_hash - 1):
        qn = base_mult(random_scalar())
        k = secrets.token_bytes(32)
        pairs.append(
            (qn, aead.seal_once(k, secrets.token_bytes(32), _aad_outer(m.epoch, vid, qn), LABEL_OUTER))
        )
    item = cuckoo_item(1, secrets.token_bytes(32))
    x = acct.x_of(item)
    xb = shamir.encode_element(x)
    det = dhf.evaluate(acct.det_coeffs, dhf.detection_point(xb))
    adct = aead.seal(acct.adkey, pad_ad(ad, m.ad_max), _aad_ad(vid, acc), b"tpsi-ad")
    inner = xb + shamir.encode_element(shamir.share(acct.key_coeffs, x)) + det.astype("<u4").tobytes() + adct
    return Voucher(vid, m.epoch, tuple(pairs), aead.seal_once(rkey, inner, _aad_inner(vid, acc), LABEL_INNER))


def attacker_upload(account: str, vouchers: list[Voucher]) -> bytes:
    """What a third party can send: its vouchers under the victim's id, signed with its own key."""
    batch = UploadBatch(account, tuple(v.to_bytes() for v in vouchers))
    return batch.signed(Ed25519PrivateKey.generate()).to_bytes()


def _reveals(url: str, account: str) -> list[str]:
    hdr = {"authorization": f"Bearer {TOKEN}"}
    r = _http.post(url + "/v1/tpsi/reveals", headers=hdr, content=account.encode(), timeout=60)
    assert r.status_code == 200, r.text
    return sorted(str(x["ad_text"]) for x in r.json()["reveals"])


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tpsi-adv-set")
    SetDir.build(d, PDQ, [PDQ.from_bytes(secrets.token_bytes(32)) for _ in range(16)], ["test"])
    return d


LOW_T = {
    "BLINDMATCH_PROTOCOLS": "tpsi,plain",
    "BLINDMATCH_TPSI_THRESHOLD": "3",
    "BLINDMATCH_TPSI_SYNTHETIC_RATE": "0.0",
    "BLINDMATCH_ADMIN_TOKEN": TOKEN,
}
LOW_T_CLIENT: dict[str, Any] = {"min_threshold": 2, "min_synthetic_rate": 0.0}


def test_third_party_cannot_frame_an_account_or_block_its_matches(set_dir: Path, tmp_path: Path) -> None:
    """A third party uploads t synthetic-trick vouchers under the victim's id."""
    members = SetDir.open(set_dir).hashes.values()
    with LiveServer(set_dir, env=LOW_T) as srv:
        victim = TPSI.new_client(PDQ, tmp_path / "victim", LOW_T_CLIENT)
        tr = HttpTransport(srv.url, "tpsi")
        victim.scan(
            Query(PDQ.from_bytes(secrets.token_bytes(32)), account="victim", associated_data=b"cat.jpg"), tr
        )
        m = victim.manifest
        assert m is not None
        mallory = AccountSecrets.derive(secrets.token_bytes(32), m.threshold, m.dhf_dim)
        forged = [forged_voucher(m, mallory, "victim", f"planted-{i}".encode()) for i in range(m.threshold)]
        r = _http.post(srv.url + "/v1/tpsi/vouchers", content=attacker_upload("victim", forged))
        assert r.status_code == 403, f"third-party upload accepted: {r.status_code}"
        assert _reveals(srv.url, "victim") == []
        for i in range(2 * m.threshold):
            victim.scan(Query(members[i], account="victim", associated_data=f"real-{i}".encode()), tr)
        assert _reveals(srv.url, "victim") == sorted(f"real-{i}" for i in range(2 * m.threshold))
        tr.close()


def test_reveal_never_locks_in_the_first_polynomial(tmp_path: Path) -> None:
    """Vouchers of a second polynomial under one account are revealed and flagged."""
    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 40))
    srv = TPSI.open_server(
        hs, tmp_path / "s", {"reveal_mode": "inline", "synthetic_rate": 0.0, "threshold": 4}
    )
    assert isinstance(srv, TpsiServer)
    tr = LocalTransport(srv)
    victim = TPSI.new_client(PDQ, tmp_path / "c", LOW_T_CLIENT)
    victim.setup(tr)
    m = victim.manifest
    assert m is not None
    other = AccountSecrets.derive(secrets.token_bytes(32), m.threshold, m.dhf_dim)
    forged = [forged_voucher(m, other, "acct", f"planted-{i}".encode()) for i in range(m.threshold)]
    tr.post("vouchers", victim_signed_upload(victim, "acct", forged))
    assert len(srv.reveals("acct")) == m.threshold  # the first polynomial's AD is revealed
    members = hs.values()
    for i in range(2 * m.threshold):
        victim.scan(Query(members[i], account="acct", associated_data=f"real-{i}".encode()), tr)
    got = {r.ad for r in srv.reveals("acct")}
    assert {f"real-{i}".encode() for i in range(2 * m.threshold)} <= got
    flags = [e for e in srv.store.audit_log("acct") if e["event"] == "inconsistent_polynomials"]
    assert flags and flags[-1]["detail"]["polynomials"] == 2
    srv.close()


def victim_signed_upload(client: TpsiClient, account: str, vouchers: list[Voucher]) -> bytes:
    """An upload sent with the account's own client identity (a compromised or reset device)."""
    batch = UploadBatch(account, tuple(v.to_bytes() for v in vouchers))
    return batch.signed(client._account(account)[1]).to_bytes()


def test_multi_probe_keeps_detection(tmp_path: Path) -> None:
    """t = 5, 15 real matches among 200 images, probe_bits 4, defaults k = 128, s = 5%."""
    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 64))
    srv = TPSI.open_server(hs, tmp_path / "s", {"reveal_mode": "manual", "threshold": 5})
    assert isinstance(srv, TpsiServer)
    tr = LocalTransport(srv)
    c = TPSI.new_client(PDQ, tmp_path / "c", {"probe_bits": 4, "min_threshold": 5})
    rng = np.random.default_rng()
    members = hs.values()
    qs = [
        Query(
            members[i], float_values=list(rng.normal(size=256)), account="a", associated_data=f"m{i}".encode()
        )
        for i in range(15)
    ]
    qs += [
        Query(
            PDQ.from_bytes(secrets.token_bytes(32)),
            float_values=list(rng.normal(size=256)),
            account="a",
            associated_data=f"n{i}".encode(),
        )
        for i in range(185)
    ]
    secrets.SystemRandom().shuffle(qs)
    for start in range(0, len(qs), 16):
        c.scan_many(qs[start : start + 16], tr)
    srv.process_reveals("a")
    got = {r.ad for r in srv.reveals("a")}
    real = {
        q.associated_data
        for q in qs[:]
        if q.associated_data.startswith(b"m") and not c.is_synthetic("a", q.hash)
    }
    assert len(real) >= 5
    assert got == real, f"revealed {len(got)} of {len(real)} real matches"
    srv.close()


def test_pinned_client_refuses_weakened_manifest(tmp_path: Path) -> None:
    """Same key, same set, re-signed with t = 2 and synthetic rate 0."""
    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 20))
    state = tmp_path / "s"
    honest = TPSI.open_server(hs, state, {"reveal_mode": "inline"})
    assert isinstance(honest, TpsiServer)
    m = honest.manifest
    pins = {"pinned_signing_key": m.public_key.hex(), "pinned_set_digest": m.set_digest.hex()}
    TPSI.new_client(PDQ, None, pins).setup(LocalTransport(honest))
    honest.close()
    weak = TPSI.open_server(hs, state, {"reveal_mode": "inline", "threshold": 2, "synthetic_rate": 0.0})
    assert isinstance(weak, TpsiServer)
    assert weak.manifest.public_key == m.public_key and weak.manifest.set_digest == m.set_digest
    c = TPSI.new_client(PDQ, None, pins)
    with pytest.raises(Exception) as ei:
        c.setup(LocalTransport(weak))
    assert getattr(ei.value, "code", "") == "client_policy"
    weak.close()


def test_first_use_key_persists_per_origin(set_dir: Path, tmp_path: Path) -> None:
    """A new key at the same origin is refused by a fresh client on the same cache."""
    other = tmp_path / "other-set"
    SetDir.build(other, PDQ, [PDQ.from_bytes(secrets.token_bytes(32)) for _ in range(8)], ["test"])
    env = {"BLINDMATCH_PROTOCOLS": "tpsi"}
    with LiveServer(set_dir, env=env) as srv:
        port = srv.port
        TPSI.new_client(PDQ, tmp_path / "cache", {}).setup(HttpTransport(srv.url, "tpsi"))
    with LiveServer(other, env=env, port=port) as impostor:
        with pytest.raises(Exception) as ei:
            TPSI.new_client(PDQ, tmp_path / "cache", {}).setup(HttpTransport(impostor.url, "tpsi"))
        assert getattr(ei.value, "code", "") == "bad_signature"


def test_uploads_must_carry_the_account_signature(tmp_path: Path) -> None:
    """Network or third party: unsigned, re-signed, tampered or re-addressed batches store nothing."""
    from blindmatch.protocol import AccountKeyMismatchError, SignatureError, WrongProtocolError
    from blindmatch.protocol.tpsi._wire import MSG_UPLOAD_UNSIGNED, PROTOCOL_ID
    from blindmatch.protocol.wire import encode_fields

    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 8))
    srv = TPSI.open_server(hs, tmp_path / "s", {"reveal_mode": "inline"})
    assert isinstance(srv, TpsiServer)
    tr = LocalTransport(srv)
    c = TPSI.new_client(PDQ, tmp_path / "c", {})
    c.scan(Query(hs.value(0), account="alice", associated_data=b"a"), tr)
    assert srv.store.voucher_count("alice") == 1
    v = c.vouchers_for(Query(hs.value(1), account="alice", associated_data=b"b"))
    good = UploadBatch("alice", tuple(x.to_bytes() for x in v)).signed(c._account("alice")[1])
    legacy = encode_fields(
        PROTOCOL_ID,
        MSG_UPLOAD_UNSIGNED,
        good.to_bytes()[4:]
        and [
            b"alice",
            len(v).to_bytes(4, "big"),
            b"".join(len(x).to_bytes(4, "big") + x for x in good.vouchers),
        ],
    )
    with pytest.raises(WrongProtocolError):
        tr.post("vouchers", legacy)
    tampered = bytearray(good.to_bytes())
    tampered[-100] ^= 1  # a voucher byte under the signature
    with pytest.raises(SignatureError):
        tr.post("vouchers", bytes(tampered))
    moved = UploadBatch("bob", good.vouchers, good.client_key, good.signature)  # relay to another account
    with pytest.raises(SignatureError):
        tr.post("vouchers", moved.to_bytes())
    with pytest.raises(AccountKeyMismatchError):
        tr.post(
            "vouchers", UploadBatch("alice", good.vouchers).signed(Ed25519PrivateKey.generate()).to_bytes()
        )
    assert srv.store.voucher_count("alice") == 1 and srv.store.voucher_count("bob") == 0
    tr.post("vouchers", good.to_bytes())
    assert srv.store.voucher_count("alice") == 2
    bound = [e for e in srv.store.audit_log("alice") if e["event"] == "account_bound"]
    assert len(bound) == 1
    srv.close()


def test_admin_enrollment_stops_a_first_upload_takeover(set_dir: Path, tmp_path: Path) -> None:
    """With first-use binding a third party can claim an unused id; with enrolment it cannot."""
    env = {**LOW_T, "BLINDMATCH_TPSI_ENROLLMENT": "admin"}
    members = SetDir.open(set_dir).hashes.values()
    with LiveServer(set_dir, env=env) as srv:
        tr = HttpTransport(srv.url, "tpsi")
        victim = TPSI.new_client(PDQ, tmp_path / "victim", LOW_T_CLIENT)
        victim.setup(tr)
        m = victim.manifest
        assert m is not None
        mallory = AccountSecrets.derive(secrets.token_bytes(32), m.threshold, m.dhf_dim)
        forged = [forged_voucher(m, mallory, "newbie", f"planted-{i}".encode()) for i in range(m.threshold)]
        r = _http.post(srv.url + "/v1/tpsi/vouchers", content=attacker_upload("newbie", forged))
        assert r.status_code == 403 and r.json()["error"] == "account_not_enrolled"
        with pytest.raises(ServerError) as ei:
            victim.scan(Query(members[0], account="newbie", associated_data=b"x"), tr)
        assert ei.value.code == "account_not_enrolled"
        hdr = {"authorization": f"Bearer {TOKEN}"}
        body = {"account": "newbie", "client_key": victim.client_key("newbie").hex()}
        assert _http.post(srv.url + "/v1/tpsi/accounts", json=body, headers=hdr).status_code == 200
        assert _http.post(srv.url + "/v1/tpsi/accounts", json=body).status_code == 401
        victim.manifest = None  # start over after the refusal
        for i in range(m.threshold):
            victim.scan(Query(members[i], account="newbie", associated_data=f"real-{i}".encode()), tr)
        r = _http.post(srv.url + "/v1/tpsi/vouchers", content=attacker_upload("newbie", forged))
        assert r.status_code == 403 and r.json()["error"] == "account_key_mismatch"
        assert _reveals(srv.url, "newbie") == sorted(f"real-{i}" for i in range(m.threshold))
        tr.close()


def test_manifest_digest_pin_and_floors(tmp_path: Path) -> None:
    """The whole-manifest digest pins every parameter; floors are configurable per client."""
    from blindmatch.protocol import PolicyError, SignatureError

    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 8))
    state = tmp_path / "s"
    srv = TPSI.open_server(hs, state, {"threshold": 12, "synthetic_rate": 0.02})
    assert isinstance(srv, TpsiServer)
    digest = srv.manifest.digest().hex()
    TPSI.new_client(PDQ, None, {"pinned_manifest_digest": digest}).setup(LocalTransport(srv))
    with pytest.raises(PolicyError):
        TPSI.new_client(PDQ, None, {"min_threshold": 13}).setup(LocalTransport(srv))
    with pytest.raises(PolicyError):
        TPSI.new_client(PDQ, None, {"min_synthetic_rate": 0.03}).setup(LocalTransport(srv))
    srv.close()
    srv = TPSI.open_server(hs, state, {"threshold": 11, "synthetic_rate": 0.02})  # same key, new epoch
    assert isinstance(srv, TpsiServer)
    TPSI.new_client(PDQ, None, {}).setup(LocalTransport(srv))  # within the default floors
    with pytest.raises(SignatureError):
        TPSI.new_client(PDQ, None, {"pinned_manifest_digest": digest}).setup(LocalTransport(srv))
    srv.close()


class At(LocalTransport):
    """The in-process transport at one fixed origin (trust is per origin)."""

    base_url = "https://tpsi.example"


def test_key_rotation_signed_by_the_old_key_is_followed(set_dir: Path, tmp_path: Path) -> None:
    """A signed rotation keeps trust (and the account's polynomial); an epoch rollback is refused."""
    from blindmatch.protocol import RollbackError
    from blindmatch.protocol.tpsi import rotate_signing_key

    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 40))
    state = tmp_path / "s"
    opts = {"reveal_mode": "inline", "threshold": 4, "synthetic_rate": 0.0}
    srv = TPSI.open_server(hs, state, opts)
    assert isinstance(srv, TpsiServer)
    old_manifest = srv.manifest_bytes
    cache = tmp_path / "cache"
    c = TPSI.new_client(PDQ, cache, LOW_T_CLIENT)
    for i in range(2):
        c.scan(Query(hs.value(i), account="acct", associated_data=f"before-{i}".encode()), At(srv))
    srv.close()
    new_key = rotate_signing_key(state)
    srv = TPSI.open_server(hs, state, opts)
    assert isinstance(srv, TpsiServer)
    assert srv.manifest.public_key == new_key and srv.manifest.epoch == 2
    c = TPSI.new_client(PDQ, cache, LOW_T_CLIENT)  # a new process, same cache: follows the rotation
    for i in range(2, 4):
        c.scan(Query(hs.value(i), account="acct", associated_data=f"after-{i}".encode()), At(srv))
    assert {r.ad for r in srv.reveals("acct")} == {b"before-0", b"before-1", b"after-2", b"after-3"}
    srv.close()

    class Replay(At):
        def request(self, method: str, path: str, body: bytes = b"", headers: Any = None) -> Any:
            rep = super().request(method, path, body, headers)
            if path == "manifest":
                return type(rep)(200, old_manifest, rep.headers)
            return rep

    # the old key's manifest is no longer accepted at this origin (trust moved to the new key) ...
    srv = TPSI.open_server(hs, state, opts)
    assert isinstance(srv, TpsiServer)
    with pytest.raises(Exception) as ei:
        TPSI.new_client(PDQ, cache, LOW_T_CLIENT).setup(Replay(srv))
    assert getattr(ei.value, "code", "") == "bad_signature"
    srv.close()
    # ... and under one key an older epoch is a rollback
    srv = TPSI.open_server(hs, state, {**opts, "threshold": 5})  # epoch 3, same (new) key
    assert isinstance(srv, TpsiServer)
    TPSI.new_client(PDQ, cache, LOW_T_CLIENT).setup(At(srv))
    epoch3 = srv.manifest_bytes
    srv.close()
    srv = TPSI.open_server(hs, state, opts)  # back to threshold 4: epoch 4
    assert isinstance(srv, TpsiServer)
    TPSI.new_client(PDQ, cache, LOW_T_CLIENT).setup(At(srv))
    old_manifest = epoch3
    with pytest.raises(RollbackError):
        TPSI.new_client(PDQ, cache, LOW_T_CLIENT).setup(Replay(srv))
    srv.close()


@pytest.mark.parametrize("probe_bits", [0, 2, 4])
def test_synthetic_images_open_one_voucher_whatever_the_probe_count(tmp_path: Path, probe_bits: int) -> None:
    """Capacity per probe_bits: opened synthetic vouchers = synthetic *images*, not 2^k per image.

    dhf_dim = 16 and s = 20% over 40 images: about 8 synthetic openings, inside the capacity,
    for every probe count (with a coin per probe, k = 4 would open about 128 and detection fails).
    """
    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 32))
    opts = {"reveal_mode": "manual", "threshold": 3, "synthetic_rate": 0.2, "dhf_dim": 16}
    srv = TPSI.open_server(hs, tmp_path / "s", opts)
    assert isinstance(srv, TpsiServer)
    c = TPSI.new_client(PDQ, tmp_path / "c", {"probe_bits": probe_bits, "min_threshold": 3})
    rng = np.random.default_rng()
    members = hs.values()
    qs = [
        Query(members[i], float_values=list(rng.normal(size=256)), account="a", associated_data=b"m%d" % i)
        for i in range(8)
    ]
    qs += [
        Query(PDQ.from_bytes(secrets.token_bytes(32)), float_values=list(rng.normal(size=256)), account="a")
        for _ in range(32)
    ]
    c.scan_many(qs, LocalTransport(srv))
    synthetic = [q for q in qs if c.is_synthetic("a", q.hash)]
    real_matches = {q.associated_data for q in qs[:8] if q not in synthetic}
    assert srv.store.opened_count("a") == len(synthetic) + len(real_matches)
    srv.process_reveals("a")
    got = {r.ad for r in srv.reveals("a")}
    assert got == (real_matches if len(real_matches) >= 3 else set())
    srv.close()
