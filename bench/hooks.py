"""What the benchmarks run, as configuration data; every protocol fact comes from the registry.

Why this module is data: the suites iterate over ``REGISTRY`` and ask each
protocol for its option types (``server_options_type``/``client_options_type``)
and its physical bound (``Protocol.cost_floor``). What is left here is the
benchmark's own configuration: named variants measured beside a protocol
(other options), protocols a ``--quick`` smoke run skips, the HTTP load
scenarios, and which protocols the peer comparison pits against external
libraries. A protocol with no entry here still runs through the protocols
suite with its floor, and through the load suite with one scenario replaying
its first rate-limited endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from blindmatch.protocol import REGISTRY, CostFloor, HashAlgo, Protocol
from blindmatch.server.settings import protocol_env

from .goals import PEER_MODES, PEER_PROTOCOL

__all__ = [
    "LOAD_SCENARIOS",
    "OWN_SUITE",
    "OWN_SUITE_REFERENCE",
    "PEER_LABELS",
    "PEER_PROTOCOLS",
    "QUICK_SKIP",
    "VARIANTS",
    "LoadScenario",
    "SuiteReference",
    "base_protocol",
    "client_options",
    "cost_floor",
    "load_scenarios",
    "server_options",
    "variants_of",
    "with_variants",
]


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BenchVariant:
    """A protocol benchmarked a second way, next to its default: other server/client options.

    Not the simulator's ``sim.decide.variants.Variant`` (a decision rule with its accuracy
    model): this one only names the options a benchmark row runs with.
    """

    protocol: str
    label: str
    server_options: dict[str, Any]
    client_options: dict[str, Any]

    @property
    def server_env(self) -> dict[str, str]:
        """The same server options for an HTTP server process (``BLINDMATCH_<PROTOCOL>_*``)."""
        return protocol_env(self.protocol, self.server_options)


# name -> variant; the suites measure these beside their protocol, under this name
VARIANTS: dict[str, BenchVariant] = {
    "oprf-unverified": BenchVariant(
        "oprf",
        "oprf, OPRF mode (no DLEQ proofs)",
        {"mode": "oprf"},
        {"allow_unverified": True},
    ),
}


def base_protocol(name: str) -> str:
    """The registered protocol a (possibly variant) name runs."""
    v = VARIANTS.get(name)
    return v.protocol if v else name


def variants_of(name: str) -> list[str]:
    return [k for k, v in VARIANTS.items() if v.protocol == name]


def with_variants(names: Sequence[str]) -> list[str]:
    """Each protocol name followed by its VARIANTS, the order the suites measure them in."""
    return [m for p in names for m in (p, *variants_of(p))]


def server_options(name: str) -> dict[str, Any]:
    """Options passed to ``open_server``: the protocol's defaults, plus a variant's changes."""
    v = VARIANTS.get(name)
    return dict(v.server_options) if v is not None else {}


def client_options(name: str) -> dict[str, Any]:
    """Options passed to ``new_client``: the protocol's defaults (single probe, default
    mode), plus a variant's changes."""
    v = VARIANTS.get(name)
    return dict(v.client_options) if v is not None else {}


# protocols whose servers are several processes: measured by their own suite, not in-process
OWN_SUITE: dict[str, str] = {
    "mpc": "three party processes exchanging megabytes per query: the mpc suite measures them on loopback",
}


@dataclass(frozen=True)
class SuiteReference:
    """A protocol measured in an own suite's run as its point of comparison: one set-up
    and one steady query at ``set_size``, shown on the suite's row of that size."""

    protocol: str
    set_size: int

    @property
    def decade(self) -> int:
        return round(math.log10(self.set_size))

    @property
    def metric(self) -> str:
        """The row metric the figure is stored under, e.g. ``he_wall_1e6``."""
        return f"{self.protocol}_wall_1e{self.decade}"


# own suite -> the protocol it is compared with (the BFV protocol: the other fuzzy, private one)
OWN_SUITE_REFERENCE: dict[str, SuiteReference] = {
    "mpc": SuiteReference("he", 10**6),
}


# protocols whose single query takes seconds; smoke tests (--quick) skip them and say so
QUICK_SKIP: dict[str, str] = {
    "he": "a query costs seconds of BFV work and the first one uploads ~19 MB of evaluation keys",
}


# ---------------------------------------------------------------------------- floors


def cost_floor(name: str, n: int, algo: HashAlgo) -> CostFloor | None:
    """The declared floor of protocol (or variant) ``name`` at the options the suites use."""
    proto: Protocol = REGISTRY[base_protocol(name)]
    return proto.cost_floor(n, algo, server_options(name), client_options(name))


# ---------------------------------------------------------------------------- load


@dataclass(frozen=True)
class LoadScenario:
    """One HTTP load run: which request to replay, and how many items it carries."""

    protocol: str
    label: str
    path: str  # endpoint path whose POST bodies are recorded and replayed
    client_options: dict[str, Any]
    batch: int = 1  # items per request (evaluations, vouchers)
    unique: bool = False  # each recorded body may be sent only once (e.g. voucher ids)
    member_rate: float = 0.5
    use_scan_many: int = 0  # >0: record scan_many over this many queries per request
    variant: str = ""  # a VARIANTS name: rows are kept apart from the default's
    server_env: dict[str, str] = field(default_factory=dict)


def _oprf_evaluate_scenarios(name: str) -> list[LoadScenario]:
    """POST evaluate with batches of 1, 16, 64 and 256 (probe_bits 0, 4, 6, 8) for oprf or a variant."""
    v = VARIANTS.get(name)
    return [
        LoadScenario(
            "oprf",
            f"{name} evaluate batch={2**k}",
            "evaluate",
            {**client_options(name), "probe_bits": k},
            batch=2**k,
            variant=name if v else "",
            server_env=dict(v.server_env) if v else {},
        )
        for k in (0, 4, 6, 8)
    ]


# protocol (or variant) -> its load scenarios; a protocol without an entry is reported as skipped
LOAD_SCENARIOS: dict[str, list[LoadScenario]] = {
    "plain": [LoadScenario("plain", "plain query", "query", client_options("plain"))],
    "oprf": _oprf_evaluate_scenarios("oprf"),
    "oprf-unverified": _oprf_evaluate_scenarios("oprf-unverified"),
    "tpsi": [
        LoadScenario(
            "tpsi",
            "tpsi voucher upload",
            "vouchers",
            client_options("tpsi"),
            batch=1,
            unique=True,
            member_rate=0.05,
        ),
        LoadScenario(
            "tpsi",
            "tpsi voucher upload batch=64",
            "vouchers",
            client_options("tpsi"),
            batch=64,
            unique=True,
            member_rate=0.05,
            use_scan_many=64,
        ),
    ],
}


def load_scenarios(name: str) -> list[LoadScenario]:
    return list(LOAD_SCENARIOS.get(name, []))


# ---------------------------------------------------------------------------- peers

# the protocol the peers suite compares with external OPRF-PSI libraries (openmined-psi), and
# the row label and short name of each of its modes; both come from the goal table's data. Each
# keeps its last server state so paired rounds reopen it.
PEER_PROTOCOLS: tuple[str, ...] = (PEER_PROTOCOL,)
PEER_LABELS: dict[str, tuple[str, str]] = {
    m.role: (f"blindmatch {PEER_PROTOCOL} ({m.label})", m.short) for m in PEER_MODES
}
