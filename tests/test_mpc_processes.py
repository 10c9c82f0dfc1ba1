"""mpc through real party processes on loopback: the CLI, the servers, the channels, the failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from blindmatch.client import HttpTransport, hash_bytes
from blindmatch.protocol import HashValue, Query, get_algo, get_protocol
from blindmatch.protocol.mpc._wire import MpcQuery
from blindmatch.server import SetDir
from blindmatch.server.testing import free_port_block
from PIL import Image

from blindmatch.corpus import generate_image

from . import _http
from .conftest import encode
from .mpc_helpers import BLINDMATCH

PDQ = get_algo("pdq")
TOKEN = "mpc-admin-token"


def _healthy(url: str) -> bool:
    try:
        return _http.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class Trio:
    """Three `blindmatch serve --mpc-party I` processes."""

    def __init__(self, db: Path) -> None:
        self.db, self.base = db, free_port_block(6)
        self.peers = ",".join(f"127.0.0.1:{self.base + 3 + i}" for i in range(3))
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None, None]

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.base + i}"

    def start(self, i: int) -> None:
        # the test client stands behind a trusted front end that names the account
        env = {
            **os.environ,
            "BLINDMATCH_ADMIN_TOKEN": TOKEN,
            "BLINDMATCH_MPC_TIMEOUT_S": "20",
            "BLINDMATCH_TRUSTED_PROXIES": "127.0.0.1",
        }
        self.procs[i] = subprocess.Popen(
            [
                BLINDMATCH,
                "serve",
                "--db",
                str(self.db),
                "--mpc-party",
                str(i),
                "--mpc-peers",
                self.peers,
                "--port",
                str(self.base + i),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_healthy(self.url(i)) for i in range(3)):
                try:
                    if _http.get(self.url(0) + "/v1/mpc/manifest", timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError("mpc parties did not come up")

    def stop(self, i: int, sig: int = signal.SIGTERM) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(timeout=20)
        self.procs[i] = None


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory, images: list[Image.Image]) -> Path:
    d = tmp_path_factory.mktemp("mpcset")
    members = [hash_bytes(encode(img)).hash for img in images[:5]]
    rng = np.random.default_rng(21)
    filler = [HashValue(PDQ, rng.bytes(32)) for _ in range(4000)]
    SetDir.build(d, PDQ, members + filler)
    return d


@pytest.fixture(scope="module")
def trio(set_dir: Path) -> Iterator[Trio]:
    t = Trio(set_dir)
    for i in range(3):
        t.start(i)
    try:
        t.wait_ready()
        yield t
    finally:
        for i in range(3):
            t.stop(i)


def _scan(url: str, paths: list[Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLINDMATCH, "scan", "--protocol", "mpc", "--server", url, *extra, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_scan_matches_exact_and_jpeg_q50_copies_and_never_unrelated(
    trio: Trio, set_dir: Path, images: list[Image.Image], tmp_path: Path
) -> None:
    hashes = SetDir.open(set_dir).hashes
    expect: dict[str, bool] = {}
    for i, img in enumerate(images):
        for name, data in ((f"exact{i}.png", encode(img)), (f"q50_{i}.jpg", encode(img, "JPEG", quality=50))):
            if i >= 5 and name.startswith("q50"):
                continue
            (tmp_path / name).write_bytes(data)
            h = hash_bytes(data).hash
            nearest = min(h.distance(v) for v in hashes.values())
            expect[name] = nearest <= 31
            assert expect[name] == (i < 5), (name, nearest)  # the fixture is meaningful
    out = _scan(trio.url(0), sorted(tmp_path.iterdir()))
    assert out.returncode == 0, out.stderr
    got = {Path(r["path"]).name: r["matched"] for r in map(json.loads, out.stdout.splitlines())}
    assert got == expect
    assert all(r["protocol"] == "mpc" for r in map(json.loads, out.stdout.splitlines()))


def test_cli_count_mode_reports_the_number_of_entries_within_radius(
    trio: Trio, set_dir: Path, images: list[Image.Image], tmp_path: Path
) -> None:
    hashes = SetDir.open(set_dir).hashes
    expect = {}
    for i in (0, 6):
        data = encode(images[i], "JPEG", quality=50)
        (tmp_path / f"img{i}.jpg").write_bytes(data)
        h = hash_bytes(data).hash
        expect[f"img{i}.jpg"] = sum(h.distance(v) <= 31 for v in hashes.values())
    assert expect == {"img0.jpg": 1, "img6.jpg": 0}  # the fixture is meaningful
    out = _scan(trio.url(0), sorted(tmp_path.iterdir()), "--output", "count")
    assert out.returncode == 0, out.stderr
    got = {Path(r["path"]).name: (r["count"], r["matched"]) for r in map(json.loads, out.stdout.splitlines())}
    assert got == {name: (n, n > 0) for name, n in expect.items()}


def test_unknown_or_relabelled_mode_byte_is_refused(trio: Trio) -> None:
    good = MpcQuery.from_bytes(_client_body(trio, np.zeros(256, dtype=np.uint32)))
    rep = _post(trio.url(0), MpcQuery(4, good.eph_pub, good.boxes).to_bytes())
    assert rep.status_code == 400 and rep.json()["error"] == "unknown_mode"
    # the mode byte is in every box's associated data: a client-learns query relabelled as count fails
    rep = _post(trio.url(0), MpcQuery(2, good.eph_pub, good.boxes).to_bytes())
    assert rep.status_code == 400 and rep.json()["error"] == "crypto_error"
    assert _post(trio.url(0), good.to_bytes()).status_code == 200


def test_server_learns_verdict_reaches_party_0_only(
    trio: Trio, set_dir: Path, tmp_path: Path, images: list[Image.Image]
) -> None:
    (tmp_path / "member.png").write_bytes(encode(images[1]))
    (tmp_path / "other.png").write_bytes(encode(images[6]))
    out = _scan(
        trio.url(0),
        [tmp_path / "member.png", tmp_path / "other.png"],
        "--mode",
        "server-learns",
        "--account",
        "acct-7",
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(r)["matched"] for r in out.stdout.splitlines()] == [None, None]
    r = _http.get(
        trio.url(0) + "/v1/mpc/admin/verdicts",
        headers={"authorization": f"Bearer {TOKEN}", "x-blindmatch-account": "acct-7"},
    )
    assert [v["matched"] for v in r.json()["verdicts"]] == [True, False]
    assert r.json()["account"] == "acct-7"
    assert _http.get(trio.url(0) + "/v1/mpc/admin/verdicts").status_code == 401


def _post(url: str, body: bytes) -> httpx.Response:
    return _http.post(url + "/v1/mpc/query", content=body, timeout=60)


def _client_body(trio: Trio, bits: np.ndarray, tweak: str = "") -> bytes:
    """A real client's query, optionally made malicious after sharing."""
    from blindmatch.protocol.mpc import MpcClient

    client = get_protocol("mpc").new_client(PDQ)
    assert isinstance(client, MpcClient)
    manifest = client._load_manifest(HttpTransport(trio.url(0), "mpc"))
    if tweak == "non-bit":
        bits = bits.copy()
        bits[3] = 2
    body, _keys = client._seal(bits, manifest, 0)
    return body


