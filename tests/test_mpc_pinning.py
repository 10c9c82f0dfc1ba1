"""A malicious party 0 that names keys it holds for parties 1 and 2, against real party processes.

The adversary is party 0's operator: it holds party 0's real keys (read from the
state directory), builds forged manifests with the protocol's own manifest and
entry-signing code, and serves them at its front door (``Front``, which otherwise
forwards every request to the real party 0 process and records what the client
posts). If the client sends its boxes, the adversary opens all three with the keys
it holds and adds the shares up: it learns the hash. A client that pins the three
parties' signing keys must refuse before sending anything; a client that pins
fewer trusts party 0 to name the others (docs/threat-model.md), which
``test_unpinned_client_trusts_party0_to_name_the_others`` pins down.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from blindmatch.client import HttpTransport
from blindmatch.protocol import (
    BlindmatchError,
    HashValue,
    Query,
    SignatureError,
    Transport,
    TransportReply,
    get_algo,
    get_protocol,
)
from blindmatch.protocol.hazmat.kex import KexKey
from blindmatch.protocol.mpc import _boxes, describe_state
from blindmatch.protocol.mpc._channel import Identity
from blindmatch.protocol.mpc._field import P, from_wire
from blindmatch.protocol.mpc._party import load_identity
from blindmatch.protocol.mpc._wire import MpcManifest, MpcQuery, PartyInfo
from blindmatch.server import SetDir
from blindmatch.server.testing import LiveParties
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from . import _http
from .conftest import encode
from .mpc_helpers import BLINDMATCH

PDQ = get_algo("pdq")
TOKEN = "mpc-pin-admin-token"
SET_SIZE = 300


class Front(Transport):
    """Party 0's front door under the adversary: a chosen manifest, every POST recorded and forwarded."""

    def __init__(self, url: str, account: str, manifest: bytes | None = None) -> None:
        super().__init__()
        self.inner = HttpTransport(url, "mpc", client_id=account)
        self.manifest = manifest
        self.posts: list[bytes] = []

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        if method == "GET" and path == "manifest" and self.manifest is not None:
            self.bytes_down += len(self.manifest)
            return TransportReply(200, self.manifest, {})
        if method == "POST":
            self.posts.append(body)
        self.bytes_up += len(body)
        rep = self.inner.request(method, path, body, headers)
        self.bytes_down += len(rep.body)
        return rep


@dataclass
class Parties:
    live: LiveParties
    state: Path
    members: list[HashValue]

    @property
    def pins(self) -> str:
        """What each operator publishes: ``blindmatch db info`` prints it."""
        keys = describe_state(self.state)["pinned_signing_keys"]
        assert isinstance(keys, str)
        return keys

    def verdicts(self, account: str) -> list[bool]:
        r = _http.get(
            self.live.url + "/v1/mpc/admin/verdicts",
            headers={"authorization": f"Bearer {TOKEN}", "x-blindmatch-account": account},
            timeout=30,
        )
        r.raise_for_status()
        return [v["matched"] for v in r.json()["verdicts"]]


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parties]:
    d = tmp_path_factory.mktemp("mpcpin")
    rng = np.random.default_rng(5)
    members = [HashValue(PDQ, rng.bytes(32)) for _ in range(SET_SIZE)]
    SetDir.build(d, PDQ, members)
    env = {"BLINDMATCH_ADMIN_TOKEN": TOKEN, "BLINDMATCH_TRUSTED_PROXIES": "127.0.0.1"}
    with LiveParties(d, env=env) as live:
        yield Parties(live, d / "state" / "mpc", members)


def _forge(honest: MpcManifest, p0: Identity, own_signing: bool) -> tuple[MpcManifest, dict[int, KexKey]]:
    """Party 0 names box keys it holds for parties 1 and 2 and re-signs the manifest.

    ``own_signing``: it also names Ed25519 keys it holds and signs those entries
    itself (self-consistent, detectable only by pins); otherwise it keeps the real
    signing keys and entry signatures, which then no longer match the box keys.
    """
    held = {0: p0.kex, 1: KexKey.generate(), 2: KexKey.generate()}
    parties = list(honest.parties)
    for j in (1, 2):
        entry = replace(parties[j], kex_pub=held[j].public_bytes)
        if own_signing:
            key = Ed25519PrivateKey.generate()
            entry = replace(entry, signing_pub=key.public_key().public_bytes_raw())
            draft = replace(honest, parties=(*parties[:j], entry, *parties[j + 1 :]))
            entry = replace(entry, entry_sig=key.sign(draft.entry_message(j)))
        parties[j] = entry
    forged = replace(honest, parties=(parties[0], parties[1], parties[2])).signed(p0.signing)
    assert all(isinstance(p, PartyInfo) for p in forged.parties)
    return forged, held


def _adversary_reads(body: bytes, held: dict[int, KexKey]) -> np.ndarray:
    """Open the three boxes with the keys party 0 holds and add the shares: the client's bits."""
    q = MpcQuery.from_bytes(body)
    total = np.zeros(PDQ.bits, dtype=np.int64)
    for j in range(3):
        plain = _boxes.box_keys(held[j], q.eph_pub, q.eph_pub, j, q.mode).open_request(q.boxes[j])
        total += from_wire(plain[: PDQ.bits * 2], PDQ.bits).astype(np.int64)
    return (total % P).astype(np.uint8)


