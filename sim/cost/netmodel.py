"""End-to-end latency of one scan under a network profile, from measured costs.

The model (stated in docs/simulation-report.md, "Latency model"). One warm scan
(connection already open, one-time download already cached) takes

    hash + client crypto + server CPU (+ HTTP overhead)
    + Σ over the scan's round trips of (RTT + jitter)
    + (bytes up + headers) / uplink + (bytes down + headers) / downlink

* hash, client crypto and server time are drawn (bootstrap) from the
  per-query measurements of this run;
* jitter is an exponentially distributed extra delay per round trip with the
  profile's mean — a common one-parameter model of queueing delay;
* transfer is bandwidth-limited; TCP slow start, loss and radio wake-up are
  not modelled, so large uploads on mobile links are, if anything, optimistic;
* the server is unloaded (no queueing); at utilisation ρ an M/M/1 server would
  multiply the server term by 1/(1-ρ).

A cold first scan adds a TCP and a TLS 1.3 handshake (two round trips) and the
one-time download at the downlink rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["HTTP_HEADER_BYTES", "LatencyInputs", "NetworkProfile", "simulate"]

HTTP_HEADER_BYTES = (350, 250)  # request, response headers per round trip (typical HTTP/1.1)


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    rtt_ms: float
    down_mbps: float
    up_mbps: float
    jitter_ms: float
    source: str = ""

    @classmethod
    def from_config(cls, name: str, d: dict[str, Any]) -> NetworkProfile:
        return cls(
            name,
            float(d["rtt_ms"]),
            float(d["down_mbps"]),
            float(d["up_mbps"]),
            float(d["jitter_ms"]),
            str(d.get("source", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rtt_ms": self.rtt_ms,
            "down_mbps": self.down_mbps,
            "up_mbps": self.up_mbps,
            "jitter_ms": self.jitter_ms,
            "source": self.source,
        }


@dataclass(frozen=True)
class LatencyInputs:
    """Measured per-query costs of one protocol variant."""

    hash_ms: npt.NDArray[np.float64]
    crypto_ms: npt.NDArray[np.float64]
    server_ms: npt.NDArray[np.float64]
    round_trips: float
    bytes_up: float
    bytes_down: float
    one_time_bytes: float


def _tx_ms(nbytes: npt.NDArray[np.float64] | float, mbps: float) -> npt.NDArray[np.float64]:
    return np.asarray(nbytes, dtype=np.float64) * 8.0 / (mbps * 1e6) * 1000.0


def simulate(
    profile: NetworkProfile, inp: LatencyInputs, n: int, rng: np.random.Generator
) -> dict[str, float]:
    """p50/p95/p99 of warm latency, and p50 of a cold first scan, in milliseconds."""

    def draw(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        a = a[np.isfinite(a)]
        return rng.choice(a, n) if a.size else np.zeros(n)

    trips = max(1, round(inp.round_trips))
    rtt = (
        profile.rtt_ms * trips + rng.exponential(profile.jitter_ms, (n, trips)).sum(axis=1)
        if profile.jitter_ms > 0
        else np.full(n, profile.rtt_ms * trips)
    )
    up = inp.bytes_up + HTTP_HEADER_BYTES[0] * trips
    down = inp.bytes_down + HTTP_HEADER_BYTES[1] * trips
    warm = (
        draw(inp.hash_ms)
        + draw(inp.crypto_ms)
        + draw(inp.server_ms)
        + rtt
        + _tx_ms(up, profile.up_mbps)
        + _tx_ms(down, profile.down_mbps)
    )
    handshake = 2 * profile.rtt_ms + rng.exponential(profile.jitter_ms or 1e-9, (n, 2)).sum(axis=1)
    cold = warm + handshake + _tx_ms(inp.one_time_bytes, profile.down_mbps)
    q = np.percentile(warm, [50, 95, 99])
    return {
        "p50_ms": float(q[0]),
        "p95_ms": float(q[1]),
        "p99_ms": float(q[2]),
        "cold_p50_ms": float(np.percentile(cold, 50)),
        "transfer_ms": float(_tx_ms(up, profile.up_mbps) + _tx_ms(down, profile.down_mbps)),
        "round_trips": trips,
    }
