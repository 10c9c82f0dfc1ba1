"""peers: blindmatch against the outside world, in one run, as ratios.

Three comparisons:

* ``oprf`` against openmined-psi 2.0.6 (P-256, C++), GCS and Bloom, at the same
  per-lookup false-positive rate, on the same synthetic set: set preparation,
  setup bytes per element, client CPU per query and server CPU per element.
  Both oprf modes are measured side by side: VOPRF (the default, a DLEQ proof per
  response) and OPRF mode (no proofs, the like-for-like comparison: openmined-psi
  does not verify its server either); each mode has its own cells.
  Per-query figures come from paired rounds (bench/paired.py): one query of
  each implementation in turn, so machine drift hits all alike.
* every protocol against ``plain`` (numpy Hamming index, no privacy): the price
  of privacy, per metric and per image including the PDQ hash itself.
* the numpy ``HammingIndex`` against a naive pure-Python scan.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from blindmatch.protocol import REGISTRY, HammingIndex, HashSet, get_algo
from blindmatch.protocol.oprf import DEFAULT_FPR

from .context import BenchContext, Metric, make_row
from .hooks import (
    OWN_SUITE,
    PEER_LABELS,
    PEER_PROTOCOLS,
    QUICK_SKIP,
    base_protocol,
    client_options,
    server_options,
    with_variants,
)
from .micro import hamming_index_qps
from .paired import BlindmatchContender, Contender, FloorContender, OpenminedContender, run_rounds
from .protocols import _bounds_for, build_set, ensure_cells, make_queries, synthetic_words
from .timing import Stat, measure, stat

__all__ = ["naive_nearest", "run_peers"]


def naive_nearest(rows: list[int], query: int) -> tuple[int, int]:
    """(row, distance) of the closest hash, one Python int per stored hash."""
    best, best_d = 0, 1 << 30
    for i, h in enumerate(rows):
        d = (h ^ query).bit_count()
        if d < best_d:
            best, best_d = i, d
    return best, best_d


def _one(v: float, unit: str) -> Stat:
    return Stat(v, v, v, 1, unit)


def _openmined(ctx: BenchContext, n: int, fpr: float) -> list[tuple[dict[str, Any], OpenminedContender]]:
    """Set preparation measured here; per-query figures come from the paired rounds."""
    import private_set_intersection.python as psi

    algo = get_algo("pdq")
    words = synthetic_words(ctx.seed, n, algo)
    items = [bytes(r).hex() for r in words.astype(">u8").view(np.uint8).reshape(n, -1)]
    out: list[tuple[dict[str, Any], OpenminedContender]] = []
    for k, (ds_name, ds) in enumerate(
        (("GCS", psi.DataStructure.GCS), ("Bloom", psi.DataStructure.BLOOM_FILTER))
    ):
        server = psi.server.CreateWithNewKey(False)
        client = psi.client.CreateWithNewKey(False)
        walls: list[float] = []
        cpus: list[float] = []
        setup: Any = None
        for _ in range(1 if ctx.quick else ctx.repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            setup = server.CreateSetupMessage(fpr, 1, items, ds)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            if sum(walls) > 2.0:
                break
        setup_bytes = setup.ByteSize()
        impl = f"openmined-psi {ds_name}"
        rng = np.random.default_rng([ctx.seed, n, 5, k])
        view = {
            "impl": impl,
            "setup_s": stat(walls, "s"),
            "setup_cpu_s": stat(cpus, "s"),
            "setup_bytes_per_element": _one(setup_bytes / n, "B"),
            "filter_bytes_per_element": _one(setup_bytes / n, "B"),
            "server_setup_cpu_per_element_s": stat([c / n for c in cpus], "s"),
        }
        out.append((view, OpenminedContender(impl, server, client, setup, items, rng)))
    return out


def _paired(
    ctx: BenchContext, contenders: list[Contender], floor: FloorContender
) -> dict[str, dict[str, Any]]:
    """Per-query metrics of every contender from interleaved rounds (bench/paired.py)."""
    rounds = 6 if ctx.quick else max(60, 30 * ctx.repeats)
    samples = run_rounds([*contenders, floor], rounds, budget_s=5.0 if ctx.quick else 60.0)
    out: dict[str, dict[str, Any]] = {}
    for c in contenders:
        ss = samples[c.impl]
        out[c.impl] = {
            "client_cpu_s": stat([x.client_s for x in ss], "s"),
            "client_api_cpu_s": stat([x.api_s for x in ss], "s"),
            "server_cpu_per_element_s": stat([x.server_s for x in ss], "s"),
            "bytes_per_query": stat([x.bytes for x in ss], "B"),
            "verdict_errors": sum(x.wrong for x in ss),
            "queries": len(ss),
            "paired_rounds": len(ss),
        }
    return out


def _largest_get(cell: dict[str, Any]) -> float:
    """The one-time artefact (filter) itself: the largest GET response of the first scan."""
    gets = [down for method, _, _, down in cell["first_scan_requests"] if method == "GET"]
    return float(max(gets)) if gets else 0.0


def _oprf_view(cell: dict[str, Any], impl: str = "blindmatch oprf") -> dict[str, Any]:
    m = {k: Stat.from_dict(v) for k, v in cell["metrics"].items()}
    n = cell["n"]
    return {
        "impl": impl,
        "setup_s": m["setup_s"],
        "setup_cpu_s": m["setup_cpu_s"],
        "setup_bytes_per_element": m["download_bytes"].per(n),
        "filter_bytes_per_element": _one(_largest_get(cell) / n, "B"),
        "client_cpu_s": m["client_cpu_s"],
        "client_api_cpu_s": m["client_crypto_ms_reported"].scaled(1e-3, "s"),
        "server_cpu_per_element_s": m["server_cpu_s"],
        "server_setup_cpu_per_element_s": m["setup_cpu_s"].per(n),
        "bytes_per_query": m["bytes_per_query"],
        "verdict_errors": cell["verdict_errors"],
        "queries": cell["queries"],
        "status": cell["status"],
    }


_PEER_METRICS = (
    "setup_s",
    "setup_cpu_s",
    "setup_bytes_per_element",
    "filter_bytes_per_element",
    "client_cpu_s",
    "client_api_cpu_s",
    "server_cpu_per_element_s",
    "server_setup_cpu_per_element_s",
    "bytes_per_query",
)


_Mine = list[tuple[str, dict[str, Any], dict[str, Any]]]


def _my_views(ctx: BenchContext, n: int) -> tuple[_Mine, float]:
    """Our cells at size n and the fpr they declare, so the peers are built to the same error rate."""
    fpr = DEFAULT_FPR  # the peers' false-positive rate unless a measured cell declares one
    mine: _Mine = []
    wanted = [p for p in PEER_PROTOCOLS if p in REGISTRY and p in ctx.protocol_names()]
    for name in with_variants(wanted):
        sizes = [s for s in sorted(ctx.sizes) if s <= n]
        cell = ensure_cells(ctx, name, sizes if n in sizes else [*sizes, n])[-1]
        fpr = float(cell["params"].get("fpr", {}).get("value", fpr))
        impl, mode = PEER_LABELS.get(name, (f"blindmatch {name}", name))
        view = _oprf_view(cell, impl)
        view["mode"] = mode
        mine.append((name, view, cell))
    return mine, fpr


def _my_contenders(ctx: BenchContext, n: int, mine: _Mine) -> list[Contender]:
    """Measured (not extrapolated) cells join the paired rounds; the hash set is built only if one does."""
    from blindmatch.server import SetDir

    contenders: list[Contender] = []
    algo = get_algo("pdq")
    hashes: HashSet | None = None
    for name, view, cell in mine:
        if cell.get("state_dir") and cell["status"] != "extrapolated":
            if hashes is None:
                hashes = SetDir.open(build_set(ctx, n, algo)).hashes
            contenders.append(
                BlindmatchContender(
                    view["impl"],
                    base_protocol(name),
                    hashes,
                    Path(cell["state_dir"]),
                    ctx.workdir / f"paired-cache-{name}-{n}",
                    server_options(name),
                    client_options(name),
                    make_queries(ctx.seed, hashes, 65, tag=11),
                )
            )
    return contenders


def _attach_paired(
    ctx: BenchContext, mine: _Mine, paired: dict[str, Any], floor_prims: dict[str, Any]
) -> None:
    """Paired numbers replace a cell's own, and its bounds use the floor measured in the same rounds."""
    for _, view, cell in mine:
        if view["impl"] in paired:
            view.update(paired[view["impl"]])
            bounds = _bounds_for(ctx, cell, floor_prims)
            view["floor_source"] = "paired: floor primitives took a turn in every round"
        else:
            bounds = _bounds_for(ctx, cell)
            view["floor_source"] = "the cell's primitives (no paired rounds for this cell)"
        view["bounds"] = {k: {"value": v, "formula": f} for k, (v, f) in bounds.items()}


