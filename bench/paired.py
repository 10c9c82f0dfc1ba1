"""Paired per-query measurement: contenders take turns, one query each.

This machine's speed drifts by up to 1.6× over seconds (a raw scalar
multiplication measured in 200-call windows ranges 50–81 µs on an idle box).
Measuring openmined-psi for a while and blindmatch a while later lets that drift
decide a comparison within ±30%. Interleaving query by query gives every
contender the same mix of fast and slow moments, so the ratio of medians
compares like with like. The floor primitives take a turn too, so a
"measured ÷ floor" ratio is paired the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blindmatch.protocol import REGISTRY, HashSet, LocalTransport, get_algo

from .timing import Stat, stat

__all__ = [
    "BlindmatchContender",
    "Contender",
    "FloorContender",
    "OpenminedContender",
    "Sample",
    "run_rounds",
]


@dataclass(frozen=True)
class Sample:
    client_s: float  # CPU of the whole client side of one query
    api_s: float  # CPU of blind + finalize + lookup (the definition)
    server_s: float  # server CPU of the query
    bytes: float  # request + response
    wrong: int  # 1 when the verdict disagrees with membership


class Contender:
    """One implementation taking part in the rounds."""

    impl: str

    def query(self, i: int) -> Sample:
        raise NotImplementedError

    def close(self) -> None:
        return None


class OpenminedContender(Contender):
    """openmined-psi's own API: CreateRequest, ProcessRequest, GetIntersectionSize.

    GetIntersectionSize parses the whole setup message on every call; that is how
    the library is used, so it is counted.
    """

    def __init__(self, impl: str, server: Any, client: Any, setup: Any, items: list[str], rng: Any) -> None:
        self.impl, self.server, self.client, self.setup = impl, server, client, setup
        self.items, self.rng = items, rng

    def query(self, i: int) -> Sample:
        member = i % 2 == 0
        item = self.items[int(self.rng.integers(0, len(self.items)))] if member else self.rng.bytes(32).hex()
        c0 = time.process_time()
        req = self.client.CreateRequest([item])
        c1 = time.process_time()
        resp = self.server.ProcessRequest(req)
        c2 = time.process_time()
        k = self.client.GetIntersectionSize(self.setup, resp)
        c3 = time.process_time()
        client = (c1 - c0) + (c3 - c2)
        nbytes = float(req.ByteSize() + resp.ByteSize())
        return Sample(client, client, c2 - c1, nbytes, int((k == 1) != member))


class BlindmatchContender(Contender):
    """A blindmatch client scanning through the in-process transport.

    The server is reopened from the state directory its benchmark cell left behind
    (no second set preparation). ``client_s`` is all client-side CPU of ``scan``,
    transport plumbing included; ``api_s`` is the part the protocol itself reports
    (``ScanResult.crypto_ms``: blind, request encoding, response decoding, proof
    check, unblind, lookup).
    """

    def __init__(
        self,
        impl: str,
        protocol: str,
        hashes: HashSet,
        state_dir: Path,
        cache_dir: Path,
        server_options: dict[str, Any],
        client_options: dict[str, Any],
        queries: Sequence[tuple[Any, bool]],
    ) -> None:
        from .protocols import MeteredServer

        proto = REGISTRY[protocol]
        self.impl = impl
        # oprf's handlers run in this process: no worker processes to add in
        self.metered = MeteredServer(proto.open_server(hashes, state_dir, server_options), children=False)
        self.tr = LocalTransport(self.metered, client_id="paired")
        self.client = proto.new_client(get_algo(hashes.algo.name), cache_dir, client_options)
        self.queries = list(queries)
        self.client.scan(self.queries[0][0], self.tr)  # one-time downloads, not timed

    def query(self, i: int) -> Sample:
        q, member = self.queries[1 + i % (len(self.queries) - 1)]
        k0 = len(self.metered.calls)
        up0, down0 = self.tr.bytes_up, self.tr.bytes_down
        c0 = time.process_time()
        r = self.client.scan(q, self.tr)
        cpu = time.process_time() - c0
        s_cpu = sum(c.cpu_s for c in self.metered.calls[k0:])
        nbytes = float(self.tr.bytes_up - up0 + self.tr.bytes_down - down0)
        wrong = int(r.matched is not None and bool(r.matched) != member)
        return Sample(max(0.0, cpu - s_cpu), r.crypto_ms / 1000.0, s_cpu, nbytes, wrong)

    def close(self) -> None:
        self.metered.close()


# the primitives the oprf floors are made of (bench/hooks.py _oprf_bounds)
_FLOOR_OPS = ("r255.hash_to_group", "r255.scalar_mult", "r255.base_mult", "r255.add", "r255.hash_to_scalar")


@dataclass
class FloorContender(Contender):
    """Times each floor primitive once per round (libsodium via protocol/hazmat)."""

    impl: str = "floor primitives"
    times: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .micro import group_ops

        ops = group_ops()
        self._ops: dict[str, Callable[[], object]] = {k: ops[k] for k in _FLOOR_OPS}

    def query(self, i: int) -> Sample:
        for name, op in self._ops.items():
            c0 = time.process_time()
            op()
            self.times.setdefault(name, []).append(time.process_time() - c0)
        return Sample(0.0, 0.0, 0.0, 0.0, 0)

    def prims(self) -> dict[str, Stat]:
        return {k: stat(v, "s") for k, v in self.times.items()}


def run_rounds(
    contenders: Sequence[Contender], rounds: int, budget_s: float, min_rounds: int = 5
) -> dict[str, list[Sample]]:
    """``rounds`` rounds (fewer if ``budget_s`` runs out after ``min_rounds``); the
    starting contender rotates so none always runs first."""
    out: dict[str, list[Sample]] = {c.impl: [] for c in contenders}
    t0 = time.perf_counter()
    k = len(contenders)
    for i in range(rounds):
        for j in range(k):
            c = contenders[(i + j) % k]
            out[c.impl].append(c.query(i))
        if i + 1 >= min_rounds and time.perf_counter() - t0 > budget_s:
            break
    return out
