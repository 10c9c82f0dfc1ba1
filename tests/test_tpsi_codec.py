"""tPSI wire codecs: Hypothesis round trips, mutations, golden bytes, signature checks."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from blindmatch.protocol import (
    BatchTooLargeError,
    DecodeError,
    DeserializeError,
    InputError,
    LengthError,
    SignatureError,
    UnknownVersionError,
    WrongProtocolError,
    get_algo,
)
from blindmatch.protocol.hazmat.ristretto import base_mult, random_scalar
from blindmatch.protocol.tpsi import TPSI
from blindmatch.protocol.tpsi._wire import (
    Manifest,
    TableMsg,
    UploadBatch,
    UploadReply,
    Voucher,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from blindmatch.corpus import random_set

BASEPOINT = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
KEY = Ed25519PrivateKey.generate()
NON_CANONICAL = [
    bytes(32),  # identity
    bytes([1]) + bytes(31),  # odd ("negative") field element
    b"\xff" * 32,  # >= p
    (2**255 - 19).to_bytes(32, "little"),  # p itself
    BASEPOINT[:31] + bytes([BASEPOINT[31] | 0x80]),  # top bit set
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    hs = random_set(20, seed=None)
    srv = TPSI.open_server(
        hs,
        tmp_path_factory.mktemp("codec"),
        {"threshold": 3, "dhf_dim": 4, "ad_max": 16, "reveal_mode": "manual"},
    )
    yield srv
    srv.close()


points = st.builds(lambda _: base_mult(random_scalar()), st.integers(0, 3))
vouchers = st.builds(
    Voucher,
    st.binary(min_size=16, max_size=16),
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(points, st.binary(min_size=80, max_size=80)), min_size=1, max_size=4).map(
        tuple
    ),
    st.binary(min_size=48, max_size=200),
)
accounts = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
    min_size=1,
    max_size=40,
).filter(lambda a: 127 not in map(ord, a) and len(a.encode()) <= 128)


@settings(max_examples=50)
@given(vouchers)
def test_voucher_round_trip(v: Voucher) -> None:
    assert Voucher.from_bytes(v.to_bytes()) == v


@settings(max_examples=30)
@given(accounts, st.lists(vouchers, min_size=1, max_size=4))
def test_upload_round_trip(account: str, vs: list[Voucher]) -> None:
    body = UploadBatch(account, tuple(v.to_bytes() for v in vs)).signed(KEY).to_bytes()
    got = UploadBatch.from_bytes(body, 10)
    assert got.account == account and got.parsed() == vs
    assert got.client_key == KEY.public_key().public_bytes_raw()
    assert UploadBatch.count(body) == len(vs)
    if len(vs) > 1:
        with pytest.raises(BatchTooLargeError):
            UploadBatch.from_bytes(body, len(vs) - 1)


@given(
    st.integers(0, 5), st.integers(0, 5), st.lists(st.binary(min_size=16, max_size=16), max_size=5)
)
def test_upload_reply_round_trip(a: int, d: int, ids: list[bytes]) -> None:
    r = UploadReply(a, d, tuple(ids))
    assert UploadReply.from_bytes(r.to_bytes()) == r


@given(st.integers(0, 2**32 - 1), st.lists(points, min_size=1, max_size=5))
def test_table_round_trip(epoch: int, pts: list[bytes]) -> None:
    t = TableMsg(epoch, b"".join(pts))
    back = TableMsg.from_bytes(t.to_bytes())
    assert back == t and back.n_slots == len(pts) and back.slot(0) == pts[0]


@settings(max_examples=40)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 4),
    st.integers(2, 1000),
    st.integers(0, 10**6),
    st.integers(1, 2000),
    st.integers(0, 60000),
    st.integers(1, 2**32 - 1),
)
def test_manifest_round_trip_and_signature(
    epoch: int, d: int, t: int, ppm: int, k: int, ad_max: int, slots: int
) -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    m = Manifest(
        epoch,
        1,
        5,
        slots,
        d,
        secrets.token_bytes(16),
        secrets.token_bytes(32),
        BASEPOINT,
        t,
        ppm,
        k,
        ad_max,
        secrets.token_bytes(32),
        123,
        pub,
    ).signed(key)
    back = Manifest.from_bytes(m.to_bytes())
    assert back == m
    back.verify(pub)
    with pytest.raises(SignatureError):
        back.verify(bytes(32))
    with pytest.raises(SignatureError):
        replace(back, threshold=t + 1 if t < 1000 else t - 1).verify()


def test_manifest_every_bit_flip_is_caught(server) -> None:
    data = server.manifest_bytes
    Manifest.from_bytes(data).verify(server.public_key)
    for pos in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            try:
                Manifest.from_bytes(bytes(bad)).verify(server.public_key)
            except (DecodeError, SignatureError):
                continue
            pytest.fail(f"bit flip at {pos}.{bit} accepted")


def test_manifest_truncation_extension_version(server) -> None:
    data = server.manifest_bytes
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            Manifest.from_bytes(data[:cut])
    with pytest.raises(LengthError):
        Manifest.from_bytes(data + b"\x00")
    with pytest.raises(UnknownVersionError):
        Manifest.from_bytes(b"\x02" + data[1:])
    with pytest.raises(WrongProtocolError):
        Manifest.from_bytes(data[:1] + b"\x02" + data[2:])
    with pytest.raises(WrongProtocolError):
        Manifest.from_bytes(data[:2] + b"\x04" + data[3:])


@pytest.mark.parametrize("bad", NON_CANONICAL)
def test_voucher_rejects_bad_points(bad: bytes) -> None:
    v = Voucher(b"v" * 16, 1, ((BASEPOINT, b"c" * 80),), b"r" * 60)
    data = v.to_bytes().replace(BASEPOINT, bad)
    with pytest.raises(DeserializeError):
        Voucher.from_bytes(data)


def test_manifest_rejects_bad_l(server) -> None:
    m = Manifest.from_bytes(server.manifest_bytes)
    for bad in NON_CANONICAL:
        with pytest.raises(DeserializeError):
            Manifest.from_bytes(m.to_bytes().replace(m.big_l, bad))


@settings(max_examples=60)
@given(vouchers, st.data())
def test_voucher_mutations_fail_closed(v: Voucher, data: st.DataObject) -> None:
    msg = v.to_bytes()
    cut = data.draw(st.integers(0, len(msg) - 1))
    with pytest.raises(DecodeError):
        Voucher.from_bytes(msg[:cut])
    with pytest.raises(LengthError):
        Voucher.from_bytes(msg + data.draw(st.binary(min_size=1, max_size=8)))
    pos, bit = data.draw(st.integers(0, len(msg) - 1)), data.draw(st.integers(0, 7))
    bad = bytearray(msg)
    bad[pos] ^= 1 << bit
    try:
        out = Voucher.from_bytes(bytes(bad))
    except DecodeError:
        return
    assert out != v


def test_voucher_structure_limits() -> None:
    ok = Voucher(b"v" * 16, 1, ((BASEPOINT, b"c" * 80),), b"r" * 60)
    for broken in (
        replace(ok, vid=b"v" * 15),
        replace(ok, pairs=((BASEPOINT, b"c" * 79),)),
        replace(ok, pairs=((BASEPOINT, b"c" * 80),) * 5),
        replace(ok, rct=b"r" * 10),
    ):
        with pytest.raises(LengthError):
            Voucher.from_bytes(broken.to_bytes())
    with pytest.raises(LengthError):
        Voucher.from_bytes(replace(ok, pairs=()).to_bytes())


@pytest.mark.parametrize("account", ["", "a" * 129, "tab\there", "nul\x00", "\x7f"])
def test_bad_account_ids(account: str) -> None:
    with pytest.raises(InputError):
        UploadBatch(account, (b"x",)).signed(KEY)


def test_upload_batch_framing_errors() -> None:
    v = Voucher(b"v" * 16, 1, ((BASEPOINT, b"c" * 80),), b"r" * 60).to_bytes()
    good = UploadBatch("acct", (v, v)).signed(KEY).to_bytes()
    assert UploadBatch.from_bytes(good, 5).account == "acct"
    with pytest.raises(InputError):  # an unsigned batch cannot even be encoded
        UploadBatch("acct", (v,)).to_bytes()
    from blindmatch.protocol.wire import encode_fields

    def body(acc: bytes, n: int, blob: bytes) -> bytes:
        return encode_fields(3, 7, [acc, n.to_bytes(4, "big"), blob, bytes(32), bytes(64)])

    item = len(v).to_bytes(4, "big") + v
    for b in (
        body(b"acct", 0, b""),  # empty
        body(b"acct", 2, item),  # fewer than claimed
        body(b"acct", 1, item + b"\x00"),  # trailing bytes
        body(b"acct", 1, item[:-1]),  # truncated voucher
        body(b"\xff\xfe", 1, item),  # not UTF-8
        body(b"", 1, item),  # empty account
    ):
        with pytest.raises(DecodeError):
            UploadBatch.from_bytes(b, 5)
    assert UploadBatch.count(b"garbage") == 1


def test_golden_bytes_signed_upload_and_manifest_format_2() -> None:
    """Upload message type 7 (signed; replaced unsigned type 5) and manifest format 2
    (adds the rotation record), both introduced with upload authentication."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    assert UploadBatch("a", (b"\x07",)).signed(key).to_bytes().hex() == (
        "01030705" "00000001" "61" "00000004" "00000001" "00000005" "00000001" "07"
        "00000020" "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
        "00000040" "610b82e6b5387757b29e0e356f2ecadbae2f93580235a735e4f203d2db54bf86"
        "13b9d68480bb981f664bed68990622e797ac43e92d549ee399a8785c3cc0710d"
    )
    m = Manifest(
        epoch=1, algo_id=1, set_size=2, n_slots=5, n_hash=3, cuckoo_seed=bytes(16),
        table_digest=bytes(32), big_l=BASEPOINT, threshold=30, synthetic_ppm=50000, dhf_dim=128,
        ad_max=256, set_digest=bytes(32), created=0, public_key=key.public_key().public_bytes_raw(),
    ).signed(key)
    raw = m.to_bytes()
    assert len(raw) == 321 and raw[:12].hex() == "010301130000000102000000"  # 19 fields, format 2
    assert hashlib.sha256(raw).hexdigest() == (
        "9a623d53907edbff1b2d60f2f734f3ba91ebc1f02c78d87f7d1f2876482d92be"
    )
    assert m.digest().hex() == "51a16f7f0e33f84c89e97257da7a96433d2886a372fdd6a94946fc9829904508"
    assert Manifest.from_bytes(raw) == m


