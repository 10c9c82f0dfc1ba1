"""``oprf`` wire messages: Hypothesis round trips, fail-closed mutations, golden bytes."""

from __future__ import annotations

import hashlib

import pytest
from blindmatch.protocol import BlindmatchError, DecodeError, SignatureError
from blindmatch.protocol.hazmat import ristretto as R
from blindmatch.protocol.hazmat.voprf import Proof
from blindmatch.protocol.oprf import EvaluateRequest, EvaluateResponse, Manifest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

ORDER = 2**252 + 27742317777372353535851937790883648493
elements = st.binary(min_size=1, max_size=16).map(lambda b: R.hash_to_group(b, b"codec-test"))
scalars = st.integers(0, ORDER - 1).map(lambda i: i.to_bytes(32, "little"))
epochs = st.integers(0, 2**32 - 1)


@given(epochs, st.lists(elements, min_size=1, max_size=8))
def test_request_round_trip(epoch: int, elems: list[bytes]) -> None:
    req = EvaluateRequest(epoch, tuple(elems))
    data = req.to_bytes()
    assert len(data) == 16 + 32 * len(elems)
    assert EvaluateRequest.from_bytes(data) == req


@given(epochs, st.lists(elements, min_size=1, max_size=8), scalars, scalars)
def test_response_round_trip(epoch: int, elems: list[bytes], c: bytes, s: bytes) -> None:
    resp = EvaluateResponse(epoch, tuple(elems), Proof(c, s))
    data = resp.to_bytes()
    assert len(data) == 84 + 32 * len(elems)
    assert EvaluateResponse.from_bytes(data) == resp


@given(st.lists(elements, min_size=1, max_size=4), st.data())
def test_request_mutations_fail_closed(elems: list[bytes], data: st.DataObject) -> None:
    msg = EvaluateRequest(3, tuple(elems)).to_bytes()
    cut = data.draw(st.integers(0, len(msg) - 1))
    with pytest.raises(DecodeError):
        EvaluateRequest.from_bytes(msg[:cut])
    with pytest.raises(DecodeError):
        EvaluateRequest.from_bytes(msg + data.draw(st.binary(min_size=1, max_size=40)))
    pos = data.draw(st.integers(0, len(msg) - 1))
    bad = bytearray(msg)
    bad[pos] ^= 1 << data.draw(st.integers(0, 7))
    try:
        out = EvaluateRequest.from_bytes(bytes(bad))
    except BlindmatchError:
        return
    assert out != EvaluateRequest(3, tuple(elems))


manifests = st.builds(
    Manifest,
    algo=st.sampled_from(["pdq", "phash", "dhash", "sha256"]),
    set_size=st.integers(1, 2**40),
    set_digest=st.binary(min_size=32, max_size=32),
    filter_digest=st.binary(min_size=32, max_size=32),
    filter_bytes=st.integers(0, 2**40),
    fpr_inverse=st.integers(4, 2**56),
    epoch=epochs,
    created=st.integers(0, 2**40),
    public_key=elements,
    signing_key=st.just(b""),
)


@settings(max_examples=30)
@given(manifests, st.data())
def test_manifest_round_trip_and_mutations(m: Manifest, data: st.DataObject) -> None:
    key = Ed25519PrivateKey.generate()
    m = Manifest(**{**m.__dict__, "signing_key": key.public_key().public_bytes_raw()})
    signed = m.sign(key)
    assert Manifest.verify(signed) == m
    assert Manifest.from_payload(m.payload()) == m
    assert len(m.root_digest()) == 64
    pos = data.draw(st.integers(0, len(signed) - 1))
    bad = bytearray(signed)
    bad[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises((DecodeError, SignatureError)):
        Manifest.verify(bytes(bad))
    with pytest.raises(DecodeError):
        Manifest.verify(signed[: data.draw(st.integers(0, len(signed) - 1))])


# Golden bytes: format version 1 (blindmatch-oprf-v1). Changing any encoding must
# bump the version and keep these as the old format's reference.
_G_ELEM = R.hash_to_group(b"golden", b"blindmatch-oprf-v1|golden")
_G_PROOF = Proof((1).to_bytes(32, "little"), (2).to_bytes(32, "little"))
_G_MANIFEST = Manifest(
    algo="pdq",
    set_size=1000,
    set_digest=bytes(range(32)),
    filter_digest=bytes(range(32, 64)),
    filter_bytes=5188,
    fpr_inverse=2**40,
    epoch=7,
    created=1_700_000_000,
    public_key=_G_ELEM,
    signing_key=bytes(32),
)


def test_golden_v1() -> None:
    assert _G_ELEM.hex() == "b08fcb818fd61d7624dcfd483a35a44122cbad99a04fbf2a9a32762710e51069"
    req = EvaluateRequest(7, (_G_ELEM,)).to_bytes()
    assert req.hex() == "01020102" + "00000004" + "00000007" + "00000020" + _G_ELEM.hex()
    resp = EvaluateResponse(7, (_G_ELEM,), _G_PROOF).to_bytes()
    assert resp.hex() == (
        "01020203"
        + "00000004"
        + "00000007"
        + "00000020"
        + _G_ELEM.hex()
        + "00000040"
        + _G_PROOF.to_bytes().hex()
    )
    payload = _G_MANIFEST.payload()
    assert payload[:4] == bytes([1, 2, 5, 12]) and len(payload) == 265
    assert hashlib.sha256(payload).hexdigest() == GOLDEN_PAYLOAD_SHA256
    assert _G_MANIFEST.root_digest() == GOLDEN_ROOT


GOLDEN_PAYLOAD_SHA256 = "d754aea409474c82381d4f1d26d83717e108be4728e8e24b88d454e9c02c9ab2"
GOLDEN_ROOT = "2f587b996fed0cda15196c521b26dddfa3aeecf4653ee17300a92cfe3aa697c7"
