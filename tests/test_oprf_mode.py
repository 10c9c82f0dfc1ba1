"""``oprf`` epochs in RFC 9497 OPRF mode (no proofs), the mode switch, and the blind pool."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from blindmatch.client import HttpTransport
from blindmatch.protocol import (
    REGISTRY,
    DecodeError,
    DeserializeError,
    LocalTransport,
    Query,
    Transport,
    TransportReply,
    VerifyError,
    WrongProtocolError,
    get_algo,
)
from blindmatch.protocol.hazmat import ristretto as R
from blindmatch.protocol.hazmat.voprf import Mode, OPRFClient, Proof, context_string
from blindmatch.protocol.oprf import EvaluateResponse, Manifest, describe_state, rotate_epoch
from blindmatch.server.setdir import SetDir
from blindmatch.server.testing import LiveServer

from blindmatch.corpus import random_set

PDQ = get_algo("pdq")
OPRF = REGISTRY["oprf"]


def _manifest(tr: LocalTransport) -> Manifest:
    return Manifest.verify(tr.get("manifest").body)


def test_oprf_mode_matches_members_without_proofs(tmp_path: Path) -> None:
    hs = random_set(300, seed=3)
    srv = OPRF.open_server(hs, tmp_path / "state", {"mode": "oprf", "workers": 2})
    tr = LocalTransport(srv)
    assert _manifest(tr).suite == context_string(Mode.OPRF)
    client = OPRF.new_client(PDQ, tmp_path / "cache", {"allow_unverified": True})
    members = client.scan_many([Query(hs.value(i)) for i in range(0, 300, 7)], tr)
    outsiders = client.scan_many([Query(hs.value(i).flip([0, 9])) for i in range(40)], tr)
    assert all(r.matched for r in members)
    assert not any(r.matched for r in outsiders)
    # one element up, one element down, and an empty proof field: 20 + 32 bytes
    one = client.scan(Query(hs.value(5)), tr)
    assert one.bytes_up == 16 + 32 and one.bytes_down == 20 + 32


def test_default_client_refuses_unverifiable_server(tmp_path: Path) -> None:
    hs = random_set(50, seed=3)
    tr = LocalTransport(OPRF.open_server(hs, tmp_path / "state", {"mode": "oprf"}))
    client = OPRF.new_client(PDQ, tmp_path / "cache")
    with pytest.raises(WrongProtocolError, match="allow_unverified"):
        client.scan(Query(hs.value(0)), tr)


class Rewrite(Transport):
    """Passes requests to ``inner`` and rewrites successful evaluate responses."""

    def __init__(self, inner: Transport, fix: Callable[[EvaluateResponse], EvaluateResponse]) -> None:
        super().__init__()
        self.inner, self.fix = inner, fix

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        rep = self.inner.request(method, path, body, headers)
        if path == "evaluate" and rep.status == 200:
            fixed = self.fix(EvaluateResponse.from_bytes(rep.body)).to_bytes()
            return TransportReply(rep.status, fixed, rep.headers)
        return rep


def test_proof_stripped_from_voprf_response_is_rejected(tmp_path: Path) -> None:
    hs = random_set(50, seed=3)
    inner = LocalTransport(OPRF.open_server(hs, tmp_path / "state"))
    strip = Rewrite(inner, lambda r: EvaluateResponse(r.epoch, r.elements, None))
    # even a client that would accept OPRF mode insists on proofs from a VOPRF epoch
    client = OPRF.new_client(PDQ, tmp_path / "cache", {"allow_unverified": True})
    with pytest.raises(VerifyError):
        client.scan(Query(hs.value(0)), strip)


def test_proof_added_to_oprf_response_is_rejected(tmp_path: Path) -> None:
    hs = random_set(50, seed=3)
    inner = LocalTransport(OPRF.open_server(hs, tmp_path / "state", {"mode": "oprf"}))
    fake = Proof(R.random_scalar(), R.random_scalar())
    add = Rewrite(inner, lambda r: EvaluateResponse(r.epoch, r.elements, fake))
    client = OPRF.new_client(PDQ, tmp_path / "cache", {"allow_unverified": True})
    with pytest.raises(DecodeError, match="carries a proof"):
        client.scan(Query(hs.value(0)), add)


def test_mode_change_rotates_and_is_signed(tmp_path: Path) -> None:
    hs = random_set(80, seed=3)
    state = tmp_path / "state"
    OPRF.open_server(hs, state)
    assert describe_state(state)["epochs"][-1]["mode"] == "voprf"
    OPRF.open_server(hs, state, {"mode": "oprf"})
    info = describe_state(state)
    assert info["current"] == 2 and info["epochs"][-1]["mode"] == "oprf"
    # rotation keeps the current mode unless told otherwise
    ep = rotate_epoch(state, hs, grace_seconds=0)
    assert ep.server.mode is Mode.OPRF
    ep = rotate_epoch(state, hs, grace_seconds=0, mode="voprf")
    assert ep.server.mode is Mode.VOPRF
    with pytest.raises(WrongProtocolError):
        rotate_epoch(state, hs, mode="poprf")


def test_blind_pool_gives_fresh_blinds_with_their_inverses() -> None:
    c = OPRFClient()
    states = c.blind_many([bytes([i]) for i in range(70)]) + [c.blind(b"x") for _ in range(5)]
    blinds = [s.blind for s in states]
    assert len(set(blinds)) == len(blinds)
    one = (1).to_bytes(32, "little")
    for s in states:
        assert R.scalar_mul(s.blind, s.inverse) == one
        # the blinded element really is blind·H(input)
        h = R.hash_to_group(s.input, b"HashToGroup-" + context_string(Mode.OPRF))
        assert R.scalar_mult(s.blind, h) == s.blinded_element


def test_oprf_mode_over_http(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    values = [PDQ.from_bytes(rng.bytes(32)) for _ in range(120)]
    sd = SetDir.build(tmp_path / "set", PDQ, values)
    env = {"BLINDMATCH_PROTOCOLS": "oprf", "BLINDMATCH_OPRF_MODE": "oprf"}
    with LiveServer(sd.path, env=env) as srv:
        tr = HttpTransport(srv.url, "oprf")
        try:
            refusing = OPRF.new_client(PDQ, tmp_path / "c1")
            with pytest.raises(WrongProtocolError):
                refusing.scan(Query(sd.hashes.value(3)), tr)
            client = OPRF.new_client(PDQ, tmp_path / "c2", {"allow_unverified": True})
            assert client.scan(Query(sd.hashes.value(3)), tr).matched is True
            assert client.scan(Query(sd.hashes.value(3).flip(range(30))), tr).matched is False
        finally:
            tr.close()


def test_blind_pool_is_safe_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    c = OPRFClient()
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda i: c.blind_many([bytes([i])] * 7), range(64)))
    blinds = [st.blind for b in batches for st in b]
    assert len(blinds) == 64 * 7 and len(set(blinds)) == len(blinds)


# not canonical-invalid, not the identity, but no ristretto255 point (s = 1 is "negative"):
# the parser lets it through to the scalar multiplication, which must refuse it
_NOT_A_POINT = bytes([1]) + bytes(31)


@pytest.mark.parametrize(("mode", "error"), [("oprf", DeserializeError), ("voprf", VerifyError)])
def test_evaluated_element_that_is_no_point_is_rejected(tmp_path: Path, mode: str, error: type) -> None:
    hs = random_set(50, seed=3)
    inner = LocalTransport(OPRF.open_server(hs, tmp_path / "state", {"mode": mode}))
    bad = Rewrite(inner, lambda r: EvaluateResponse(r.epoch, (_NOT_A_POINT,), r.proof))
    client = OPRF.new_client(PDQ, tmp_path / "cache", {"allow_unverified": True})
    with pytest.raises(error):
        client.scan(Query(hs.value(0)), bad)


def test_identity_evaluated_element_is_rejected_at_parse() -> None:
    raw = EvaluateResponse(1, (R.IDENTITY,), None).to_bytes()
    with pytest.raises(DeserializeError):
        EvaluateResponse.from_bytes(raw)
