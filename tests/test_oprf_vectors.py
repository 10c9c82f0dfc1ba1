"""RFC 9497 Appendix A.1: every ristretto255-SHA512 vector (OPRF, VOPRF, POPRF)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from blindmatch.protocol.errors import DeserializeError, VerifyError
from blindmatch.protocol.hazmat import voprf as V

DATA = json.loads((Path(__file__).parent / "vectors" / "rfc9497_ristretto255.json").read_text())


def _cases() -> list[Any]:
    out = []
    for mode, block in DATA["modes"].items():
        for vec in block["vectors"]:
            out.append(
                pytest.param(
                    mode, block, vec, id=f"{mode}-{vec['name'].split()[-1]}-B{vec['batch_size']}"
                )
            )
    return out


def _hx(xs: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


def test_vector_file_is_complete() -> None:
    assert DATA["suite"] == "ristretto255-SHA512"
    counts = {m: len(b["vectors"]) for m, b in DATA["modes"].items()}
    assert counts == {"OPRF": 2, "VOPRF": 3, "POPRF": 3}
    assert DATA["modes"]["OPRF"]["skSm"].startswith("5ebcea5e")


@pytest.mark.parametrize("mode_name", ["OPRF", "VOPRF", "POPRF"])
def test_derive_key_pair(mode_name: str) -> None:
    block = DATA["modes"][mode_name]
    sk, pk = V.derive_key_pair(
        V.Mode[mode_name], bytes.fromhex(block["Seed"]), bytes.fromhex(block["KeyInfo"])
    )
    assert sk.hex() == block["skSm"]
    if "pkSm" in block:
        assert pk.hex() == block["pkSm"]


@pytest.mark.parametrize(("mode_name", "block", "vec"), _cases())
def test_vector(mode_name: str, block: dict[str, Any], vec: dict[str, Any]) -> None:
    sk = bytes.fromhex(block["skSm"])
    inputs, blinds = _hx(vec["Input"]), _hx(vec["Blind"])
    want_blinded, want_eval = _hx(vec["BlindedElement"]), _hx(vec["EvaluationElement"])
    want_out = _hx(vec["Output"])
    info = bytes.fromhex(vec.get("Info", ""))
    r = bytes.fromhex(vec["ProofRandomScalar"]) if "ProofRandomScalar" in vec else None

    if mode_name == "OPRF":
        oc = V.OPRFClient()
        os_ = V.OPRFServer.from_private_bytes(sk)
        states = [oc._blind(x, b) for x, b in zip(inputs, blinds)]
        assert [s.blinded_element for s in states] == want_blinded
        evaluated = [os_.blind_evaluate(s.blinded_element) for s in states]
        assert evaluated == want_eval
        assert oc.finalize_batch(states, evaluated) == want_out
        assert [oc.finalize(s, e) for s, e in zip(states, evaluated)] == want_out
        assert [os_.evaluate(x) for x in inputs] == want_out
        return

    if mode_name == "VOPRF":
        vs = V.VOPRFServer.from_private_bytes(sk)
        assert vs.public_key.hex() == block["pkSm"]
        vc = V.VOPRFClient(vs.public_key)
        states = [vc._blind(x, b) for x, b in zip(inputs, blinds)]
        assert [s.blinded_element for s in states] == want_blinded
        evaluated, proof = vs._blind_evaluate_batch([s.blinded_element for s in states], r)
        assert evaluated == want_eval
        assert proof.to_bytes().hex() == vec["Proof"]
        assert V.Proof.from_bytes(proof.to_bytes()) == proof
        assert vc.finalize_batch(states, evaluated, proof) == want_out
        assert [vs.evaluate(x) for x in inputs] == want_out
        # the same proof must not verify for a reordered or altered batch
        if len(states) > 1:
            with pytest.raises(VerifyError):
                vc.finalize_batch(states[::-1], evaluated[::-1], proof)
        return

    ps = V.POPRFServer.from_private_bytes(sk)
    assert ps.public_key.hex() == block["pkSm"]
    pc = V.POPRFClient(ps.public_key)
    states = [pc._blind(x, b) for x, b in zip(inputs, blinds)]
    assert [s.blinded_element for s in states] == want_blinded
    evaluated, proof = ps._blind_evaluate_batch([s.blinded_element for s in states], info, r)
    assert evaluated == want_eval
    assert proof.to_bytes().hex() == vec["Proof"]
    assert pc.finalize_batch(states, evaluated, proof, info) == want_out
    assert [ps.evaluate(x, info) for x in inputs] == want_out
    with pytest.raises(VerifyError):
        pc.finalize_batch(states, evaluated, proof, info + b"x")


def test_proof_scalars_must_be_canonical() -> None:
    order = 2**252 + 27742317777372353535851937790883648493
    good = bytes(32)
    with pytest.raises(DeserializeError):
        V.Proof.from_bytes(order.to_bytes(32, "little") + good)
    with pytest.raises(DeserializeError):
        V.Proof.from_bytes(good + b"\xff" * 32)
    with pytest.raises(DeserializeError):
        V.Proof.from_bytes(good * 2 + b"\x00")