def test_non_binary_shares_get_a_typed_refusal(trio: Trio) -> None:
    rep = _post(trio.url(0), _client_body(trio, np.zeros(256, dtype=np.uint32), "non-bit"))
    assert rep.status_code == 422 and rep.json()["error"] == "malicious_shares"


def test_inconsistent_copies_get_a_typed_refusal(trio: Trio) -> None:
    from blindmatch.protocol.hazmat.kex import KexKey
    from blindmatch.protocol.mpc import _boxes
    from blindmatch.protocol.mpc._field import to_wire
    from blindmatch.protocol.mpc._sharing import share_vector

    client = get_protocol("mpc").new_client(PDQ)
    m = client._load_manifest(HttpTransport(trio.url(0), "mpc"))  # type: ignore[attr-defined]
    comps = share_vector(np.zeros(256, dtype=np.uint32))
    eph = KexKey.generate()
    eph_pub = eph.public_bytes
    boxes = []
    for j in range(3):
        b = comps[(j + 1) % 3].copy()
        if j == 1:
            b[10] = (b[10] + 5) % 8191  # party 1's copy of component 2 disagrees with party 2's
        keys = _boxes.box_keys(eph, m.parties[j].kex_pub, eph_pub, j, 0)
        boxes.append(keys.seal_request(to_wire(comps[j]) + to_wire(b)))
    rep = _post(trio.url(0), MpcQuery(0, eph_pub, tuple(boxes)).to_bytes())  # type: ignore[arg-type]
    assert rep.status_code == 422 and rep.json()["error"] == "malicious_shares"


