"""mpc with a secret-shared set: no party holds the list; verdicts still follow the Hamming rule.

Three `blindmatch serve --mpc-party I` processes, each on its own set directory that
holds a one-hash placeholder set, its own keys, the peers' public keys and only its
own dealt share file, as three operators would run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from blindmatch.client import HttpTransport
from blindmatch.client.transport import ServerError
from blindmatch.protocol import (
    CorruptStoreError,
    HashValue,
    OptionError,
    PartyUnavailableError,
    Query,
    get_algo,
    get_protocol,
)
from blindmatch.protocol.mpc import MpcServerOptions, load_identity, share_set
from blindmatch.protocol.mpc._field import P
from blindmatch.protocol.mpc._sharedset import SharedColumns, SharedSetFile, set_bits, share_file_name
from blindmatch.protocol.mpc._sharing import share_vector
from blindmatch.server import SetDir
from blindmatch.server.testing import free_port_block
from scipy.stats import chi2_contingency

from . import _http
from .mpc_helpers import BLINDMATCH

PDQ = get_algo("pdq")
N = 1500
PDQ_ID = 1  # ALGO_IDS["pdq"], checked below
# a cluster around one centre: entries at 5, 20 and 31 bit flips (within r = 31) and one at 32
CLUSTER = ((10, 5), (700, 20), (1400, 31), (1450, 32))


def _flip(h: HashValue, k: int, rng: np.random.Generator) -> HashValue:
    return h.flip(sorted(rng.choice(256, k, replace=False).tolist()))


def _centre() -> HashValue:
    return HashValue(PDQ, np.random.default_rng(78).bytes(32))


@pytest.fixture(scope="module")
def clear_set(tmp_path_factory: pytest.TempPathFactory) -> SetDir:
    """The list holder's set directory (the only place the list is in the clear)."""
    rng = np.random.default_rng(6)
    values = [HashValue(PDQ, rng.bytes(32)) for _ in range(N)]
    for index, k in CLUSTER:
        values[index] = _flip(_centre(), k, rng)
    return SetDir.build(tmp_path_factory.mktemp("dealer"), PDQ, values)