def _add_peer_rows(ctx: BenchContext, n: int, fpr: float, peers: list[dict[str, Any]]) -> None:
    """One row per peer, so the peer's own numbers are on record next to the ratios."""
    for p in peers:
        ctx.add(
            make_row(
                "peers",
                "openmined-psi",
                f"{p['impl']} n={n}",
                {k: Metric(p[k]) for k in _PEER_METRICS},
                {
                    "n": n,
                    "fpr": fpr,
                    "queries": p["queries"],
                    "verdict_errors": p["verdict_errors"],
                    "paired_rounds": p["paired_rounds"],
                    "role": "peer",
                },
                reason=f"{p['verdict_errors']} wrong verdicts" if p["verdict_errors"] else None,
            )
        )


def _add_ratio_rows(
    ctx: BenchContext,
    n: int,
    fpr: float,
    mine_views: list[tuple[str, dict[str, Any]]],
    peers: list[dict[str, Any]],
) -> None:
    """One row per cell of ours with its ratio to every peer, metric by metric."""
    for name, oprf in mine_views:
        ms: dict[str, Metric] = {}
        ratios: dict[str, dict[str, float | None]] = {}
        for k in _PEER_METRICS:
            ms[k] = Metric(oprf[k])
            ratios[k] = {}
            for p in peers:
                base = p[k].median
                ratios[k][p["impl"]] = oprf[k].median / base if base > 0 else None
        ctx.add(
            make_row(
                "peers",
                "oprf vs openmined-psi",
                f"{oprf['impl']} n={n}",
                ms,
                {
                    "n": n,
                    "fpr": fpr,
                    "queries": oprf["queries"],
                    "verdict_errors": oprf["verdict_errors"],
                    "ratio_oprf_over_peer": ratios,
                    "oprf_bounds": oprf["bounds"],
                    "paired_rounds": oprf.get("paired_rounds", 0),
                    "floor_source": oprf["floor_source"],
                    "role": name,
                    "impl": oprf["impl"],
                    "mode": oprf["mode"],
                },
                status="extrapolated" if oprf["status"] == "extrapolated" else "ok",
                reason="ratio < 1 means oprf is cheaper/smaller",
            )
        )


