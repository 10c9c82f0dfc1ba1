"""mpc engine and codecs: verdict = plaintext Hamming rule; malicious clients refused; strict decoding."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from blindmatch.protocol import (
    LengthError,
    MaliciousSharesError,
    SignatureError,
    UnknownModeError,
    UnknownVersionError,
    get_algo,
)
from blindmatch.protocol.mpc._circuit import (
    FERMAT_MULS,
    MASKS,
    PartyCircuit,
    SetColumns,
    column_tables,
    read_outputs,
    roots,
)
from blindmatch.protocol.mpc._field import P, from_wire, prg, to_wire
from blindmatch.protocol.mpc._sharing import share_vector
from blindmatch.protocol.mpc._wire import (
    MpcManifest,
    MpcQuery,
    MpcReply,
    PartyInfo,
    QueryMode,
    entry_message,
    manifest_head,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .mpc_helpers import bits_of, run_circuits, run_three

PDQ = get_algo("pdq")
_V2_SHA256 = "5899f27699e0715c606ec1dca8e6417b67b44c7735267f6a1c0d440e51e6d3a7"


def _hamming_min(words: np.ndarray, x: np.ndarray) -> int:
    q = np.packbits(x.astype(np.uint8)).view(">u8").astype(np.uint64)
    return int(np.unpackbits((words ^ q).view(np.uint8), axis=1).sum(axis=1).min())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    flips=st.sampled_from([0, 1, 15, 30, 31, 32, 33, 60, 128]),
    radius=st.sampled_from([31, 10, 0]),
    chunk=st.sampled_from([7, 64, 1 << 19]),
)
def test_verdict_equals_plaintext_hamming(seed: int, n: int, flips: int, radius: int, chunk: int) -> None:
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**63, (n, 4), dtype=np.uint64) * 2 + rng.integers(0, 2, (n, 4), dtype=np.uint64)
    x = bits_of(words[rng.integers(n)])
    x[rng.choice(256, flips, replace=False)] ^= 1
    run = run_three(SetColumns.build(words, radius), x, chunk=chunk)
    assert run.errors == [None, None, None]
    assert bool(np.all(run.opened == 0)) == (_hamming_min(words, x) <= radius)


def _flip(bits: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    out = bits.copy()
    out[rng.choice(bits.size, k, replace=False)] ^= 1
    return out


def _distances(words: np.ndarray, x: np.ndarray) -> np.ndarray:
    q = np.packbits(x.astype(np.uint8)).view(">u8").astype(np.uint64)
    return np.unpackbits((words ^ q).view(np.uint8), axis=1).sum(axis=1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 200),
    planted=st.sampled_from([0, 1, 3]),
    radius=st.sampled_from([31, 10, 0]),
    chunk=st.sampled_from([7, 64, 1 << 19]),
    server_learns=st.booleans(),
)
def test_count_equals_plaintext_number_within_radius(
    seed: int, n: int, planted: int, radius: int, chunk: int, server_learns: bool
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, 256).astype(np.uint32)
    near = [_flip(x, int(rng.integers(0, radius + 1)), rng) for _ in range(planted)]
    edge = [_flip(x, radius + 1, rng)]  # just outside the radius: must not be counted
    rows = [np.packbits(b.astype(np.uint8)).view(">u8").astype(np.uint64) for b in near + edge]
    words = np.concatenate([rng.integers(0, 2**63, (n, 4), dtype=np.uint64), np.stack(rows)])
    words = words[rng.permutation(len(words))]
    expect = int((_distances(words, x) <= radius).sum())
    assert expect == planted  # random entries are ~128 bits away
    run = run_three(SetColumns.build(words, radius), x, chunk=chunk, count=True, server_learns=server_learns)
    assert run.errors == [None, None, None]
    if server_learns:
        assert run.outputs[1] is None and run.outputs[2] is None and run.outputs[0] is not None
        opened = run.outputs[0]
    else:
        opened = run.opened
    assert opened.size == 1 + MASKS
    assert read_outputs(opened, count=True) == (expect > 0, expect)


@pytest.mark.parametrize("near", [P, P + 2])
def test_count_mode_verdict_stays_exact_when_the_count_wraps(near: int) -> None:
    """p entries within r open as a count of 0 (mod p): the verdict comes from the masked OR."""
    rng = np.random.default_rng(near)
    x = rng.integers(0, 2, 256).astype(np.uint32)
    rows = np.packbits(np.repeat(x[None, :].astype(np.uint8), near, axis=0), axis=1).view(">u8")
    words = np.concatenate([rows.astype(np.uint64), rng.integers(0, 2**63, (50, 4), dtype=np.uint64)])
    run = run_three(SetColumns.build(words, 31), x, chunk=4096, count=True)
    assert run.errors == [None, None, None]
    assert read_outputs(run.opened, count=True) == (True, near % P)  # matched, although c = 0 for p


def test_fermat_indicator_is_exact_on_every_field_element() -> None:
    """f^(p−1) = 1 for f ≠ 0 and 0 for f = 0, over all of GF(p), in FERMAT_MULS rounds."""
    f = np.arange(P, dtype=np.uint32)
    comps = share_vector(f)

    def body(i: int, circuit: PartyCircuit) -> np.ndarray:
        return circuit.fermat(comps[i], comps[(i + 1) % 3])[0]

    run = run_circuits(body)
    assert run.errors == [None, None, None]
    assert run.opened.tolist() == [0] + [1] * (P - 1)
    assert len(run.views[0]) == FERMAT_MULS == 16  # one frame per multiplication round


def test_server_learns_opens_only_at_party_0() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2**63, (50, 4), dtype=np.uint64)
    hit = run_three(SetColumns.build(words, 31), bits_of(words[7]), server_learns=True)
    miss = run_three(SetColumns.build(words, 31), bits_of(~words[7]), server_learns=True)
    assert hit.outputs[1] is None and hit.outputs[2] is None
    assert hit.outputs[0] is not None and not hit.outputs[0].any()
    assert miss.outputs[0] is not None and miss.outputs[0].any()


def test_roots_cover_exactly_the_allowed_distances() -> None:
    for r in (0, 1, 10, 31):
        w = {abs(2 * d - r) for d in range(r + 1)}
        assert set(roots(r)) == w


def test_non_binary_input_is_refused_by_every_party() -> None:
    rng = np.random.default_rng(4)
    words = rng.integers(0, 2**63, (40, 4), dtype=np.uint64)
    x = bits_of(words[0])
    x[17] = 2  # a value the OR circuit would happily fold in
    run = run_three(SetColumns.build(words, 31), x)
    assert all(isinstance(e, MaliciousSharesError) for e in run.errors)


@pytest.mark.parametrize("value", [2, P - 1, 5000])
def test_single_non_bit_among_bits_is_refused(value: int) -> None:
    words = np.random.default_rng(5).integers(0, 2**63, (10, 4), dtype=np.uint64)
    x = np.zeros(256, dtype=np.uint32)
    x[255] = value
    run = run_three(SetColumns.build(words, 31), x)
    assert all(isinstance(e, MaliciousSharesError) for e in run.errors)


@pytest.mark.parametrize("victim", [0, 1, 2])
@pytest.mark.parametrize("hidden_from_bit_check", [False, True])
def test_inconsistent_replicated_copies_are_refused(victim: int, hidden_from_bit_check: bool) -> None:
    words = np.random.default_rng(6).integers(0, 2**63, (10, 4), dtype=np.uint64)
    x = bits_of(words[3])
    comps = [c.copy() for c in share_vector(x)]
    if hidden_from_bit_check:
        # the victim's own component is 0 at bit 0, so its bit-check term a(a + 2b) − a ignores b there:
        # only the comparison of the two holders' copies can catch the disagreement
        comps[victim][0] = 0
        other = (victim + 2) % 3
        comps[other][0] = (int(x[0]) - int(comps[(victim + 1) % 3][0])) % P
    pairs = [(comps[i].copy(), comps[(i + 1) % 3].copy()) for i in range(3)]
    bad = pairs[victim][1]  # this party's copy of component victim+1 differs from the other holder's
    bad[0] = (bad[0] + 1) % P
    run = run_three(SetColumns.build(words, 31), x, pairs=pairs)
    assert all(isinstance(e, MaliciousSharesError) for e in run.errors)


def test_prg_is_deterministic_and_in_range() -> None:
    a, b = prg(b"k" * 16, 3, 100_000), prg(b"k" * 16, 3, 100_000)
    assert np.array_equal(a, b) and int(a.max()) < P
    assert not np.array_equal(a, prg(b"k" * 16, 4, 100_000))


def test_field_wire_rejects_out_of_range_and_wrong_length() -> None:
    v = np.array([0, 1, P - 1], dtype=np.uint32)
    assert np.array_equal(from_wire(to_wire(v), 3), v)
    with pytest.raises(ValueError):
        from_wire(np.array([P], dtype="<u2").tobytes(), 1)
    with pytest.raises(ValueError):
        from_wire(b"\x00" * 5, 3)


_box = st.binary(min_size=0, max_size=200)


@settings(max_examples=40, deadline=None)
@given(
    mode=st.sampled_from([0, 1]), eph=st.binary(min_size=32, max_size=32), boxes=st.tuples(_box, _box, _box)
)
def test_query_and_reply_round_trip(mode: int, eph: bytes, boxes: tuple[bytes, bytes, bytes]) -> None:
    q = MpcQuery(mode, eph, boxes)
    assert MpcQuery.from_bytes(q.to_bytes()) == q
    assert MpcReply.from_bytes(MpcReply(boxes).to_bytes()) == MpcReply(boxes)


_KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(3)]


def _manifest(keys: list[Ed25519PrivateKey] = _KEYS) -> MpcManifest:
    """A format-2 manifest: each party's entry signed by its own key, the whole by party 0's."""
    pubs = [k.public_key().public_bytes_raw() for k in keys]
    head = manifest_head(1, 31, 1000, b"d" * 32, 1 << 19, 5)
    parties = tuple(
        PartyInfo(
            pubs[i],
            bytes([9 + i]) * 32,
            f"127.0.0.1:{9000 + i}",
            keys[i].sign(entry_message(head, i, pubs[i], bytes([9 + i]) * 32)),
        )
        for i in range(3)
    )
    return MpcManifest(1, 31, 1000, b"d" * 32, 1 << 19, 5, parties).signed(keys[0])  # type: ignore[arg-type]


def test_manifest_round_trip_and_signature() -> None:
    m = _manifest()
    again = MpcManifest.from_bytes(m.to_bytes())
    assert again == m
    again.verify()
    forged = MpcManifest(m.algo_id, 30, m.set_size, m.set_digest, m.chunk, m.masks, m.parties, m.signature)
    with pytest.raises(Exception, match="signature"):
        forged.verify()


def test_party0_cannot_vouch_for_another_partys_box_key() -> None:
    """Party 0 re-signs the whole manifest after swapping party 1's box key (or its head)."""
    m = _manifest()
    swapped = replace(m.parties[1], kex_pub=b"\x55" * 32)
    forged = replace(m, parties=(m.parties[0], swapped, m.parties[2])).signed(_KEYS[0])
    with pytest.raises(SignatureError, match="party 1's entry"):
        forged.verify()
    resized = replace(m, radius=40)  # party 0 re-signs its own entry for a radius the others did not
    own = replace(m.parties[0], entry_sig=_KEYS[0].sign(resized.entry_message(0)))
    resized = replace(resized, parties=(own, m.parties[1], m.parties[2])).signed(_KEYS[0])
    with pytest.raises(SignatureError, match="party 1's entry"):
        resized.verify()


