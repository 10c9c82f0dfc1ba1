"""Numbers for decisions: false-match bounds, latency, capacity, population, headline, frontier.

Everything here is computed from this run's measurements plus the stated
assumptions of ``netmodel``, ``capacity`` and ``population``; nothing is
measured here. Population figures are built on the measured per-pair
false-match bound (``falsematch``); a tail model appears beside them only where
it passed its calibration check. Cost figures carry their basis (``costs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from blindmatch.client import get_algo
from blindmatch.protocol import REGISTRY

from ..cost.capacity import qps_per_core
from ..cost.netmodel import LatencyInputs, NetworkProfile, simulate
from ..decide.variants import Variant
from .costs import cores_cell, cpu_estimate, download, nearest_cell, ok_cells, server_model
from .falsematch import false_match_row
from .frontier import FRONTIER_SET_SIZE, frontier_rows
from .population import account_flag_probability, fmr_for_set

__all__ = ["DERIVED_KEYS", "derive", "false_match_table", "report_algo"]

PAIR_TARGETS = (1e-6, 1e-9, 1e-12)
# The tables ``derive`` adds to results.json under their own names (besides ``profiles``).
DERIVED_KEYS = (
    "latency",
    "capacity",
    "population",
    "accounts",
    "headline",
    "worked_examples",
    "false_matches",
    "frontier",
)


@dataclass
class _Ctx:
    """What every per-variant step reads."""

    cfg: dict[str, Any]
    acc: dict[str, Any]
    cells: list[dict[str, Any]]
    calgo: str
    ref: int
    fm: dict[tuple[str, str, int], dict[str, Any]]  # (algo, kind, param) -> false-match row
    hash_samples: list[float]  # ms to hash a 12 MP JPEG, for the latency model


def report_algo(cost_algo: str, ran: list[str]) -> str:
    """The hash a protocol's cost, headline and frontier are given on: the run's cost hash,
    or, for a protocol configured without it, the first hash it ran (its rows say which)."""
    return cost_algo if cost_algo in ran or not ran else ran[0]


def _hash_samples(cost: dict[str, Any], algo: str) -> list[float]:
    """ms to hash a 12 MP JPEG with ``algo`` ([0.0] where it was not measured)."""
    samples: list[float] = cost["hash_12mp"].get(algo, {}).get("samples") or [0.0]
    return samples


def _rule(v: Variant, algo: str) -> tuple[str, int]:
    spec = v.decision(get_algo(algo))
    return (spec.kind, int(spec.radius if spec.kind == "fuzzy" else spec.probe_bits))


def false_match_table(
    corpus: dict[str, Any], variants: dict[str, list[Variant]], proto_algos: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Measured per-pair rate, calibration and pairs needed, per hash and matching rule in use."""
    keys: dict[tuple[str, str, int], list[str]] = {}
    for proto, vs in variants.items():
        for a in proto_algos.get(proto, []):
            if a not in corpus:
                continue
            for v in vs:
                keys.setdefault((a, *_rule(v, a)), []).append(v.label)
    rows = []
    for (a, kind, param), labels in sorted(keys.items()):
        rows.append({**false_match_row(corpus[a], kind, param, PAIR_TARGETS), "variants": labels})
    return rows


def _reference_size(cfg: dict[str, Any]) -> int:
    """The configured reference size, moved to the nearest measured cost size if it was not measured."""
    ref = int(cfg["network"]["reference_set_size"])
    sizes = sorted({int(s) for s in cfg["cost"]["sizes"]} | {int(s) for s in cfg["cost"]["http_sizes"]})
    if not sizes or ref in sizes:
        return ref
    return min(sizes, key=lambda s: (abs(math.log(s) - math.log(ref)), s))


def _combine(a: float, b: float) -> float:
    """1 − (1 − a)(1 − b) without cancellation."""
    return a + b - a * b