def _psi_rows(ctx: BenchContext, n: int) -> None:
    """Peers and our cells at size n, measured in the same paired rounds so machine load hits all alike."""
    mine, fpr = _my_views(ctx, n)
    built = _openmined(ctx, n, fpr)
    contenders: list[Contender] = [c for _, c in built]
    contenders.extend(_my_contenders(ctx, n, mine))
    floor = FloorContender()
    try:
        paired = _paired(ctx, contenders, floor)
    finally:
        for c in contenders:
            c.close()
    floor_prims = {k: v.median for k, v in floor.prims().items()}
    peers = [{**view, **paired[view["impl"]]} for view, _ in built]
    _attach_paired(ctx, mine, paired, floor_prims)
    mine_views = [(name, view) for name, view, _ in mine]
    _add_peer_rows(ctx, n, fpr, peers)
    if not mine_views:
        ctx.add(
            make_row(
                "peers",
                "oprf vs openmined-psi",
                f"oprf n={n}",
                status="skipped",
                reason="oprf is not registered in this build; openmined-psi measured alone",
                params={"n": n, "fpr": fpr},
            )
        )
        return
    _add_ratio_rows(ctx, n, fpr, mine_views, peers)


def _baseline() -> str | None:
    """The registered non-private protocol every private one is priced against."""
    return next((n for n in sorted(REGISTRY) if not REGISTRY[n].private), None)