def _honest_manifest(parties: Parties) -> MpcManifest:
    return MpcManifest.from_bytes(HttpTransport(parties.live.url, "mpc").get("manifest").body)


def test_pinned_client_refuses_party0_naming_its_own_keys_for_parties_1_and_2(parties: Parties) -> None:
    p0 = load_identity(parties.state, 0)
    forged, _held = _forge(_honest_manifest(parties), p0, own_signing=True)
    front = Front(parties.live.url, "acct-pinned-forged", forged.to_bytes())
    client = get_protocol("mpc").new_client(
        PDQ, None, {"pinned_signing_keys": parties.pins, "mode": "server-learns"}
    )
    with pytest.raises(SignatureError, match="party 1's entry is signed by a key other than the pinned"):
        client.scan(Query(parties.members[7]), front)
    assert front.posts == [] and front.bytes_up == 0  # not one share left the client
    assert parties.verdicts("acct-pinned-forged") == []  # and no party ran a query


def test_substituted_box_key_under_the_real_signing_key_is_refused_even_unpinned(parties: Parties) -> None:
    p0 = load_identity(parties.state, 0)
    forged, _held = _forge(_honest_manifest(parties), p0, own_signing=False)
    for options in ({}, {"pinned_signing_keys": parties.pins}):
        front = Front(parties.live.url, "acct-swapped-kex", forged.to_bytes())
        client = get_protocol("mpc").new_client(PDQ, None, {**options, "mode": "server-learns"})
        with pytest.raises(SignatureError, match="party 1's entry signature"):
            client.scan(Query(parties.members[3]), front)
        assert front.posts == []
    assert parties.verdicts("acct-swapped-kex") == []


def test_pinned_client_runs_with_the_honest_parties(parties: Parties) -> None:
    """The control: the same pins, the same front door without forgery, a real verdict."""
    member, outsider = parties.members[11], HashValue(PDQ, bytes(32))
    assert min(outsider.distance(m) for m in parties.members) > 31
    pins = {"pinned_signing_keys": parties.pins}
    front = Front(parties.live.url, "acct-pinned-honest")
    client = get_protocol("mpc").new_client(PDQ, None, pins)
    assert [client.scan(Query(h), front).matched for h in (member, outsider)] == [True, False]
    server = get_protocol("mpc").new_client(PDQ, None, {**pins, "mode": "server-learns"})
    server.scan(Query(member), front)
    assert parties.verdicts("acct-pinned-honest") == [True]
    assert len(front.posts) == 3


@pytest.mark.parametrize("pin_party0", [False, True])
def test_unpinned_client_trusts_party0_to_name_the_others(parties: Parties, pin_party0: bool) -> None:
    """The narrowed claim: without the three pins (party 0's alone is not enough) a party 0
    that names keys it holds for parties 1 and 2 learns the client's hash from one query."""
    p0 = load_identity(parties.state, 0)
    forged, held = _forge(_honest_manifest(parties), p0, own_signing=True)
    front = Front(parties.live.url, "acct-unpinned", forged.to_bytes())
    options = {"pinned_signing_key": p0.signing_pub.hex()} if pin_party0 else {}
    client = get_protocol("mpc").new_client(PDQ, None, options)
    target = parties.members[5]
    with pytest.raises(BlindmatchError):  # parties 1 and 2 cannot open their boxes: the query fails
        client.scan(Query(target), front)
    assert len(front.posts) == 1
    assert np.array_equal(_adversary_reads(front.posts[0], held), target.bits())


def test_cli_prints_the_three_keys_and_scan_pins_them(
    parties: Parties, images: list[Image.Image], tmp_path: Path
) -> None:
    """`db info` prints the pin; `scan --pin-key` with it runs; one wrong key: exit 1, one
    line on stderr, and no query reaches the parties."""
    info = subprocess.run(
        [BLINDMATCH, "db", "info", str(parties.state.parent.parent)], capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    pins = json.loads(info.stdout)["mpc"]["pinned_signing_keys"]
    assert pins == parties.pins and len(pins.split(",")) == 3
    (tmp_path / "a.png").write_bytes(encode(images[0]))

    def scan(pin: str, account: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                BLINDMATCH,
                "scan",
                "--protocol",
                "mpc",
                "--server",
                parties.live.url,
                "--pin-key",
                pin,
                "--mode",
                "server-learns",
                "--account",
                account,
                str(tmp_path / "a.png"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

    ok = scan(pins, "acct-cli-ok")
    assert ok.returncode == 0, ok.stderr
    assert parties.verdicts("acct-cli-ok") == [False]
    wrong = ",".join(
        [*pins.split(",")[:2], Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()]
    )
    bad = scan(wrong, "acct-cli-wrong")
    assert bad.returncode != 0 and "party 2" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert parties.verdicts("acct-cli-wrong") == []
