"""``he`` server memory stays bounded under endless client sessions (real uvicorn, real SEAL).

Server-learns clients make fresh evaluation keys (~18 MB at N = 16384) for every session, so
a server that kept each session's bundle grew by one bundle per session, and a worker
that kept several clients' deserialised keys grew with the number of clients it had
seen (RELIABILITY.md's soak: +195 MB). The measure is the one the soak gates: resident
size of the server's whole process tree, idle, between a fixed number of sessions —
no clock in the verdict. A session whose bundle was evicted must still be served: the
server answers 409 ``unknown_keys`` and the client resends its keys once. The set is pHash:
its key bundle is PDQ's size (two Galois steps at the same N), its query a third of PDQ's time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from blindmatch.client import HttpTransport
from blindmatch.protocol import Query, get_protocol
from blindmatch.reliability.faults import tree_rss_mb
from blindmatch.server import LiveServer, SetDir

from blindmatch.corpus import random_set

from .he_helpers import SERVER_LEARNS, at_distance

RSS_LIMIT_MB = 40.0  # the soak's gate (tests/test_soak.py)
SESSIONS = 4


@pytest.mark.timeout(600)
def test_endless_server_learns_sessions_keep_server_memory_bounded(tmp_path: Path) -> None:
    hs = random_set(32, "phash", seed=7)
    SetDir.build(tmp_path / "set", hs.algo, hs.values(), ["test"])
    rng = np.random.default_rng(7)
    env = {
        "BLINDMATCH_PROTOCOLS": "he",
        "BLINDMATCH_HE_WORKERS": "1",
        # room for two key bundles (2 × 18.4 MB): a third session evicts the oldest
        "BLINDMATCH_HE_SESSION_KEY_CACHE_MB": "40",
        "BLINDMATCH_RATE_PER_SECOND": "1000",
        "BLINDMATCH_RATE_BURST": "1000",
    }
    he = get_protocol("he")
    with LiveServer(tmp_path / "set", env=env, startup_timeout=300) as live:
        assert live.proc is not None
        tr = HttpTransport(live.url, "he", client_id="sessions", timeout=300)
        first = he.new_client(hs.algo, None, SERVER_LEARNS)
        assert first.scan(Query(hs.value(0)), tr).extra["keys_sent"] is True
        rss: list[float] = []
        for i in range(SESSIONS):
            session = he.new_client(hs.algo, None, SERVER_LEARNS)  # fresh keys, as every new session
            res = session.scan(Query(at_distance(hs.value(i + 1), 3, rng)), tr)
            assert res.extra["keys_sent"] is True and res.extra["psi_slots"] >= 32
            rss.append(tree_rss_mb(live.proc.pid))
        print(f"idle RSS of the server tree after each session (MB): {[round(x) for x in rss]}")
        assert rss[-1] - rss[1] < RSS_LIMIT_MB, rss
        # the first session's bundle is long evicted: 409, one resend, and the scan is served
        again = first.scan(Query(hs.value(0)), tr)
        assert again.extra["keys_sent"] is True and again.extra["psi_slots"] >= 32
        tr.close()


def test_key_cache_bounds_bytes_and_idle_time() -> None:
    from blindmatch.protocol.he._keycache import KeyCache

    now = [0.0]
    cache = KeyCache(max_bytes=250, ttl_s=10.0, clock=lambda: now[0])
    for i in range(5):
        cache.put(bytes([i]), bytes(100))
        assert cache.nbytes <= 250 and len(cache) <= 2
    assert cache.get(b"\x00") is None and cache.get(b"\x04") == bytes(100)
    cache.put(b"\x05", bytes(100))  # \x03 is now the least recently used
    assert cache.get(b"\x03") is None and cache.get(b"\x04") is not None
    cache.put(b"big", bytes(1000))  # one bundle over the budget still serves its query
    assert len(cache) == 1 and cache.get(b"big") is not None
    now[0] = 10.5
    assert cache.get(b"big") is None and len(cache) == 0 and cache.nbytes == 0