def _price_of_privacy(ctx: BenchContext) -> None:
    pdq = ctx.prims.get("hash.pdq.512")
    base = _baseline()
    for (name, n), cell in sorted(ctx.cells.items()):
        if base is None or name == base or ((base, n) not in ctx.cells):
            continue
        plain = ctx.cells[(base, n)]
        pm = {k: Stat.from_dict(v) for k, v in plain["metrics"].items()}
        cm = {k: Stat.from_dict(v) for k, v in cell["metrics"].items()}
        ratios: dict[str, float | None] = {}
        for k in ("client_cpu_s", "server_cpu_s", "bytes_per_query", "query_wall_s"):
            ratios[k] = cm[k].median / pm[k].median if pm[k].median > 0 else None
        ratios["download_bytes_extra"] = cm["download_bytes"].median
        if pdq is not None:
            ratios["client_per_image_incl_pdq"] = (pdq.median + cm["client_cpu_s"].median) / (
                pdq.median + pm["client_cpu_s"].median
            )
        metrics = {
            f"{k}_ratio": Metric(_one(v, "×"))
            for k, v in ratios.items()
            if v is not None and k != "download_bytes_extra"
        }
        ctx.add(
            make_row(
                "peers",
                "price of privacy (vs plain)",
                f"{name} n={n}",
                metrics,
                {
                    "n": n,
                    "protocol": name,
                    "download_bytes": ratios["download_bytes_extra"],
                    "pdq_512_s": pdq.median if pdq else None,
                    "cell_status": cell["status"],
                },
                status="extrapolated" if cell["status"] == "extrapolated" else "ok",
                reason="ratios of medians: protocol ÷ plain (numpy Hamming index, no privacy); "
                "per-image ratio adds one PDQ hash at 512² to both sides",
            )
        )


def _naive_rows(ctx: BenchContext) -> None:
    algo = get_algo("pdq")
    sizes = [1_000] if ctx.quick else sorted({10_000, 100_000} | {s for s in ctx.sizes if s >= 10_000})
    for n in sizes:
        words = synthetic_words(ctx.seed, n, algo)
        hs = HashSet(algo, words)
        rows = [int.from_bytes(b, "big") for b in (hs.value(i).raw for i in range(n))]
        q = hs.value(n // 3)
        qi = int.from_bytes(q.raw, "big")
        idx = HammingIndex(hs)
        if naive_nearest(rows, qi) != idx.nearest(q):
            raise RuntimeError("naive scan and HammingIndex disagree")
        naive = measure(
            partial(naive_nearest, rows, qi),
            repeats=min(ctx.repeats, 3),
            min_time=0.0,
            budget_s=20,
        )
        fast = (
            hamming_index_qps(ctx, n)
            if n in (10_000, 100_000, 1_000_000)
            else measure(partial(idx.nearest, q), repeats=ctx.repeats, min_time=0.02)
        )
        ctx.add(
            make_row(
                "peers",
                "Hamming scan: naive Python vs numpy index",
                f"n={n}",
                {
                    "naive_s": Metric(naive),
                    "numpy_s": Metric(fast),
                    "speedup": Metric(_one(naive.median / fast.median, "×")),
                },
                {"n": n},
            )
        )


# the issue compares with openmined-psi up to 10^6; only this comparison goes beyond ctx.sizes
PSI_EXTRA_SIZES = (1_000_000,)


def run_peers(ctx: BenchContext) -> None:
    sizes = (
        [min(ctx.sizes)] if ctx.quick else sorted({s for s in ctx.sizes if s >= 10_000} or {max(ctx.sizes)})
    )
    psi_sizes = sizes if ctx.quick else sorted(set(sizes) | set(PSI_EXTRA_SIZES))
    for n in psi_sizes:
        try:
            ctx.log(f"peers: openmined-psi vs oprf, n={n}")
            _psi_rows(ctx, n)
        except Exception as e:
            ctx.record_error("peers", f"psi n={n}", e)
            ctx.add(
                make_row("peers", "oprf vs openmined-psi", f"n={n}", status="failed", reason=repr(e)[:500])
            )
    try:
        ctx.log("peers: price of privacy")
        for name in ctx.protocol_names():
            if (ctx.quick and name in QUICK_SKIP and not ctx.quick_all) or name in OWN_SUITE:
                continue
            try:
                ensure_cells(ctx, name, [s for s in sorted(ctx.sizes) if s <= max(sizes)])
            except Exception as e:  # that protocol's failure is reported by its own cell
                ctx.record_error("peers", f"price of privacy: {name}", e)
        _price_of_privacy(ctx)
    except Exception as e:
        ctx.record_error("peers", "price of privacy", e)
    ctx.log("peers: naive vs numpy Hamming scan")
    try:
        _naive_rows(ctx)
    except Exception as e:
        ctx.record_error("peers", "naive scan", e)
