"""Protocol-specific knowledge the benchmarks need, keyed by registry name.

Why a separate module: the suites iterate over ``REGISTRY`` and never special-case
a protocol, except here, where each protocol's *physical bound* (the primitive
operations it cannot avoid), its benchmark options and its load scenarios are
written down. A protocol with no entry still runs through every suite; its rows
simply carry no bound. Protocol parameters (false-positive rate, cuckoo hash
count, HE ring degree) are read from the protocol objects when they expose
them; when they do not, the documented default is used and the row says
``assumed`` so nobody mistakes it for a measured fact.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from blindmatch.protocol import HashAlgo, ServerHalf

__all__ = [
    "BOUND_HOOKS",
    "LOAD_HOOKS",
    "Bound",
    "BoundInput",
    "FilterAdapter",
    "LoadScenario",
    "client_options",
    "discover_filter",
    "discover_params",
    "find_attr",
    "he_params",
    "server_options",
]


def find_attr(objs: list[Any], names: tuple[str, ...]) -> tuple[Any, str] | None:
    """First attribute named in ``names`` (dotted paths allowed) on any of ``objs``."""
    for obj in objs:
        if obj is None:
            continue
        for name in names:
            cur = obj
            ok = True
            for part in name.split("."):
                if isinstance(cur, Mapping) and part in cur:
                    cur = cur[part]
                elif hasattr(cur, part):
                    cur = getattr(cur, part)
                else:
                    ok = False
                    break
            if ok and cur is not None and not callable(cur):
                return cur, f"{type(obj).__name__}.{name}"
    return None


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(f"blindmatch.protocol.{name}")
    except ImportError:
        return None


# ---------------------------------------------------------------------------- options


def server_options(name: str, quick: bool = False) -> dict[str, Any]:
    """Options passed to ``open_server`` (the server app's defaults, plus bench needs)."""
    return {
        "oprf": {},
        "tpsi": {"threshold": 30, "synthetic_rate": 0.05},
        "he": {},
    }.get(name, {})


def client_options(name: str) -> dict[str, Any]:
    """Options passed to ``new_client`` for a single-probe, default-mode query."""
    return {"probe_bits": 0, "mode": "client-learns"}


# ---------------------------------------------------------------------------- parameters


@dataclass
class Params:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.values[key]

    def set(self, key: str, value: Any, source: str) -> None:
        self.values[key] = value
        self.sources[key] = source

    def to_dict(self) -> dict[str, Any]:
        return {k: {"value": v, "source": self.sources.get(k, "?")} for k, v in self.values.items()}


def _discover(p: Params, key: str, objs: list[Any], names: tuple[str, ...], default: Any) -> None:
    hit = find_attr(objs, names)
    if hit is None:
        p.set(key, default, "assumed (protocol does not expose it)")
    else:
        p.set(key, hit[0], f"read from {hit[1]}")


def discover_params(name: str, proto: Any, server: ServerHalf | None, client: Any, n: int) -> Params:
    """Parameters the bound of protocol ``name`` depends on."""
    p = Params()
    mod = _module(name)
    objs = [server, client, proto, mod]
    if name == "oprf":
        _discover(p, "fpr", objs, ("fpr", "filter.fpr", "params.fpr", "DEFAULT_FPR"), 2.0**-40)
        _discover(p, "verifiable", objs, ("verifiable", "params.verifiable", "VERIFIABLE"), True)
    elif name == "tpsi":
        _discover(
            p,
            "cuckoo_hashes",
            objs,
            (
                "num_hashes",
                "cuckoo_hashes",
                "table.num_hashes",
                "params.num_hashes",
                "NUM_HASHES",
                "CUCKOO_HASHES",
            ),
            2,
        )
        _discover(p, "table_slots", objs, ("table.slots", "slots", "table_slots", "n_slots"), None)
    elif name == "he":
        hp = he_params(objs)
        src = hp.pop("_sources")
        for k, v in hp.items():
            p.set(k, v, src[k])
    return p


def he_params(objs: list[Any] | None = None) -> dict[str, Any]:
    """BFV ring degree, plaintext modulus and useful slots per ciphertext."""
    objs = [*(objs or []), _module("he")]
    out: dict[str, Any] = {}
    src: dict[str, str] = {}
    for key, names, default in (
        (
            "poly_modulus_degree",
            (
                "poly_modulus_degree",
                "params.poly_modulus_degree",
                "N",
                "POLY_MODULUS_DEGREE",
                "DEFAULT_PARAMS.poly_modulus_degree",
            ),
            8192,
        ),
        (
            "plain_modulus",
            ("plain_modulus", "params.plain_modulus", "PLAIN_MODULUS", "DEFAULT_PARAMS.plain_modulus"),
            65537,
        ),
    ):
        hit = find_attr(objs, names)
        out[key] = int(hit[0]) if hit else default
        src[key] = f"read from {hit[1]}" if hit else "assumed default"
    hit = find_attr(objs, ("useful_slots", "slots", "params.slots", "SLOTS"))
    out["useful_slots"] = int(hit[0]) if hit else out["poly_modulus_degree"]
    src["useful_slots"] = f"read from {hit[1]}" if hit else "assumed = N (every batching slot used)"
    out["_sources"] = src
    return out


# ---------------------------------------------------------------------------- bounds


@dataclass(frozen=True)
class Bound:
    value: float
    formula: str


@dataclass
class BoundInput:
    """What a bound hook may use: the primitives of this run and the cell's facts."""

    n: int
    algo: HashAlgo
    prims: Callable[[str], float]  # median seconds (or bytes) of a primitive, measured this run
    params: Params
    cores: int
    elements_per_query: int = 1


def _plain_bounds(b: BoundInput) -> dict[str, Bound]:
    stream = b.prims(f"stream_pass.{b.n}x{b.algo.words}")
    return {
        "server_cpu_s": Bound(stream, f"one XOR pass over n×{b.algo.nbytes} B (measured memory floor)"),
        "bytes_per_query": Bound(float(b.algo.nbytes + 1), f"{b.algo.nbytes} B hash up + 1 B verdict down"),
    }


def _oprf_bounds(b: BoundInput) -> dict[str, Bound]:
    h2g, sm, inv = b.prims("r255.hash_to_group"), b.prims("r255.scalar_mult"), b.prims("r255.scalar_inverse")
    fpr = float(b.params.get("fpr"))
    e = b.elements_per_query
    return {
        "setup_s": Bound(b.n * (h2g + sm) / b.cores, f"n × (hash-to-group + scalar mult) ÷ {b.cores} cores"),
        "download_bytes": Bound(b.n * math.log2(1 / fpr) / 8, "n × log2(1/fpr) bits"),
        "client_cpu_s": Bound(
            e * (h2g + 2 * sm + inv), f"{e} × (hash-to-group + 2 scalar mults + 1 inversion)"
        ),
        "server_cpu_s": Bound(e * sm, f"{e} scalar mult(s) per query (DLEQ proof not counted)"),
        "bytes_per_query": Bound(64.0 * e, f"{e} × (32 B blinded element up + 32 B evaluated down)"),
    }


def _tpsi_bounds(b: BoundInput) -> dict[str, Bound]:
    h2g, sm = b.prims("r255.hash_to_group"), b.prims("r255.scalar_mult")
    base, add = b.prims("r255.base_mult"), b.prims("r255.add")
    k = int(b.params.get("cuckoo_hashes"))
    return {
        "setup_s": Bound(b.n * (h2g + sm) / b.cores, f"n × (hash-to-group + scalar mult) ÷ {b.cores} cores"),
        "download_bytes": Bound(32.0 * b.n, "n × 32 B points (a table with no empty slots)"),
        "client_cpu_s": Bound(
            h2g + k * (3 * sm + base + 2 * add),
            f"hash-to-group + {k} locations × (3 scalar mults + 1 base mult + 2 adds)",
        ),
        "server_cpu_s": Bound(k * sm, f"{k} scalar mults (α·Q per location)"),
        "bytes_per_query": Bound(k * (32.0 + 16.0), f"{k} × (32 B point + 16 B AEAD tag)"),
    }


def _he_bounds(b: BoundInput) -> dict[str, Bound]:
    slots = int(b.params.get("useful_slots"))
    ptct = b.prims("he.bfv_ptxct")
    ct = b.prims("he.ciphertext_bytes")
    mults = math.ceil(b.n * b.algo.bits / slots)
    return {
        "server_cpu_s": Bound(
            mults * ptct, f"⌈n × {b.algo.bits} bits ÷ {slots} slots⌉ = {mults} pt×ct multiplies"
        ),
        "client_cpu_s": Bound(
            b.prims("he.bfv_encrypt") + b.prims("he.bfv_decrypt"), "1 BFV encrypt + 1 decrypt"
        ),
        "bytes_per_query": Bound(2 * ct, "1 ciphertext up + 1 ciphertext down"),
    }


BOUND_HOOKS: dict[str, Callable[[BoundInput], dict[str, Bound]]] = {
    "plain": _plain_bounds,
    "oprf": _oprf_bounds,
    "tpsi": _tpsi_bounds,
    "he": _he_bounds,
}

# primitives each bound hook reads (so the protocols suite can measure missing ones)
BOUND_PRIMS: dict[str, tuple[str, ...]] = {
    "oprf": ("group",),
    "tpsi": ("group",),
    "he": ("he",),
    "plain": (),
}


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


LOAD_HOOKS: dict[str, Callable[[], list[LoadScenario]]] = {
    "plain": lambda: [LoadScenario("plain", "plain query", "query", client_options("plain"))],
    "oprf": lambda: [
        LoadScenario(
            "oprf",
            f"oprf evaluate batch={2**k}",
            "evaluate",
            {**client_options("oprf"), "probe_bits": k},
            batch=2**k,
        )
        for k in (0, 4, 6, 8)
    ],
    "tpsi": lambda: [
        LoadScenario(
            "tpsi",
            "tpsi voucher upload",
            "vouchers",
            client_options("tpsi"),
            batch=1,
            unique=True,
            member_rate=0.05,
        ),
    ],
}


# ---------------------------------------------------------------------------- filter


@dataclass
class FilterAdapter:
    """oprf's approximate-membership filter, as the micro suite drives it."""

    name: str
    impl: str
    fpr: float
    build: Callable[[list[bytes]], Any]
    size_bytes: Callable[[Any], int]
    contains: Callable[[Any, bytes], bool]

    @property
    def log2_inv_fpr(self) -> float:
        return math.log2(1.0 / self.fpr)


def discover_filter() -> FilterAdapter | None:
    """Find oprf's filter (build, serialised size, lookup) if the oprf module is present."""
    return None
