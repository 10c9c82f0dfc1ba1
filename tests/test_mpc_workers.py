"""mpc scale-out: each party splits its set over W = 2 processes; verdicts equal W = 1's.

The queries sit near entries of both halves of the set, so a shard whose product were
dropped or not joined into the OR tree would turn a match into a miss.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from blindmatch.bench.timing import child_pids
from blindmatch.client import HttpTransport
from blindmatch.client.transport import ServerError
from blindmatch.protocol import (
    HashValue,
    MaliciousSharesError,
    PartyUnavailableError,
    Query,
    get_algo,
    get_protocol,
)
from blindmatch.protocol.mpc._workers import shard_bounds
from blindmatch.server import SetDir
from blindmatch.server.testing import LiveParties

from . import _http

PDQ = get_algo("pdq")
N = 2000
TOKEN = "mpc-workers-admin"
# a cluster around one centre: 3 entries within r = 31 (one in shard 0, two in shard 1 of W = 2)
# and one just outside it; (set index, bits flipped from the centre)
CLUSTER = ((10, 5), (1500, 20), (1700, 31), (1800, 32))


def _flip(h: HashValue, bits: list[int]) -> HashValue:
    raw = bytearray(h.raw)
    for b in bits:
        raw[b // 8] ^= 1 << (b % 8)
    return HashValue(PDQ, bytes(raw))


def _centre() -> HashValue:
    return HashValue(PDQ, np.random.default_rng(77).bytes(32))


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mpcshards")
    rng = np.random.default_rng(5)
    values = [HashValue(PDQ, rng.bytes(32)) for _ in range(N)]
    for index, k in CLUSTER:
        values[index] = _flip(_centre(), sorted(rng.choice(256, k, replace=False).tolist()))
    SetDir.build(d, PDQ, values)
    return d


@pytest.fixture(scope="module")
def queries(set_dir: Path) -> list[tuple[HashValue, bool]]:
    hashes = SetDir.open(set_dir).hashes
    n = len(hashes)
    (_, half), _ = shard_bounds(n, 2)
    rng = np.random.default_rng(9)
    out = []
    for i in (3, half - 1, half, n - 2):  # both ends of both shards
        entry = hashes.value(i)
        for k in (0, 31, 32, 60):
            out.append((_flip(entry, sorted(rng.choice(256, k, replace=False).tolist())), k <= 31))
    out.append((HashValue(PDQ, rng.bytes(32)), False))
    for h, expect in out:  # the decision rule over the whole set agrees with the intended verdict
        assert (min(h.distance(v) for v in hashes.values()) <= 31) == expect
    return out


@pytest.fixture(scope="module", params=[1, 2], ids=["W=1", "W=2"])
def parties(request: pytest.FixtureRequest, set_dir: Path) -> Iterator[LiveParties]:
    env = {
        "BLINDMATCH_MPC_TIMEOUT_S": "30",
        "BLINDMATCH_ADMIN_TOKEN": TOKEN,
        "BLINDMATCH_TRUSTED_PROXIES": "127.0.0.1",
    }
    with LiveParties(set_dir, workers=request.param, env=env) as p:
        yield p


@pytest.fixture(scope="module")
def count_queries(set_dir: Path) -> list[tuple[HashValue, int]]:
    """Queries with 3, 1 and 0 set entries within r (checked in the clear)."""
    hashes = SetDir.open(set_dir).hashes
    out = [(_centre(), 3), (hashes.value(3), 1), (HashValue(PDQ, np.random.default_rng(12).bytes(32)), 0)]
    for h, planted in out:
        assert sum(h.distance(v) <= 31 for v in hashes.values()) == planted
    return out


def test_verdicts_with_workers_equal_the_decision_rule(
    parties: LiveParties, queries: list[tuple[HashValue, bool]]
) -> None:
    client = get_protocol("mpc").new_client(PDQ)
    t = HttpTransport(parties.url, "mpc")
    got = [client.scan(Query(h), t).matched for h, _ in queries]
    assert got == [expect for _, expect in queries]


def test_count_mode_opens_the_number_of_entries_within_radius(
    parties: LiveParties, count_queries: list[tuple[HashValue, int]]
) -> None:
    """Client-learns count: with W = 2 the shards' counts are added (a product would give 0 or 2)."""
    client = get_protocol("mpc").new_client(PDQ, options={"output": "count"})
    t = HttpTransport(parties.url, "mpc")
    for h, planted in count_queries:
        r = client.scan(Query(h), t)
        assert (r.count, r.matched) == (planted, planted > 0)
        assert r.extra["output"] == "count"