def test_one_key_named_for_two_parties_is_refused() -> None:
    with pytest.raises(SignatureError, match="one key for two parties"):
        _manifest([_KEYS[0], _KEYS[1], _KEYS[1]]).verify()


def test_golden_bytes_manifest_format_2_and_format_1_refused() -> None:
    """Format 2 (message type 6) adds each party's entry signature; format 1 (type 4,
    party 0's signature only) fails closed with a typed error."""
    raw = _manifest().to_bytes()
    assert raw[:12].hex() == "01050602000002120105070d"  # 13 body fields
    assert hashlib.sha256(raw).hexdigest() == _V2_SHA256
    assert _manifest().digest() == hashlib.sha256(raw).digest()
    v1 = bytes.fromhex(
        "01050402000001460105050a0000003001001f00000000000003e8646464646464646464646464646464646464646464"
        "64646464646464646464640008000005000000208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801"
        "b40f6f5c0000002009090909090909090909090909090909090909090909090909090909090909090000000e3132372e"
        "302e302e313a39303030000000208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940000"
        "00200a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0000000e3132372e302e302e313a"
        "3930303100000020ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1000000200b0b0b0b"
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0000000e3132372e302e302e313a393030320000"
        "00409b92110e4e5c0b6b9e9bd776a83e0db66a5310e76dcbf828a3e9374ad566fedec7706b08c7e392d31ac09842e859"
        "21da6c5ff16a67be9fe4c902aed170ddcf0b"
    )
    with pytest.raises(UnknownVersionError, match="format 1"):
        MpcManifest.from_bytes(v1)


