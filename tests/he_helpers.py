"""Shared helpers for the ``he`` tests: random sets, hashes at exact distances, servers.

Servers of the same shape share a state directory under pytest's base temp, so
the set-up noise check (a full circuit run, several seconds) runs once per test
session; ``test_he.py::test_noise_budget_*`` re-runs it explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blindmatch.protocol import HammingIndex, HashAlgo, HashSet, HashValue, get_protocol
from blindmatch.protocol.he import HEServer

SERVER_LEARNS = {"mode": "server-learns", "allow_server_learns": True}  # the mode is opt-in


def at_distance(h: HashValue, d: int, rng: np.random.Generator) -> HashValue:
    """A hash exactly ``d`` bits from ``h`` (random positions)."""
    return h.flip(int(p) for p in rng.choice(h.algo.bits, d, replace=False))


def far_from(hs: HashSet, rng: np.random.Generator, min_dist: int) -> HashValue:
    """A random hash at distance ≥ min_dist from every set entry."""
    a: HashAlgo = hs.algo
    index = HammingIndex(hs)
    for _ in range(100_000):
        v = a.from_bytes(rng.integers(0, 256, a.nbytes, dtype=np.uint8).tobytes())
        if index.nearest(v)[1] >= min_dist:
            return v
    raise AssertionError(f"no random hash {min_dist} bits from the whole set")


def open_server(
    tmp_path_factory: pytest.TempPathFactory, hs: HashSet, tag: str, **opts: Any
) -> HEServer:
    state = Path(tmp_path_factory.getbasetemp()) / f"he-state-{tag}"
    srv = get_protocol("he").open_server(hs, state, {"workers": 1, **opts})
    assert isinstance(srv, HEServer)
    return srv
