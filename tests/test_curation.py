"""Verifiable database: two-source rule, signed lists, attested root digests."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from blindmatch.protocol import CorruptStoreError, SignatureError, get_algo
from blindmatch.protocol.curation import (
    Attestation,
    SignedList,
    curator_keygen,
    select_hashes,
    verify_attestations,
)
from blindmatch.server import LiveServer, SetDir

from . import _http

A = get_algo("pdq")
H = [A.from_bytes(bytes([i]) * 32) for i in range(6)]


def _lists() -> tuple[list[SignedList], dict[str, bytes]]:
    keys = {n: curator_keygen() for n in ("ncmec", "iwf", "iwf-2", "rogue")}
    lists = [
        SignedList.sign(A, H[0:4], "ncmec", "US", keys["ncmec"][0]),
        SignedList.sign(A, H[2:6], "iwf", "GB", keys["iwf"][0]),
        SignedList.sign(A, [H[0], H[5]], "iwf-2", "GB", keys["iwf-2"][0]),  # same jurisdiction as iwf
    ]
    return lists, {n: k[1] for n, k in keys.items()}


def test_two_source_rule_needs_distinct_jurisdictions() -> None:
    lists, pins = _lists()
    admitted, counts = select_hashes(lists, 2, pins)
    # H2, H3: US+GB; H0: US+GB(iwf-2); H5: GB+GB → rejected; H1: US only; H4: GB only
    assert {v.raw for v in admitted} == {H[0].raw, H[2].raw, H[3].raw}
    assert counts == {"admitted": 3, "rejected": 3}
    assert len(select_hashes(lists, 1)[0]) == 6
    assert select_hashes(lists, 3)[0] == []


def test_tampered_or_unpinned_list_rejected() -> None:
    lists, pins = _lists()
    forged = SignedList(lists[0].curator, lists[0].jurisdiction, A, (*lists[0].hashes, H[5]),
                        lists[0].public_key, lists[0].signature)
    with pytest.raises(SignatureError):
        select_hashes([forged, lists[1]], 2)
    relabelled = SignedList("ncmec", "FR", A, lists[0].hashes, lists[0].public_key, lists[0].signature)
    with pytest.raises(SignatureError):
        relabelled.verify()
    impostor = SignedList.sign(A, H[:2], "ncmec", "US", curator_keygen()[0])
    with pytest.raises(SignatureError):
        select_hashes([impostor, lists[1]], 2, pins)
    assert SignedList.from_json(lists[1].to_json(), A) == lists[1]
    with pytest.raises(CorruptStoreError):
        SignedList.from_json("{}", A)


def test_attestation_threshold(tmp_path: Path) -> None:
    keys = {n: curator_keygen() for n in ("a", "b", "c")}
    pins = {n: k[1] for n, k in keys.items()}
    sd = SetDir.build(tmp_path / "s", A, H, ["t"])
    atts = [Attestation.sign(n, keys[n][0], sd.digest, len(sd.hashes), "pdq") for n in ("a", "b")]
    assert verify_attestations(atts, sd.digest, len(sd.hashes), "pdq", pins, 2) == ["a", "b"]
    with pytest.raises(SignatureError):
        verify_attestations(atts, sd.digest, len(sd.hashes), "pdq", pins, 3)
    other = "00" * 32
    with pytest.raises(SignatureError):  # signatures over one root do not vouch for another
        verify_attestations(atts, other, len(sd.hashes), "pdq", pins, 1)
    with pytest.raises(SignatureError):  # nor for the same root with another count
        verify_attestations(atts, sd.digest, len(sd.hashes) + 1, "pdq", pins, 1)
    untrusted = {"a": curator_keygen()[1], "b": pins["b"]}
    assert verify_attestations(atts, sd.digest, len(sd.hashes), "pdq", untrusted, 1) == ["b"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blindmatch.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_curation_flow_and_served_attestations(tmp_path: Path) -> None:
    pins = {}
    for name, jur, hs in (("ncmec", "US", H[0:4]), ("iwf", "GB", H[2:6])):
        r = _cli("curator", "keygen", "--out", str(tmp_path / f"{name}.key"), "--name", name)
        assert r.returncode == 0, r.stderr
        assert os.stat(tmp_path / f"{name}.key").st_mode & 0o077 == 0
        pins[name] = json.loads(r.stdout)["public_key"]
        (tmp_path / f"{name}.txt").write_text("\n".join(v.hex for v in hs))
        r = _cli("curator", "sign-list", str(tmp_path / f"{name}.txt"),
                 "--key", str(tmp_path / f"{name}.key"),
                 "--name", name, "--jurisdiction", jur, "--out", str(tmp_path / f"{name}.signed.json"))
        assert r.returncode == 0, r.stderr
    (tmp_path / "trusted.json").write_text(json.dumps(pins))
    r = _cli("db", "build", "--min-sources", "2", "--trusted", str(tmp_path / "trusted.json"),
             "--from", str(tmp_path / "ncmec.signed.json"), "--from", str(tmp_path / "iwf.signed.json"),
             "--out", str(tmp_path / "set"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["count"] == 2
    r = _cli("db", "build", "--min-sources", "2", "--from", str(tmp_path / "ncmec.txt"),
             "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "signed" in r.stderr
    verify = ["curator", "verify", "--trusted", str(tmp_path / "trusted.json"), "--threshold", "2"]
    assert _cli(*verify, "--set-dir", str(tmp_path / "set")).returncode == 2
    for name in pins:
        assert _cli("curator", "attest", str(tmp_path / "set"), "--key", str(tmp_path / f"{name}.key"),
                    "--name", name).returncode == 0
    r = _cli(*verify, "--set-dir", str(tmp_path / "set"))
    assert r.returncode == 0 and json.loads(r.stdout)["verified_by"] == ["iwf", "ncmec"]
    with LiveServer(tmp_path / "set", env={"BLINDMATCH_PROTOCOLS": "plain"}) as srv:
        served = _http.get(srv.url + "/v1/set").json()
        assert len(served["attestations"]) == 2
        r = _cli(*verify, "--server", srv.url)
        assert r.returncode == 0, r.stderr
    pk = base64.b64decode(pins["ncmec"])
    assert len(pk) == 32
