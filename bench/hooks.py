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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blindmatch.protocol import HashAlgo, ServerHalf

__all__ = [
    "BOUND_HOOKS",
    "LOAD_HOOKS",
    "OWN_SUITE",
    "QUICK_SKIP",
    "VARIANTS",
    "BenchVariant",
    "Bound",
    "BoundInput",
    "FilterAdapter",
    "LoadScenario",
    "base_protocol",
    "client_options",
    "discover_filter",
    "discover_params",
    "find_attr",
    "he_params",
    "server_options",
    "variants_of",
    "with_variants",
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
    server_env: dict[str, str]


# name -> variant; the suites measure these beside their protocol, under this name
VARIANTS: dict[str, BenchVariant] = {
    "oprf-unverified": BenchVariant(
        "oprf",
        "oprf, OPRF mode (no DLEQ proofs)",
        {"mode": "oprf"},
        {"allow_unverified": True},
        {"BLINDMATCH_OPRF_MODE": "oprf"},
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


def server_options(name: str, quick: bool = False) -> dict[str, Any]:
    """Options passed to ``open_server`` (the server app's defaults, plus bench needs)."""
    v = VARIANTS.get(name)
    if v is not None:
        return {**server_options(v.protocol, quick), **v.server_options}
    return {
        "oprf": {},
        "tpsi": {"threshold": 30, "synthetic_rate": 0.05},
        "he": {},
    }.get(name, {})


def client_options(name: str) -> dict[str, Any]:
    """Options passed to ``new_client``: the protocol's defaults (single probe, default
    mode), plus a variant's changes."""
    v = VARIANTS.get(name)
    return dict(v.client_options) if v is not None else {}


# protocols whose servers are several processes: measured by their own suite, not in-process
OWN_SUITE: dict[str, str] = {
    "mpc": "three party processes exchanging megabytes per query: the mpc suite measures them on loopback",
}


# protocols whose single query takes seconds; smoke tests (--quick) skip them and say so
QUICK_SKIP: dict[str, str] = {
    "he": "a query costs seconds of BFV work and the first one uploads ~19 MB of evaluation keys",
}


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
    mod = _module(base_protocol(name))
    objs = [server, client, proto, mod]
    if base_protocol(name) == "oprf":
        _discover(p, "fpr", objs, ("fpr", "filter.fpr", "params.fpr", "DEFAULT_FPR"), 2.0**-40)
    elif name == "tpsi":
        _discover(
            p,
            "cuckoo_hashes",
            objs,
            (
                "params.n_hash",
                "manifest.n_hash",
                "n_hash",
                "num_hashes",
                "cuckoo_hashes",
                "table.num_hashes",
                "params.num_hashes",
                "NUM_HASHES",
                "CUCKOO_HASHES",
            ),
            2,
        )
        _discover(
            p, "table_slots", objs, ("manifest.n_slots", "table.n_slots", "n_slots", "table_slots"), None
        )
    elif name == "he":
        hp = he_params(objs)
        for k in ("name", "poly_degree", "plain_modulus", "useful_slots", "output_primes", "coeff_bits"):
            p.set(k, hp[k], hp["source"])
    return p


_PARAMSET_ATTRS = ("poly_degree", "coeff_bits", "plain_modulus")


def _is_paramset(v: Any) -> bool:
    return all(hasattr(v, a) for a in _PARAMSET_ATTRS) and not isinstance(v, type)


def _find_paramset(obj: Any, depth: int, seen: set[int]) -> tuple[Any, str] | None:
    """Duck-typed search for a BFV parameter set (poly_degree, coeff_bits, plain_modulus)."""
    if obj is None or id(obj) in seen:
        return None
    seen.add(id(obj))
    if _is_paramset(obj):
        return obj, type(obj).__name__
    if depth == 0 or isinstance(obj, str | bytes | int | float | bool | type):
        return None
    try:
        items = list(vars(obj).items())
    except TypeError:
        return None
    for k, v in items:
        if k.startswith("__") or (callable(v) and not _is_paramset(v)):
            continue
        if isinstance(v, Mapping | list | tuple | set):
            continue
        hit = _find_paramset(v, depth - 1, seen)
        if hit is not None:
            return hit[0], f"{type(obj).__name__}.{k}"
    return None


def he_params(objs: list[Any] | None = None) -> dict[str, Any]:
    """The ``he`` BFV parameter set: discovered on the server/client/module, else a default.

    Returns name, poly_degree, coeff_bits (None when unknown), plain_modulus,
    useful slots per ciphertext, output_primes and where each came from.
    """
    mod = _module("he")
    search = [*(objs or []), mod]
    seen: set[int] = set()
    for o in search:
        hit = _find_paramset(o, 2, seen)
        if hit is not None:
            ps, where = hit
            return _ps_dict(ps, f"read from {where}")
    if mod is not None:  # a default named by the module, resolved in hazmat.bfv.PARAM_SETS
        bfv = importlib.import_module("blindmatch.protocol.hazmat.bfv") if _has("hazmat.bfv") else None
        sets = getattr(bfv, "PARAM_SETS", {}) if bfv else {}
        for k, v in vars(mod).items():
            if "PARAM" in k.upper() and isinstance(v, str) and v in sets:
                return _ps_dict(sets[v], f"he.{k} = {v!r}")
        from blindmatch.protocol import get_algo

        for k, v in vars(mod).items():  # e.g. a ``_default_param_set(algo)`` helper
            if "default_param" in k.lower() and callable(v):
                try:
                    name = v(get_algo("pdq"))
                except Exception:  # noqa: S112 - a helper with another signature: keep looking
                    continue
                if isinstance(name, str) and name in sets:
                    return _ps_dict(sets[name], f"he.{k}(pdq) = {name!r}")
    return {
        "name": "tenseal-n8192",
        "poly_degree": 8192,
        "coeff_bits": None,
        "plain_modulus": 65537,
        "useful_slots": 8192,
        "output_primes": None,
        "source": "assumed: he's parameters not found (TenSEAL N=8192, t=65537)",
    }


def _has(sub: str) -> bool:
    try:
        importlib.import_module(f"blindmatch.protocol.{sub}")
    except ImportError:
        return False
    return True


def _ps_dict(ps: Any, source: str) -> dict[str, Any]:
    n = int(ps.poly_degree)
    slots = getattr(ps, "slots", n)
    return {
        "name": str(getattr(ps, "name", f"bfv-n{n}")),
        "poly_degree": n,
        "coeff_bits": [int(b) for b in ps.coeff_bits],
        "plain_modulus": int(ps.plain_modulus),
        "useful_slots": int(slots),
        "output_primes": getattr(ps, "output_primes", None),
        "source": source,
    }


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


def _oprf_unverified_bounds(b: BoundInput) -> dict[str, Bound]:
    """RFC 9497 OPRF mode: no proof; blind inverses are batched (one inversion per 32)."""
    h2g, sm = b.prims("r255.hash_to_group"), b.prims("r255.scalar_mult")
    fpr = float(b.params.get("fpr"))
    e = b.elements_per_query
    return {
        "setup_s": Bound(b.n * (h2g + sm) / b.cores, f"n × (hash-to-group + scalar mult) ÷ {b.cores} cores"),
        "download_bytes": Bound(b.n * math.log2(1 / fpr) / 8, "n × log2(1/fpr) bits"),
        "client_cpu_s": Bound(e * (h2g + 2 * sm), f"{e} × (hash-to-group + 2 scalar mults)"),
        "server_cpu_s": Bound(e * sm, f"{e} scalar mult(s) per query"),
        "bytes_per_query": Bound(64.0 * e, f"{e} × (32 B blinded element up + 32 B evaluated down)"),
    }


def _oprf_bounds(b: BoundInput) -> dict[str, Bound]:
    """VOPRF: RFC 9497 §2.2 batched DLEQ proof on top of the OPRF work (operation counts in
    docs/protocols/oprf.md); libsodium has no multi-scalar multiplication, so each term is one."""
    out = _oprf_unverified_bounds(b)
    h2g, sm = b.prims("r255.hash_to_group"), b.prims("r255.scalar_mult")
    base, add, h2s = b.prims("r255.base_mult"), b.prims("r255.add"), b.prims("r255.hash_to_scalar")
    e = b.elements_per_query
    out["client_cpu_s"] = Bound(
        e * (h2g + 4 * sm + h2s) + 3 * sm + base + 2 * e * add + h2s,
        f"{e} hash-to-group + {4 * e + 3} scalar mults + 1 base mult + {2 * e} adds + {e + 1} "
        "hash-to-scalars (blind, unblind; proof check: composites M and Z, t2 = s·G + c·pkS, "
        "t3 = s·M + c·Z, challenge)",
    )
    out["server_cpu_s"] = Bound(
        e * (2 * sm + h2s) + (e - 1) * add + 2 * sm + base + h2s,
        f"{2 * e + 2} scalar mults + 1 base mult + {e - 1} adds + {e + 1} hash-to-scalars "
        "(evaluation; proof: composite M, Z = k·M, t2 = r·G, t3 = r·M, challenge)",
    )
    return out


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
    coeff = b.params.get("coeff_bits")
    tag = f"seal.{b.params.get('name')}" if coeff else "he.floor"
    ptct = b.prims(f"{tag}.ptxct_ntt" if coeff else "he.floor_ptxct")
    mults = math.ceil(b.n * b.algo.bits / slots)
    note = ""
    if b.n < slots:
        note = (
            f"; below one ciphertext of slots, one-distance-per-slot packing needs "
            f"⌈n/N⌉×{b.algo.bits} = {math.ceil(b.n / slots) * b.algo.bits}"
        )
    out = {
        "server_cpu_s": Bound(
            mults * ptct,
            f"⌈n × {b.algo.bits} bits ÷ {slots} slots⌉ = {mults} pt×ct (NTT form) multiplies{note}",
        ),
        "client_cpu_s": Bound(
            b.prims(f"{tag}.encrypt" if coeff else "he.floor_encrypt")
            + b.prims(f"{tag}.decrypt" if coeff else "he.floor_decrypt"),
            "1 encrypt + 1 decrypt",
        ),
    }
    outp = b.params.get("output_primes")
    if coeff and outp:
        n_poly, data = int(b.params.get("poly_degree")), len(coeff) - 1
        up, down = data * n_poly * 8, 2 * int(outp) * n_poly * 8
        out["bytes_per_query"] = Bound(
            float(up + down),
            f"seeded query ciphertext ({data} primes × N × 8 B) + result at {outp} primes "
            f"(2 × {outp} × N × 8 B)",
        )
    return out


BOUND_HOOKS: dict[str, Callable[[BoundInput], dict[str, Bound]]] = {
    "plain": _plain_bounds,
    "oprf": _oprf_bounds,
    "oprf-unverified": _oprf_unverified_bounds,
    "tpsi": _tpsi_bounds,
    "he": _he_bounds,
}

# primitives each bound hook reads (so the protocols suite can measure missing ones)
BOUND_PRIMS: dict[str, tuple[str, ...]] = {
    "oprf": ("group",),
    "oprf-unverified": ("group",),
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


LOAD_HOOKS: dict[str, Callable[[], list[LoadScenario]]] = {
    "plain": lambda: [LoadScenario("plain", "plain query", "query", client_options("plain"))],
    "oprf": lambda: _oprf_evaluate_scenarios("oprf"),
    "oprf-unverified": lambda: _oprf_evaluate_scenarios("oprf-unverified"),
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


# ---------------------------------------------------------------------------- filter


@dataclass
class FilterAdapter:
    """oprf's approximate-membership filter, as the micro suite drives it.

    ``build`` takes uniform uint64 values (the PRF outputs the server filters),
    ``load`` is the client's one-time decode/index step, ``contains`` one lookup.
    """

    name: str
    impl: str
    fpr: float
    fpr_source: str
    build: Callable[[Any], Any]
    size_bytes: Callable[[Any], int]
    load: Callable[[Any], Any]
    contains: Callable[[Any, int], bool]

    @property
    def log2_inv_fpr(self) -> float:
        return math.log2(1.0 / self.fpr)


def oprf_default_fpr() -> tuple[float, str]:
    """The oprf module's default false-positive rate, or the issue's 2^-40."""
    mod = _module("oprf")
    hit = find_attr([mod], ("DEFAULT_FPR", "FPR", "DEFAULT_FALSE_POSITIVE_RATE"))
    if hit is not None:
        return float(hit[0]), f"read from {hit[1]}"
    return 2.0**-40, "assumed 2^-40 (the issue's default; oprf does not expose one)"


def discover_filter() -> FilterAdapter | None:
    """Find oprf's filter by name: the Golomb-compressed set in ``protocol._gcs``.

    Duck-typed on ``build_gcs(values, universe)``, ``fpr_to_m(fpr)`` and
    ``GCSReader(f).contains(h)``; returns None when no such module is present.
    """
    try:
        mod = importlib.import_module("blindmatch.protocol._gcs")
    except ImportError:
        return None
    build_gcs = getattr(mod, "build_gcs", None)
    reader = getattr(mod, "GCSReader", None)
    fpr_to_m = getattr(mod, "fpr_to_m", None)
    if not (callable(build_gcs) and callable(reader) and callable(fpr_to_m)):
        return None
    fpr, src = oprf_default_fpr()
    m = int(fpr_to_m(fpr))

    def size(f: Any) -> int:
        nb = f.nbytes
        return int(nb() if callable(nb) else nb)

    return FilterAdapter(
        name="Golomb-compressed set (oprf)",
        impl="blindmatch.protocol._gcs",
        fpr=fpr,
        fpr_source=src,
        build=lambda values: build_gcs(values, len(values) * m),
        size_bytes=size,
        load=lambda f: reader(f),
        contains=lambda r, v: bool(r.contains(int(v))),
    )