def test_golden_bytes_v1() -> None:
    """Wire v1 layouts; a change here needs a new version byte (CONVENTIONS)."""
    assert UploadReply(1, 2, (bytes(16),)).to_bytes().hex() == (
        "010306030000000400000001000000040000000200000010" + "00" * 16
    )
    v = Voucher(bytes(range(16)), 7, ((BASEPOINT, bytes(80)),), bytes(48))
    assert v.to_bytes().hex() == (
        "01030404"
        "00000010" + bytes(range(16)).hex() + "00000004"
        "00000007"
        "00000070" + BASEPOINT.hex() + "00" * 80 + "00000030" + "00" * 48
    )


def test_sizes_are_fixed_by_the_manifest(server, tmp_path: Path) -> None:
    from blindmatch.protocol import LocalTransport, Query

    m = server.manifest
    client = TPSI.new_client(get_algo("pdq"), tmp_path, {"min_threshold": 2, "min_synthetic_rate": 0})
    client.setup(LocalTransport(server))
    sizes = {
        len(v.to_bytes())
        for _ in range(5)
        for v in client.vouchers_for(
            Query(
                get_algo("pdq").from_bytes(secrets.token_bytes(32)),
                account="a",
                associated_data=secrets.token_bytes(secrets.randbelow(17)),
            )
        )
    }
    assert sizes == {m.voucher_bytes}