def _latency(
    ctx: _Ctx, v: Variant, model: dict[str, Any], profiles: list[NetworkProfile], rng: np.random.Generator
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    loc = nearest_cell(ok_cells(ctx.cells, v.label, "local"), ctx.ref) or nearest_cell(
        ok_cells(ctx.cells, v.label, "http"), ctx.ref
    )
    if loc is None:
        return [], None
    hash_samples = np.asarray(ctx.hash_samples, dtype=np.float64)
    srv = np.asarray(loc["samples"]["server_ms"] or [loc["server_cpu_ms"]], dtype=np.float64)
    over = model["http_overhead_ms"]
    inp = LatencyInputs(
        hash_samples,
        np.asarray(loc["samples"]["crypto_ms"], dtype=np.float64),
        srv + (over if math.isfinite(over) else 0.0),
        loc["requests"],
        loc["bytes_up"],
        loc["bytes_down"],
        download(v.protocol, v.label, ctx.cells, loc["set_size"])[0],
    )
    rows = []
    for prof in profiles:
        r = simulate(prof, inp, int(ctx.cfg["network"]["samples"]), rng)
        rows.append(
            {
                "protocol": v.protocol,
                "variant": v.label,
                "profile": prof.name,
                "set_size": loc["set_size"],
                **r,
            }
        )
    return rows, loc


def _capacity(ctx: _Ctx, v: Variant, model: dict[str, Any]) -> list[dict[str, Any]]:
    cap, pop = ctx.cfg["capacity"], ctx.cfg["population"]
    rows = []
    for n in sorted({int(s) for s in ctx.cfg["database"]["sizes"]} | {int(s) for s in pop["set_sizes"]}):
        est = cpu_estimate(model, n)
        rows.append(
            {
                "protocol": v.protocol,
                "variant": v.label,
                "set_size": n,
                "server_cpu_ms": est["ms"],
                "basis": est["basis"],
                "note": est["note"],
                "qps_per_core": qps_per_core(est["ms"]) if est["ms"] else None,
                "extrapolated": est["basis"] in ("extrapolated", "lower bound"),
                "source": model["source"],
                "cores": {f"{vol:.0e}": cores_cell(est, vol, cap)["cores"] for vol in cap["daily_volumes"]},
            }
        )
    return rows


def _rates(ctx: _Ctx, v: Variant) -> dict[str, Any]:
    """Per-pair bound and model for the cost hash, plus the filter's own false positives."""
    row = ctx.fm.get((ctx.calgo, *_rule(v, ctx.calgo)))
    spec = v.decision(get_algo(ctx.calgo))
    scans = v.scans_per_image  # a dihedral variant compares 8 hashes per image: 8x the pairs
    lookups = (2**spec.probe_bits if spec.kind == "exact" else 1) * scans

    def per_image_pairs(p: float | None) -> float | None:
        return None if p is None else fmr_for_set(p, scans)

    return {
        "row": row,
        "upper": per_image_pairs(row["upper95"]) if row else None,
        "model": per_image_pairs(row["model_pair_rate"]) if row else None,
        "model_status": row["calibration"]["status"] if row else "not checked",
        "pairs": row["pairs"] if row else 0,
        "filter_fp": min(1.0, lookups * v.lookup_fpr),
    }


def _per_image(pair_rate: float | None, n: float, filter_fp: float) -> float | None:
    return None if pair_rate is None else _combine(fmr_for_set(pair_rate, n), filter_fp)


def _population(ctx: _Ctx, v: Variant, r: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for n in [int(s) for s in ctx.cfg["population"]["set_sizes"]]:
        meas = next(
            (
                dict(c)
                for c in ctx.acc["fmr"]
                if c["variant"] == v.label and c["algo"] == ctx.calgo and c["set_size"] == n
            ),
            None,
        )
        rows.append(
            {
                "protocol": v.protocol,
                "variant": v.label,
                "algo": ctx.calgo,
                "set_size": n,
                "pair_rate_upper95": r["upper"],
                "pairs": r["pairs"],
                "bound_label": f"upper bound from {r['pairs']:,} pairs",
                "fmr_upper95": _per_image(r["upper"], n, r["filter_fp"]),
                "pair_rate_model": r["model"],
                "model_status": r["model_status"],
                "filter_false_positive": r["filter_fp"],
                "fmr_model": _per_image(r["model"], n, r["filter_fp"]),
                "fmr_measured": meas,
                "fmr_measured_upper95": meas["wilson"][1] if meas else None,
            }
        )
    return rows


def _account_fields(pop: dict[str, Any], rate_: float | None, prefix: str) -> dict[str, Any]:
    if rate_ is None:
        return {}
    n_img = int(sorted(pop["images_per_account_year"])[len(pop["images_per_account_year"]) // 2])
    fp = account_flag_probability(n_img, rate_, int(max(pop["tpsi_thresholds"])))
    lg = None if fp.log10_binomial is None else math.log10(pop["accounts"]) + fp.log10_binomial
    return {
        f"accounts_flagged_per_year_{prefix}": pop["accounts"] * fp.binomial,
        f"accounts_flagged_per_year_{prefix}_log10": lg,
    }


def _worked(
    ctx: _Ctx, v: Variant, model: dict[str, Any], loc: dict[str, Any] | None, r: dict[str, Any]
) -> list[dict[str, Any]]:
    pop, cap = ctx.cfg["population"], ctx.cfg["capacity"]
    bpq = (loc["bytes_up"] + loc["bytes_down"]) if loc else None
    rows = []
    for n in [int(s) for s in pop["set_sizes"]]:
        est = cpu_estimate(model, n)
        up, mod = _per_image(r["upper"], n, r["filter_fp"]), _per_image(r["model"], n, r["filter_fp"])
        dl, dl_src = download(v.protocol, v.label, ctx.cells, n)
        for vol in pop["daily_volumes"]:
            cc = cores_cell(est, vol, cap)
            row = {
                "protocol": v.protocol,
                "variant": v.label,
                "daily_images": vol,
                "set_size": n,
                "server_cpu_ms": est["ms"],
                "extrapolated": est["basis"] in ("extrapolated", "lower bound"),
                "cores": cc["cores"],
                "cores_basis": cc["basis"],
                "cores_note": cc["note"],
                "traffic_gb_per_day": vol * bpq / 1e9 if bpq is not None else None,
                "one_time_download_bytes": dl,
                "download_source": dl_src,
                "bound_label": f"upper bound from {r['pairs']:,} pairs",
                "innocent_flagged_per_day_bound": vol * up if up is not None else None,
                "innocent_flagged_per_day_model": vol * mod if mod is not None else None,
                "model_status": r["model_status"],
            }
            if v.threshold > 0 and v.learner == "server":
                row |= _account_fields(pop, up, "bound") | _account_fields(pop, mod, "model")
                ref_rate = float(pop["reference_rates"][0]) if pop["reference_rates"] else None
                if ref_rate is not None:
                    row["reference_rate"] = ref_rate
                    row |= _account_fields(pop, ref_rate, "reference")
                n_img = sorted(pop["images_per_account_year"])[len(pop["images_per_account_year"]) // 2]
                row["account_assumption"] = (
                    f"{int(n_img)} images per account per year, t = {max(pop['tpsi_thresholds'])}"
                )
            rows.append(row)
    return rows


def _accounts(ctx: _Ctx, v: Variant, r: dict[str, Any]) -> list[dict[str, Any]]:
    if not (v.threshold > 0 and v.learner == "server"):
        return []
    pop = ctx.cfg["population"]
    rates: list[tuple[str, float]] = []
    for n in pop["set_sizes"]:
        up = _per_image(r["upper"], n, r["filter_fp"])
        if up is not None:
            rates.append((f"upper bound from {r['pairs']:,} pairs, N={int(n):.0e}", up))
        mod = _per_image(r["model"], n, r["filter_fp"])
        if mod is not None:
            rates.append((f"calibrated model, N={int(n):.0e}", mod))
    rates += [(f"reference {x:g}", float(x)) for x in pop["reference_rates"]]
    out = []
    for name, rate_ in rates:
        for n_img in pop["images_per_account_year"]:
            for t in pop["tpsi_thresholds"]:
                fp = account_flag_probability(int(n_img), rate_, int(t))
                out.append(
                    {
                        "protocol": v.protocol,
                        "variant": v.label,
                        "per_image_rate_source": name,
                        "per_image_rate": rate_,
                        "images_per_year": int(n_img),
                        "threshold": int(t),
                        **fp.to_dict(),
                        "accounts_flagged_per_year": pop["accounts"] * fp.binomial,
                    }
                )
    return out


def _fnmr(acc: dict[str, Any], label: str, algo: str, pert: str) -> dict[str, Any] | None:
    return next(
        (
            dict(c)
            for c in acc["fnmr"]
            if c["variant"] == label and c["algo"] == algo and c["perturbation"] == pert
        ),
        None,
    )


def _headline(
    ctx: _Ctx,
    v: Variant,
    model: dict[str, Any],
    loc: dict[str, Any] | None,
    lat: list[dict[str, Any]],
    r: dict[str, Any],
    ver: list[dict[str, Any]],
    evasion: list[dict[str, Any]],
) -> dict[str, Any]:
    p = REGISTRY.get(v.protocol)
    cap, pop = ctx.cfg["capacity"], ctx.cfg["population"]
    hl_n = int(max(pop["set_sizes"]))
    big = max(int(s) for s in ctx.cfg["database"]["sizes"])
    at_ref, at_n = cpu_estimate(model, ctx.ref), cpu_estimate(model, hl_n)
    ev = [e for e in evasion if e["algo"] == ctx.calgo]
    return {
        "protocol": v.protocol,
        "variant": v.label,
        "algo": ctx.calgo,
        "private": bool(p.private) if p else None,
        "learner": v.learner,
        "matching": v.matching,
        "server_sees_hash": bool(p.leakage.server_sees_hash) if p else None,
        "client_sees_set": bool(p.leakage.client_sees_set) if p else None,
        # he server-learns hides the hash from a semi-honest server only (opt-in)
        "server_trust": "semi-honest" if v.client_options.get("allow_server_learns") else "malicious",
        "fnmr_jpeg70": _fnmr(ctx.acc, v.label, ctx.calgo, "jpeg-70"),
        "fnmr_everyday": _fnmr(ctx.acc, v.label, ctx.calgo, "everyday edits"),
        "fnmr_all": _fnmr(ctx.acc, v.label, ctx.calgo, "all edits"),
        "fmr_measured": next(
            (
                dict(c)
                for c in ctx.acc["fmr"]
                if c["variant"] == v.label and c["algo"] == ctx.calgo and c["set_size"] == big
            ),
            None,
        ),
        "fmr_pair": r["row"]["measured"] if r["row"] else None,
        "fmr_pair_upper95": r["upper"],
        "fmr_bound_label": f"upper bound from {r['pairs']:,} pairs",
        "fmr_bound": _per_image(r["upper"], hl_n, r["filter_fp"]),
        "fmr_model_at": hl_n,
        "fmr_model": _per_image(r["model"], hl_n, r["filter_fp"]),
        "fmr_model_status": r["model_status"],
        "latency": {x["profile"]: {k: x[k] for k in ("p50_ms", "p95_ms", "p99_ms")} for x in lat},
        "bytes_per_image": (loc["bytes_up"] + loc["bytes_down"]) if loc else None,
        "one_time_download_bytes": download(v.protocol, v.label, ctx.cells, ctx.ref)[0],
        "reference_set_size": ctx.ref,
        "server_cpu_ms": at_ref["ms"],
        "server_cpu_at": ctx.ref,
        "server_cpu_basis": at_ref["basis"],
        "server_cpu_note": at_ref["note"],
        "server_cpu_1e6": cpu_estimate(model, FRONTIER_SET_SIZE),
        "cores_at": {
            "daily_images": max(cap["daily_volumes"]),
            "set_size": hl_n,
            **cores_cell(at_n, max(cap["daily_volumes"]), cap),
            "extrapolated": at_n["basis"] in ("extrapolated", "lower bound"),
        },
        "verified": all(x["verified"] for x in ver) if ver else False,
        "verified_algos": sorted(x["algo"] for x in ver if x["verified"]),
        "verdict_source": sorted({x["verdict_source"] for x in ver}),
        "evasion_success": (sum(e["success"] for e in ev) / len(ev)) if ev else None,
    }


def derive(
    cfg: dict[str, Any],
    variants: dict[str, list[Variant]],
    corpus: dict[str, Any],
    acc: dict[str, Any],
    verification: list[dict[str, Any]],
    cost: dict[str, Any],
    evasion: list[dict[str, Any]],
    seed: int,
    proto_algos: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Every derived table of a run, keyed as ``results.json`` stores them."""
    calgo = str(cfg["cost"]["algo"])
    algos = proto_algos or {name: list(corpus) for name in variants}
    fm_rows = false_match_table(corpus, variants, algos)
    samples = _hash_samples(cost, calgo)
    ctx = _Ctx(
        cfg,
        acc,
        cost["cells"],
        calgo,
        _reference_size(cfg),
        {(r["algo"], r["kind"], r["radius"]): r for r in fm_rows},
        samples,
    )
    profiles = [NetworkProfile.from_config(k, v) for k, v in cfg["network"]["profiles"].items()]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A7]))
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in DERIVED_KEYS[:6]}
    for vs in variants.values():
        for v in vs:
            own = report_algo(calgo, algos.get(v.protocol, [calgo]))
            ctx_v = ctx if own == calgo else replace(ctx, calgo=own, hash_samples=_hash_samples(cost, own))
            model = server_model(
                ctx_v.cells, v.label, v.cost_model, float(cfg["capacity"]["max_extrapolation"])
            )
            lat, loc = _latency(ctx_v, v, model, profiles, rng)
            r = _rates(ctx_v, v)
            out["latency"] += lat
            out["capacity"] += _capacity(ctx_v, v, model)
            out["population"] += _population(ctx_v, v, r)
            out["worked_examples"] += _worked(ctx_v, v, model, loc, r)
            out["accounts"] += _accounts(ctx_v, v, r)
            ver = [x for x in verification if x["variant"] == v.label]
            out["headline"].append(_headline(ctx_v, v, model, loc, lat, r, ver, evasion))
    labels = {v.label: v.to_dict() for vs in variants.values() for v in vs}
    return {
        **out,
        "false_matches": fm_rows,
        "frontier": frontier_rows(out["headline"], acc, labels, calgo),
        "profiles": [p.to_dict() for p in profiles],
    }