@pytest.mark.parametrize("cut", [1, 5, 40])
def test_truncated_extra_and_unknown_version_fail_closed(cut: int) -> None:
    body = MpcQuery(0, b"e" * 32, (b"a" * 100, b"b" * 100, b"c" * 100)).to_bytes()
    with pytest.raises(LengthError):
        MpcQuery.from_bytes(body[:-cut])
    with pytest.raises(LengthError):
        MpcQuery.from_bytes(body + b"\x00" * cut)
    with pytest.raises(UnknownVersionError):
        MpcQuery.from_bytes(bytes([9]) + body[1:])
    with pytest.raises(LengthError):
        MpcManifest.from_bytes(_manifest().to_bytes()[:-cut])


def test_query_mode_byte_keeps_the_old_encodings_and_refuses_unknown_values() -> None:
    assert QueryMode(False, False).to_byte() == 0  # client-learns, before count mode existed
    assert QueryMode(True, False).to_byte() == 1  # server-learns, before count mode existed
    for byte in range(4):
        assert QueryMode.from_byte(byte).to_byte() == byte
    assert QueryMode.from_byte(2) == QueryMode(server_learns=False, count=True)
    assert QueryMode.from_byte(3) == QueryMode(server_learns=True, count=True)
    for bad in (4, 7, 128, 255):
        with pytest.raises(UnknownModeError):
            MpcQuery.from_bytes(MpcQuery(bad, b"e" * 32, (b"a", b"b", b"c")).to_bytes())
        with pytest.raises(UnknownModeError):
            QueryMode.from_byte(bad)