def test_bad_bytes_get_typed_errors(trio: Trio) -> None:
    good = _client_body(trio, np.zeros(256, dtype=np.uint32))
    assert _post(trio.url(0), good).status_code == 200
    assert _post(trio.url(0), good[:-3]).json()["error"] == "bad_length"
    assert _post(trio.url(0), good + b"\x00").json()["error"] == "bad_length"
    assert _post(trio.url(0), bytes([7]) + good[1:]).json()["error"] == "unknown_version"
    box_cut = MpcQuery.from_bytes(good)
    short = MpcQuery(0, box_cut.eph_pub, (box_cut.boxes[0][:-1], *box_cut.boxes[1:])).to_bytes()  # type: ignore[arg-type]
    assert _post(trio.url(0), short).json()["error"] == "crypto_error"
    rep = _post(trio.url(1), good)
    assert rep.status_code == 400 and rep.json()["error"] == "unknown_party"
    # and the parties still serve an honest query afterwards
    assert _post(trio.url(0), good).status_code == 200


def test_network_observer_sees_fixed_sizes_and_no_hash(trio: Trio, images: list[Image.Image]) -> None:
    client = get_protocol("mpc").new_client(PDQ)
    t = HttpTransport(trio.url(0), "mpc")
    member = hash_bytes(encode(images[0])).hash
    stranger = hash_bytes(encode(images[7])).hash
    sizes = []
    for h in (member, stranger, member):
        r = client.scan(Query(h), t)
        sizes.append((r.bytes_up, r.bytes_down))
    assert sizes[1] == sizes[2] and sizes[0][0] == sizes[1][0]  # first query also fetched the manifest
    body = _client_body(trio, member.bits().astype(np.uint32))
    assert member.raw not in body and member.raw[:8] not in body
    assert len(body) == len(_client_body(trio, stranger.bits().astype(np.uint32)))


def test_unknown_party_and_bad_peers_are_cli_errors(set_dir: Path) -> None:
    for extra in (
        ["--mpc-party", "5", "--mpc-peers", "a:1,b:2,c:3"],
        ["--mpc-party", "1", "--mpc-peers", "a:1,b:2"],
    ):
        out = subprocess.run(
            [BLINDMATCH, "serve", "--db", str(set_dir), *extra], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2
        assert out.stderr.strip().count("\n") == 0 and "unknown_party" in out.stderr


def test_a_party_down_is_a_typed_error_and_recovers(
    trio: Trio, tmp_path: Path, images: list[Image.Image]
) -> None:
    (tmp_path / "x.png").write_bytes(encode(images[0]))
    trio.stop(2, signal.SIGKILL)
    out = _scan(trio.url(0), [tmp_path / "x.png"])
    assert out.returncode == 1 and out.stdout == ""
    assert "party_unavailable" in out.stderr and out.stderr.strip().count("\n") == 0
    trio.start(2)
    trio.wait_ready()
    deadline = time.monotonic() + 30
    while True:  # party 1 reconnects to the restarted party 2 within a few tenths of a second
        out = _scan(trio.url(0), [tmp_path / "x.png"])
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["matched"] is True


def test_mpc_up_serves_and_stops_on_sigterm(set_dir: Path, tmp_path: Path, images: list[Image.Image]) -> None:
    base = free_port_block(6)
    proc = subprocess.Popen(
        [BLINDMATCH, "mpc", "up", "--db", str(set_dir), "--port", str(base)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not all(_healthy(f"http://127.0.0.1:{base + i}") for i in range(3)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        (tmp_path / "m.png").write_bytes(encode(generate_image(1003)))
        out = _scan(f"http://127.0.0.1:{base}", [tmp_path / "m.png"])
        assert out.returncode == 0 and json.loads(out.stdout)["matched"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not any(_healthy(f"http://127.0.0.1:{base + i}") for i in range(3))
