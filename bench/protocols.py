"""protocols: every registered protocol × set size, each figure against its bound.

Why in-process: server and client run in one process through a metering
wrapper around ``LocalTransport``, so server CPU is the handlers' own CPU and
client CPU is the scan's CPU minus the handlers' — no HTTP stack in either
figure (the ``load`` suite measures HTTP). Byte counts come from the transport,
exactly as ``ScanResult`` reports them. Large cells that would not finish in
the time budget are extrapolated from the two largest measured sizes and are
marked so.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from blindmatch.protocol import (
    REGISTRY,
    ClientHalf,
    CostFloor,
    Endpoint,
    Floor,
    HashAlgo,
    HashSet,
    HashValue,
    LocalTransport,
    Query,
    Reply,
    Request,
    ServerHalf,
    get_algo,
)

from .context import BenchContext, Metric, make_row
from .hooks import (
    OWN_SUITE,
    PEER_PROTOCOLS,
    QUICK_SKIP,
    base_protocol,
    client_options,
    cost_floor,
    server_options,
    with_variants,
)
from .micro import ensure_floor_prims
from .timing import Stat, cpu_now, stat

__all__ = [
    "MeteredServer",
    "build_set",
    "ensure_cells",
    "make_queries",
    "measure_cell",
    "run_protocols",
    "synthetic_words",
]

METRICS = ("setup_s", "download_bytes", "client_cpu_s", "server_cpu_s", "bytes_per_query")


@dataclass
class Call:
    method: str
    path: str
    wall_s: float
    cpu_s: float
    up: int
    down: int


class MeteredServer(ServerHalf):
    """Wraps a server half and records each handler call's wall time, CPU and bytes.

    ``children=False`` reads only this process's CPU clock: for a server without
    worker processes it is the same figure, and its own cost (which lands on the
    client's side of the ledger) is ~0.5 µs instead of several.
    """

    def __init__(self, inner: ServerHalf, children: bool = True) -> None:
        self.inner = inner
        self.calls: list[Call] = []
        self._cpu = cpu_now if children else time.process_time

    def _wrap(self, ep: Endpoint) -> Endpoint:
        h = ep.handler
        cpu = self._cpu

        def handler(req: Request) -> Reply:
            c0 = cpu()
            t0 = time.perf_counter()
            rep = h(req)
            wall = time.perf_counter() - t0
            self.calls.append(Call(ep.method, ep.path, wall, cpu() - c0, len(req.body), len(rep.body)))
            return rep

        return replace(ep, handler=handler)

    def endpoints(self) -> Sequence[Endpoint]:
        return [self._wrap(e) for e in self.inner.endpoints()]

    def setup_bytes(self) -> int:
        return self.inner.setup_bytes()

    def close(self) -> None:
        self.inner.close()


def synthetic_words(seed: int, n: int, algo: HashAlgo) -> np.ndarray:
    """n uniformly random hashes (the set); deterministic in (seed, n)."""
    rng = np.random.default_rng([seed, n, 1])
    return rng.integers(0, 2**64, size=(n, algo.words), dtype=np.uint64)


def build_set(ctx: BenchContext, n: int, algo: HashAlgo) -> Path:
    """A set directory of n synthetic hashes under the run's workdir (built once)."""
    from blindmatch.server import SetDir

    d = ctx.workdir / f"set-{algo.name}-{n}"
    if not (d / "set.json").exists():
        SetDir.build_from_words(
            d, algo, synthetic_words(ctx.seed, n, algo), [f"bench synthetic seed={ctx.seed}"]
        )
    return d


def _floats_for(h: HashValue, rng: np.random.Generator) -> tuple[float, ...]:
    """PDQ-like float values consistent with ``h``'s bits (for multi-probe ranking)."""
    bits = h.bits().astype(np.float64)
    mag = np.abs(rng.standard_normal(bits.size)) + 0.01
    return tuple(float(x) for x in np.where(bits > 0, mag, -mag))


def make_queries(
    seed: int, hashes: HashSet, count: int, member_rate: float = 0.5, tag: int = 0
) -> list[tuple[Query, bool]]:
    """(query, is_member) pairs: members are stored hashes, others fresh random ones."""
    rng = np.random.default_rng([seed, len(hashes), 2, tag])
    algo = hashes.algo
    out: list[tuple[Query, bool]] = []
    for i in range(count):
        member = i % 2 == 0 if member_rate == 0.5 else bool(rng.random() < member_rate)
        if member:
            hv = hashes.value(int(rng.integers(0, len(hashes))))
        else:
            hv = HashValue(
                algo, rng.integers(0, 2**64, size=algo.words, dtype=np.uint64).astype(">u8").tobytes()
            )
        q = Query(
            hv,
            _floats_for(hv, rng) if algo.name == "pdq" else None,
            100,
            f"bench-account-{i % 8}",
            f"bench item {i}".encode(),
        )
        out.append((q, member))
    return out


def _local_prims(ctx: BenchContext, floor: CostFloor | None) -> dict[str, Any]:
    """The floor's primitives re-measured right after this cell's queries.

    The machine is shared: a scalar multiplication measured in the micro suite minutes
    earlier can be 2× faster or slower than during this cell. Re-measuring next to the
    cell keeps each ratio a comparison of like with like; the micro table still shows the
    run's main measurement.
    """
    if floor is None or not floor.primitives:
        return {}
    scratch = BenchContext(
        seed=ctx.seed, repeats=3, sizes=ctx.sizes, workdir=ctx.workdir, quick=True, verbose=False
    )
    ensure_floor_prims(scratch, floor)
    return {k: scratch.prims[k].to_dict() for k in floor.primitives}


def _floor_params(name: str, floor: CostFloor | None) -> dict[str, Any]:
    """The facts the floor rests on, each with where it came from (the results' format)."""
    if floor is None:
        return {}
    src = f"declared by {base_protocol(name)}.cost_floor"
    return {k: {"value": v, "source": src} for k, v in floor.params.items()}


def _scan_metered(
    client: ClientHalf, tr: LocalTransport, srv: MeteredServer, queries: list[Query]
) -> dict[str, Any]:
    """One scan (or scan_many when several queries): client/server CPU and bytes."""
    k0 = len(srv.calls)
    up0, down0 = tr.bytes_up, tr.bytes_down
    c0 = cpu_now()
    t0 = time.perf_counter()
    results = [client.scan(queries[0], tr)] if len(queries) == 1 else client.scan_many(queries, tr)
    wall = time.perf_counter() - t0
    cpu = cpu_now() - c0
    calls = srv.calls[k0:]
    s_cpu = sum(c.cpu_s for c in calls)
    s_wall = sum(c.wall_s for c in calls)
    return {
        "results": results,
        "wall_s": wall,
        "client_cpu_s": max(0.0, cpu - s_cpu),
        "client_wall_s": max(0.0, wall - s_wall),
        "server_cpu_s": s_cpu,
        "server_wall_s": s_wall,
        "up": tr.bytes_up - up0,
        "down": tr.bytes_down - down0,
        "requests": [(c.method, c.path, c.up, c.down) for c in calls],
    }


@dataclass
class _Setup:
    server: ServerHalf
    state_dir: Path
    wall: list[float]
    cpu: list[float]


def _open_timed(ctx: BenchContext, name: str, hashes: HashSet, cell_dir: Path) -> _Setup:
    """Server set-up, timed; fresh state each repeat (a second open would reuse artefacts)."""
    proto = REGISTRY[base_protocol(name)]  # a VARIANTS name runs its protocol with other options
    sopts = server_options(name)
    wall: list[float] = []
    cpu: list[float] = []
    server: ServerHalf | None = None
    for rep in range(max(1, ctx.repeats)):
        sd = cell_dir / f"state-{rep}"
        sd.mkdir(parents=True, exist_ok=True)
        c0 = cpu_now()
        t0 = time.perf_counter()
        s = proto.open_server(hashes, sd, sopts)
        wall.append(time.perf_counter() - t0)
        cpu.append(cpu_now() - c0)
        if server is not None:
            server.close()
        server = s
        if sum(wall) > 2.0 or ctx.quick:
            break
    assert server is not None
    return _Setup(server, sd, wall, cpu)


@dataclass
class _Samples:
    first: dict[str, Any]
    steady: list[dict[str, Any]]
    checked: int = 0
    wrong: int = 0


def _sample(
    ctx: BenchContext,
    client: ClientHalf,
    tr: LocalTransport,
    srv: MeteredServer,
    pool: list[tuple[Query, bool]],
) -> _Samples:
    """The first scan (one-time downloads) and steady scans until the budget, verdicts checked."""
    budget = 5.0 if ctx.quick else min(60.0, ctx.cell_budget_s / 3)
    out = _Samples(_scan_metered(client, tr, srv, [pool[0][0]]), [])
    t_start = time.perf_counter()
    for q, member in pool[1:]:
        r = _scan_metered(client, tr, srv, [q])
        out.steady.append(r)
        m = r["results"][0].matched
        if m is not None:
            out.checked += 1
            out.wrong += int(bool(m) != member)
        if time.perf_counter() - t_start > budget and len(out.steady) >= 3:
            break
    return out


def _cell_metrics(setup: _Setup, s: _Samples) -> dict[str, Stat]:
    steady, first = s.steady, s.first
    download = max(0.0, first["down"] - float(np.median([x["down"] for x in steady])))
    upload_once = max(0.0, first["up"] - float(np.median([x["up"] for x in steady])))
    return {
        "setup_s": stat(setup.wall, "s"),
        "setup_cpu_s": stat(setup.cpu, "s"),
        "download_bytes": Stat(download, download, download, 1, "B"),
        "one_time_upload_bytes": Stat(upload_once, upload_once, upload_once, 1, "B"),
        "first_scan_s": Stat(first["wall_s"], first["wall_s"], first["wall_s"], 1, "s"),
        "client_cpu_s": stat([x["client_cpu_s"] for x in steady], "s"),
        "client_crypto_ms_reported": stat([x["results"][0].crypto_ms for x in steady], "ms"),
        "server_cpu_s": stat([x["server_cpu_s"] for x in steady], "s"),
        "server_wall_s": stat([x["server_wall_s"] for x in steady], "s"),
        "query_wall_s": stat([x["wall_s"] for x in steady], "s"),
        "bytes_up": stat([float(x["up"]) for x in steady], "B"),
        "bytes_down": stat([float(x["down"]) for x in steady], "B"),
        "bytes_per_query": stat([float(x["up"] + x["down"]) for x in steady], "B"),
    }


def _batched(
    ctx: BenchContext, client: ClientHalf, tr: LocalTransport, srv: MeteredServer, hashes: HashSet
) -> dict[str, Any] | None:
    """Per-query figures of one ``scan_many`` of 16, for clients that batch."""
    if type(client).scan_many is ClientHalf.scan_many:
        return None
    b = 16
    # one account for the whole batch, so protocols that batch per account can
    many = [replace(q, account="bench-batch") for q, _ in make_queries(ctx.seed, hashes, b, tag=9)]
    r = _scan_metered(client, tr, srv, many)
    return {
        "batch": b,
        "client_cpu_s_per_query": r["client_cpu_s"] / b,
        "server_cpu_s_per_query": r["server_cpu_s"] / b,
        "bytes_per_query": (r["up"] + r["down"]) / b,
        "requests": len(r["requests"]),
    }


def measure_cell(
    ctx: BenchContext, name: str, n: int, algo_name: str = "pdq", max_queries: int | None = None
) -> dict[str, Any]:
    """Measure protocol ``name`` on a set of n hashes; returns the cell (also cached)."""
    key = (name, n)
    if key in ctx.cells:
        return ctx.cells[key]
    from blindmatch.server import SetDir

    proto = REGISTRY[base_protocol(name)]
    algo = get_algo(algo_name)
    hashes = SetDir.open(build_set(ctx, n, algo)).hashes
    cell_dir = ctx.workdir / f"cell-{name}-{n}"
    shutil.rmtree(cell_dir, ignore_errors=True)
    setup = _open_timed(ctx, name, hashes, cell_dir)
    server = setup.server
    metered = MeteredServer(server)
    tr = LocalTransport(metered, client_id="bench")
    client = proto.new_client(algo, cell_dir / "client-cache", client_options(name))
    floor = cost_floor(name, len(hashes), algo)
    ensure_floor_prims(ctx, floor)
    q_target = max_queries or (4 if ctx.quick else max(12, 4 * ctx.repeats))
    samples = _sample(ctx, client, tr, metered, make_queries(ctx.seed, hashes, q_target + 1))
    cell = {
        "protocol": name,
        "n": len(hashes),
        "n_requested": n,
        "algo": algo.name,
        "status": "ok",
        "metrics": {k: v.to_dict() for k, v in _cell_metrics(setup, samples).items()},
        "declared": {
            "setup_bytes": server.setup_bytes(),
            "download_bytes": proto.download_bytes(len(hashes), algo),
        },
        "first_scan_requests": samples.first["requests"],
        "steady_requests": samples.steady[0]["requests"],
        "queries": len(samples.steady),
        "verdicts_checked": samples.checked,
        "verdict_errors": samples.wrong,
        "batched": _batched(ctx, client, tr, metered, hashes),
        "server_stats": _jsonable(server.stats()),
        "bound_prims": _local_prims(ctx, floor),
        "params": _floor_params(name, floor),
        "learner": proto.learner.value,
        "private": proto.private,
    }
    server.close()
    if base_protocol(name) in PEER_PROTOCOLS:
        # the peers suite reopens this server (no second set preparation) for paired queries
        kept = ctx.workdir / f"state-{name}-{n}"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.move(str(setup.state_dir), kept)
        cell["state_dir"] = str(kept)
    shutil.rmtree(cell_dir, ignore_errors=True)
    ctx.cells[key] = cell
    return cell


def _jsonable(v: Any) -> Any:
    """A protocol's own per-query statistics (``ServerHalf.stats``), if JSON-friendly."""
    if not isinstance(v, dict):
        return None
    out: dict[str, Any] = {}
    for k, x in v.items():
        if isinstance(x, bool | int | float | str) or x is None:
            out[str(k)] = x
    return out or None


def _bounds_for(
    ctx: BenchContext, cell: dict[str, Any], prims: dict[str, float] | None = None
) -> dict[str, tuple[float, str]]:
    """The cell's bounds from its protocol's declared floor; ``prims`` (median seconds)
    overrides the cell's own primitives."""
    floor = cost_floor(cell["protocol"], cell["n"], get_algo(cell["algo"]))
    if floor is None:
        return {}
    ensure_floor_prims(ctx, floor)
    local = cell.get("bound_prims") or {}

    def prim(k: str) -> float:
        if prims and k in prims:
            return prims[k]
        return float(local[k]["median"]) if k in local else ctx.prims[k].median

    cores = _cores()
    return {k: (f.value(prim, cores), _formula(f, cores)) for k, f in floor.floors().items()}


def _formula(f: Floor, cores: int) -> str:
    return f.formula.replace("÷ cores", f"÷ {cores} cores") if f.parallel else f.formula


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _extrapolate(ctx: BenchContext, name: str, n: int, done: list[dict[str, Any]]) -> dict[str, Any]:
    """Predict a cell from the two largest measured ones: v(n) = v2 + slope·(n − n2)."""
    a, b = done[-2], done[-1]
    out_metrics: dict[str, Any] = {}
    for k, mb in b["metrics"].items():
        ma = a["metrics"].get(k)
        v2 = mb["median"]
        if ma is None or b["n"] == a["n"]:
            v = v2 * n / b["n"]
        else:
            slope = max(0.0, (v2 - ma["median"]) / (b["n"] - a["n"]))
            v = v2 + slope * (n - b["n"])
        out_metrics[k] = Stat(v, v, v, 0, mb["unit"]).to_dict()
    cell = {
        **b,
        "n": n,
        "n_requested": n,
        "metrics": out_metrics,
        "status": "extrapolated",
        "queries": 0,
        "verdicts_checked": 0,
        "verdict_errors": 0,
        "batched": None,
        "extrapolated_from": [a["n"], b["n"]],
    }
    ctx.cells[(name, n)] = cell
    return cell


def _predict_seconds(done: list[dict[str, Any]], n: int, queries: int) -> float:
    """Predicted set-up + ``queries`` queries at n, by the same two-point linear fit as
    ``_extrapolate`` (so a per-query cost that does not grow with n is not scaled up)."""

    def run_s(c: dict[str, Any]) -> float:
        m = c["metrics"]
        return float(m["setup_s"]["median"]) + queries * float(m["query_wall_s"]["median"])

    b = done[-1]
    if len(done) < 2 or done[-2]["n"] == b["n"]:
        return run_s(b) * n / max(1, int(b["n"]))
    a = done[-2]
    slope = max(0.0, (run_s(b) - run_s(a)) / (int(b["n"]) - int(a["n"])))
    return run_s(b) + slope * (n - int(b["n"]))


def cell_row(ctx: BenchContext, cell: dict[str, Any]) -> dict[str, Any]:
    """A result row for one cell, with each figure's bound and ratio."""
    bounds = _bounds_for(ctx, cell)
    ms = {k: Stat.from_dict(v) for k, v in cell["metrics"].items()}
    metrics: dict[str, Metric] = {}
    for k in METRICS:
        b = bounds.get(k)
        metrics[k] = Metric(ms[k], bound=b[0] if b else None, bound_formula=b[1] if b else None)
    for k in (
        "one_time_upload_bytes",
        "setup_cpu_s",
        "first_scan_s",
        "server_wall_s",
        "bytes_up",
        "bytes_down",
        "client_crypto_ms_reported",
        "query_wall_s",
    ):
        if k in ms:  # cells extrapolated from an older results layout may lack a figure
            metrics[k] = Metric(ms[k])
    note = None
    if cell["status"] == "extrapolated":
        note = (
            f"extrapolated linearly from n={cell['extrapolated_from'][0]} and "
            f"n={cell['extrapolated_from'][1]}"
            f" (predicted run time above the {ctx.cell_budget_s:.0f} s cell budget); not measured"
        )
    if cell["verdict_errors"]:
        note = (
            note + "; " if note else ""
        ) + f"{cell['verdict_errors']} wrong verdicts of {cell['verdicts_checked']}"
    if not bounds:
        note = (note + "; " if note else "") + "no cost floor declared by this protocol"
    params = {
        "n": cell["n"],
        "algo": cell["algo"],
        "queries": cell["queries"],
        "verdicts_checked": cell["verdicts_checked"],
        "verdict_errors": cell["verdict_errors"],
        "declared": cell["declared"],
        "protocol_params": cell["params"],
        "first_scan_requests": cell["first_scan_requests"],
        "steady_requests": cell["steady_requests"],
        "server_stats": cell.get("server_stats"),
        "bound_primitives_s": {k: v["median"] for k, v in (cell.get("bound_prims") or {}).items()},
        "batched": cell["batched"],
        "learner": cell["learner"],
        "private": cell["private"],
    }
    return make_row(
        "protocols",
        cell["protocol"],
        f"{cell['protocol']} n={cell['n']}",
        metrics,
        params,
        status=cell["status"],
        reason=note,
    )


def ensure_cells(ctx: BenchContext, name: str, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Cells of ``name`` at ``sizes`` (ascending), measured or extrapolated, cached.

    Raises on the first failing size; earlier cells stay cached.
    """
    done: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for n in sorted(sizes):
        cached = ctx.cells.get((name, n))
        if cached is not None:
            cell = cached
        elif len(done) >= 2 and _predict_seconds(done, n, 4) > ctx.cell_budget_s:
            ctx.log(
                f"protocols: {name} n={n} predicted over the {ctx.cell_budget_s:.0f} s budget; extrapolating"
            )
            cell = _extrapolate(ctx, name, n, done)
        else:
            ctx.log(f"protocols: {name} n={n}")
            cell = measure_cell(ctx, name, n)
        if cell["status"] == "ok":
            done.append(cell)
        out.append(cell)
    return out


def run_protocols(ctx: BenchContext) -> None:
    """Every registered protocol (or the --protocols subset) at every size, each followed
    by its VARIANTS (e.g. oprf in OPRF mode), measured the same way under their own name."""
    for name in with_variants(ctx.protocol_names()):
        if name in OWN_SUITE:
            ctx.add(make_row("protocols", name, name, status="skipped", reason=OWN_SUITE[name]))
            continue
        if ctx.quick and name in QUICK_SKIP and not ctx.quick_all:
            ctx.add(
                make_row(
                    "protocols",
                    name,
                    f"{name} (quick mode)",
                    status="skipped",
                    reason=f"--quick skips {name}: {QUICK_SKIP[name]}; run without --quick",
                )
            )
            continue
        try:
            cells = ensure_cells(ctx, name, ctx.sizes)
        except Exception as e:
            ctx.record_error("protocols", name, e)
            cells = [c for (p, _), c in sorted(ctx.cells.items()) if p == name]
            failed_at = min((n for n in ctx.sizes if (name, n) not in ctx.cells), default=None)
            for c in cells:
                ctx.add(cell_row(ctx, c))
            ctx.add(
                make_row("protocols", name, f"{name} n={failed_at}", status="failed", reason=repr(e)[:500])
            )
            continue
        for c in cells:
            ctx.add(cell_row(ctx, c))