# Queries as encoded before count mode existed (mode byte 0 and 1); the encoding must not change.
_GOLDEN_QUERIES = {
    0: "010501050000000100000000206565656565656565656565656565656565656565656565656565656565656565"
    "000000016100000001620000000163",
    1: "010501050000000101000000206565656565656565656565656565656565656565656565656565656565656565"
    "000000016100000001620000000163",
}


@pytest.mark.parametrize("mode", [0, 1])
def test_queries_of_before_count_mode_keep_their_bytes(mode: int) -> None:
    golden = bytes.fromhex(_GOLDEN_QUERIES[mode])
    assert MpcQuery(mode, b"e" * 32, (b"a", b"b", b"c")).to_bytes() == golden
    assert QueryMode.from_byte(MpcQuery.from_bytes(golden).mode) == QueryMode(server_learns=bool(mode))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"pinned_signing_keys": "aa" * 32}, "three comma-separated"),
        ({"pinned_signing_keys": ",".join(["aa" * 32, "bb" * 32, "zz" * 32])}, "32 bytes of hex"),
        ({"pinned_signing_keys": ",".join(["aa" * 32, "bb" * 32, "aa" * 32])}, "one key twice"),
        (
            {
                "pinned_signing_keys": ",".join(["aa" * 32, "bb" * 32, "cc" * 32]),
                "pinned_signing_key": "dd" * 32,
            },
            "disagree about party 0",
        ),
    ],
)
def test_pinned_signing_keys_are_checked_as_options(options: dict[str, str], match: str) -> None:
    from blindmatch.protocol import OptionError
    from blindmatch.protocol.mpc import MpcClientOptions

    with pytest.raises(OptionError, match=match):
        MpcClientOptions.from_options(options)
    three = ",".join(["aa" * 32, "bb" * 32, "cc" * 32])
    assert MpcClientOptions.from_options({"pinned_signing_keys": three}).pins()[2] == b"\xcc" * 32


@pytest.mark.parametrize("bits", [64, 256])
def test_column_tables_equal_the_bitwise_sum(bits: int) -> None:
    """Every entry of every 16-bit table, against 2·Σ_t x_t·(1 − 2·bit_t(v)) mod p term by term
    (bit 0 is the most significant, as in the set's columns), edge values included."""
    rng = np.random.default_rng(bits)
    x = rng.integers(0, P, bits).astype(np.uint32)
    x[:3] = (0, P - 1, 1)
    v = np.arange(65536)
    v_bits = (v[:, None] >> (15 - np.arange(16))) & 1  # (65536, 16)
    tables = column_tables(x)
    assert tables.shape == (bits // 16, 65536) and tables.dtype == np.uint32
    for c in range(bits // 16):
        want = (2 * ((1 - 2 * v_bits) * x[16 * c : 16 * c + 16].astype(np.int64)).sum(axis=1)) % P
        assert np.array_equal(tables[c], want)
