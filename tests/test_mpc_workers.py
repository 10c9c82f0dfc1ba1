"""mpc scale-out: each party splits its set over W = 2 processes; verdicts equal W = 1's.

The queries sit near entries of both halves of the set, so a shard whose product were
dropped or not joined into the OR tree would turn a match into a miss.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from blindmatch.client import HttpTransport
from blindmatch.client.transport import ServerError
from blindmatch.protocol import HashValue, MaliciousSharesError, Query, get_algo, get_protocol
from blindmatch.protocol.mpc._workers import shard_bounds
from blindmatch.server import SetDir
from blindmatch.server.testing import LiveParties

PDQ = get_algo("pdq")
N = 2000


def _flip(h: HashValue, bits: list[int]) -> HashValue:
    raw = bytearray(h.raw)
    for b in bits:
        raw[b // 8] ^= 1 << (b % 8)
    return HashValue(PDQ, bytes(raw))


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mpcshards")
    rng = np.random.default_rng(5)
    SetDir.build(d, PDQ, [HashValue(PDQ, rng.bytes(32)) for _ in range(N)])
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
    with LiveParties(set_dir, workers=request.param, env={"BLINDMATCH_MPC_TIMEOUT_S": "30"}) as p:
        yield p


def test_verdicts_with_workers_equal_the_decision_rule(
    parties: LiveParties, queries: list[tuple[HashValue, bool]]
) -> None:
    client = get_protocol("mpc").new_client(PDQ)
    t = HttpTransport(parties.url, "mpc")
    got = [client.scan(Query(h), t).matched for h, _ in queries]
    assert got == [expect for _, expect in queries]


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