def test_server_learns_count_reaches_party_0(
    parties: LiveParties, count_queries: list[tuple[HashValue, int]]
) -> None:
    account = f"acct-count-w{parties.workers}"
    client = get_protocol("mpc").new_client(PDQ, options={"mode": "server-learns", "output": "count"})
    t = HttpTransport(parties.url, "mpc", client_id=account)
    for h, _ in count_queries:
        r = client.scan(Query(h), t)
        assert (r.matched, r.count) == (None, None)
    got = _http.get(
        parties.url + "/v1/mpc/admin/verdicts",
        headers={"authorization": f"Bearer {TOKEN}", "x-blindmatch-account": account},
        timeout=30,
    ).json()["verdicts"]
    assert [(v["count"], v["matched"]) for v in got] == [(n, n > 0) for _, n in count_queries]


def test_workers_still_refuse_non_binary_shares(parties: LiveParties) -> None:
    client = get_protocol("mpc").new_client(PDQ)
    t = HttpTransport(parties.url, "mpc")
    m = client._load_manifest(t)  # type: ignore[attr-defined]
    bits = np.zeros(256, dtype=np.uint32)
    bits[7] = 2
    body, _ = client._seal(bits, m, 0)  # type: ignore[attr-defined]
    with pytest.raises(ServerError) as e:
        t.post("query", body)
    assert e.value.code == MaliciousSharesError.code
    # and the parties, shard workers included, still answer an honest query
    assert client.scan(Query(HashValue(PDQ, bytes(32))), t).matched is False


def test_shard_bounds_cover_the_set_once() -> None:
    for n, w in ((2000, 2), (7, 3), (1, 1), (5, 4)):
        b = shard_bounds(n, w)
        assert b[0][0] == 0 and b[-1][1] == n
        assert all(b[k][1] == b[k + 1][0] for k in range(w - 1))


def _shard_workers(pid: int) -> list[int]:
    """The shard worker processes of party process ``pid``: the children of its forkserver helper."""
    kids = child_pids(pid)
    helpers = [k for k in kids if b"multiprocessing.forkserver" in Path(f"/proc/{k}/cmdline").read_bytes()]
    return [w for h in helpers for w in child_pids(h)]


def _wait_for_manifest(url: str, wait_s: float) -> None:
    """Party 0 serves its manifest only once every shard is connected to its peer shards."""
    deadline = time.monotonic() + wait_s
    while _http.get(url + "/v1/mpc/manifest", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the parties did not recover"
        time.sleep(0.5)


def test_a_stuck_shard_worker_fails_its_query_and_never_a_later_one(set_dir: Path) -> None:
    """A shard worker frozen by the OS (SIGSTOP, as in a VM pause) during a query.

    That query must fail with a typed error; the later queries, whose shard-1 entries
    decide the verdict, must get the right verdicts although the frozen worker never
    answers the run it was given.
    """
    hashes = SetDir.open(set_dir).hashes
    in_shard_1 = hashes.value(len(hashes) - 2)
    stranger = HashValue(PDQ, np.random.default_rng(11).bytes(32))
    assert min(stranger.distance(v) for v in hashes.values()) > 31
    with LiveParties(set_dir, workers=2, env={"BLINDMATCH_MPC_TIMEOUT_S": "5"}) as parties:
        client = get_protocol("mpc").new_client(PDQ)
        t = HttpTransport(parties.url, "mpc", timeout=120)
        assert client.scan(Query(in_shard_1), t).matched is True
        assert parties.proc is not None
        (worker,) = _shard_workers(parties.proc.pid)
        os.kill(worker, signal.SIGSTOP)
        try:
            with pytest.raises(ServerError) as e:
                client.scan(Query(in_shard_1), t)
            assert e.value.code == PartyUnavailableError.code
            _wait_for_manifest(parties.url, 120)
            assert client.scan(Query(in_shard_1), t).matched is True
            assert client.scan(Query(stranger), t).matched is False
            assert client.scan(Query(in_shard_1), t).matched is True
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        # a worker that dies between queries: the manifest waits for its replacement
        (replacement,) = _shard_workers(parties.proc.pid)
        assert replacement != worker
        os.kill(replacement, signal.SIGKILL)
        time.sleep(0.5)
        _wait_for_manifest(parties.url, 120)
        assert client.scan(Query(in_shard_1), t).matched is True
        assert client.scan(Query(stranger), t).matched is False