def _party_dirs(root: Path, shares: Path) -> list[Path]:
    """One set dir per party: a placeholder set, keys, the three public keys, its own share only."""
    placeholder = [HashValue(PDQ, np.random.default_rng(1234).bytes(32))]
    dirs = [root / f"party-{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        state = SetDir.build(d, PDQ, placeholder).state_dir("mpc")
        load_identity(state, i)
        shutil.copy(shares / share_file_name(i), state / share_file_name(i))
    for i, d in enumerate(dirs):
        for j, other in enumerate(dirs):
            if i != j:
                pub = f"party-{j}.pub"
                shutil.copy(other / "state" / "mpc" / pub, d / "state" / "mpc" / pub)
    return dirs


class SharedTrio:
    """Three `blindmatch serve --mpc-party I --db DIR_I` processes in shared-set mode."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs, self.base = dirs, free_port_block(6)
        self.peers = ",".join(f"127.0.0.1:{self.base + 3 + i}" for i in range(3))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.base}"

    def start(self) -> SharedTrio:
        env = {**os.environ, "BLINDMATCH_MPC_SET_SHARING": "shared", "BLINDMATCH_MPC_TIMEOUT_S": "20"}
        for i, d in enumerate(self.dirs):
            cmd = [BLINDMATCH, "serve", "--db", str(d), "--mpc-party", str(i), "--mpc-peers", self.peers,
                   "--port", str(self.base + i)]  # fmt: skip
            self.procs.append(
                subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        deadline = time.monotonic() + 90
        while not all(self._healthy(i) for i in range(3)):
            assert all(p.poll() is None for p in self.procs), "a party exited at start-up"
            assert time.monotonic() < deadline, "the parties did not come up"
            time.sleep(0.2)
        return self

    def _healthy(self, i: int) -> bool:
        try:
            return _http.get(f"http://127.0.0.1:{self.base + i}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_manifest(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while _http.get(self.url + "/v1/mpc/manifest", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "party 0 never served its manifest"
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def shares(clear_set: SetDir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shares")
    share_set(clear_set.hashes, out)
    return out


@pytest.fixture(scope="module")
def party_dirs(shares: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _party_dirs(tmp_path_factory.mktemp("parties"), shares)


@pytest.fixture(scope="module")
def trio(party_dirs: list[Path]) -> Iterator[SharedTrio]:
    t = SharedTrio(party_dirs).start()
    try:
        t.wait_manifest()
        yield t
    finally:
        t.stop()


def _queries(clear_set: SetDir) -> list[tuple[HashValue, bool]]:
    """Members, near copies at 31 flips, copies at 32 flips and strangers, with the plaintext rule."""
    hashes = clear_set.hashes
    rng = np.random.default_rng(10)
    out = []
    for i in (3, 500, N - 2):
        for k in (0, 31, 32, 70):
            out.append(_flip(hashes.value(i), k, rng))
    out += [_centre(), HashValue(PDQ, rng.bytes(32))]
    values = hashes.values()
    return [(h, min(h.distance(v) for v in values) <= 31) for h in out]


def test_shared_set_verdicts_equal_the_plaintext_hamming_rule(trio: SharedTrio, clear_set: SetDir) -> None:
    queries = _queries(clear_set)
    assert {expect for _, expect in queries} == {True, False}
    client = get_protocol("mpc").new_client(PDQ)
    t = HttpTransport(trio.url, "mpc")
    assert [client.scan(Query(h), t).matched for h, _ in queries] == [expect for _, expect in queries]


def test_shared_set_count_mode_counts_the_entries_within_radius(trio: SharedTrio, clear_set: SetDir) -> None:
    values = clear_set.hashes.values()
    client = get_protocol("mpc").new_client(PDQ, options={"output": "count"})
    t = HttpTransport(trio.url, "mpc")
    for h in (_centre(), values[3], HashValue(PDQ, np.random.default_rng(13).bytes(32))):
        planted = sum(h.distance(v) <= 31 for v in values)
        r = client.scan(Query(h), t)
        assert (r.count, r.matched) == (planted, planted > 0)


def test_manifest_names_the_dealers_commitment_and_set_size(trio: SharedTrio, shares: Path) -> None:
    m = get_protocol("mpc").new_client(PDQ)._load_manifest(HttpTransport(trio.url, "mpc"))  # type: ignore[attr-defined]
    share0 = SharedSetFile.load(shares / share_file_name(0), 0, PDQ_ID, 256)
    assert (m.set_size, m.set_digest) == (N, share0.commitment)


def test_no_party_directory_holds_the_set_in_the_clear(
    trio: SharedTrio, party_dirs: list[Path], clear_set: SetDir
) -> None:
    """Every file a party holds is statistically independent of the set bits.

    Per party: its two share components and their sum, each tested against the set
    bits (chi-square, 2 × 64 contingency table of bit × value bin over all N × 256
    bits), and no set entry's bytes appear in any of its files. Fails if the dealer
    writes the clear bits (or bits plus a component the same party holds) as a share.
    """
    bits = set_bits(clear_set.hashes.words).ravel()
    raws = [v.raw for v in clear_set.hashes.values()]
    for i, d in enumerate(party_dirs):
        files = [f for f in d.rglob("*") if f.is_file()]
        for f in files:
            data = f.read_bytes()
            assert not any(raw in data for raw in raws[:200]), f"{f} holds a set entry"
        share = SharedSetFile.load(d / "state" / "mpc" / share_file_name(i), i, PDQ_ID, 256)
        a, b = share.a.ravel().astype(np.int64), share.b.ravel().astype(np.int64)
        for name, v in (("a", a), ("b", b), ("a+b", (a + b) % P)):
            table = np.zeros((2, 64), dtype=np.int64)
            np.add.at(table, (bits, v * 64 // P), 1)
            table = table[:, table.sum(axis=0) > 0]
            assert table.shape[1] == 64, f"party {i}'s component {name} is not spread over the field"
            p_value = chi2_contingency(table).pvalue
            assert p_value > 1e-6, f"party {i}'s component {name} depends on the set (p = {p_value:.2e})"
        assert [f.name for f in files if f.name.startswith("set-share")] == [share_file_name(i)]


def test_mismatched_share_files_get_a_typed_error_and_no_verdict(
    clear_set: SetDir, shares: Path, tmp_path: Path
) -> None:
    """Party 2 holds a share of another dealing of the same set: the parties never pair."""
    other = tmp_path / "other"
    share_set(clear_set.hashes, other)
    dirs = _party_dirs(tmp_path / "parties", shares)
    shutil.copy(other / share_file_name(2), dirs[2] / "state" / "mpc" / share_file_name(2))
    t = SharedTrio(dirs).start()
    try:
        client = get_protocol("mpc").new_client(PDQ)
        with pytest.raises(ServerError) as e:
            client.scan(Query(clear_set.hashes.value(3)), HttpTransport(t.url, "mpc"))
        assert e.value.code == PartyUnavailableError.code
    finally:
        t.stop()


def test_a_changed_component_is_refused_at_load(shares: Path, tmp_path: Path) -> None:
    path = tmp_path / share_file_name(1)
    data = bytearray((shares / share_file_name(1)).read_bytes())
    data[-2:] = (int.from_bytes(data[-2:], "little") ^ 1).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="component 2 does not match"):
        SharedSetFile.load(path, 1, PDQ_ID, 256)
    with pytest.raises(CorruptStoreError, match="dealt for party 1"):
        SharedSetFile.load(shares / share_file_name(1), 0, PDQ_ID, 256)


def test_share_files_are_private_and_shared_mode_runs_one_process_per_party(shares: Path) -> None:
    for i in range(3):
        assert (shares / share_file_name(i)).stat().st_mode & 0o777 == 0o600
    with pytest.raises(OptionError):
        MpcServerOptions(set_sharing="shared", workers=2)


def test_cli_share_set_writes_the_files_and_prints_the_commitment(clear_set: SetDir, tmp_path: Path) -> None:
    out = subprocess.run(
        [BLINDMATCH, "mpc", "share-set", "--db", str(clear_set.path), "--out", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    digest = SharedSetFile.load(tmp_path / "s" / share_file_name(2), 2, PDQ_ID, 256).commitment
    assert out.stdout.strip() == f"commitment {digest.hex()}"


def test_local_cross_terms_add_up_to_the_inner_products(shares: Path, clear_set: SetDir) -> None:
    """The three parties' local parts sum to Σ_b x_b s_kb for every entry."""
    x = np.random.default_rng(3).integers(0, 2, 256).astype(np.uint32)
    comps = share_vector(x)
    total = np.zeros(N, dtype=np.int64)
    for i in range(3):
        cols = SharedColumns.build(SharedSetFile.load(shares / share_file_name(i), i, PDQ_ID, 256), 31)
        total += cols.cross_terms(comps[i], comps[(i + 1) % 3])
    s = set_bits(clear_set.hashes.words).astype(np.int64)
    assert np.array_equal(total % P, (s @ x.astype(np.int64)) % P)


def test_mpc_up_shared_set_deals_serves_and_stops(clear_set: SetDir, tmp_path: Path) -> None:
    """`mpc up --shared-set` deals the set into the state dir and the parties match on the shares."""
    db = tmp_path / "db"
    shutil.copytree(clear_set.path, db)
    base = free_port_block(6)
    proc = subprocess.Popen(
        [BLINDMATCH, "mpc", "up", "--db", str(db), "--port", str(base), "--shared-set"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t = HttpTransport(f"http://127.0.0.1:{base}", "mpc")
        client = get_protocol("mpc").new_client(PDQ)
        deadline = time.monotonic() + 90
        while True:
            try:
                m = client._load_manifest(t)  # type: ignore[attr-defined]
                break
            except (httpx.HTTPError, ServerError):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.3)
        share0 = SharedSetFile.load(db / "state" / "mpc" / share_file_name(0), 0, PDQ_ID, 256)
        assert m.set_digest == share0.commitment != bytes.fromhex(clear_set.digest)
        assert client.scan(Query(clear_set.hashes.value(7)), t).matched is True
        assert client.scan(Query(HashValue(PDQ, np.random.default_rng(99).bytes(32))), t).matched is False
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
