"""Numbers for decisions: latency, capacity, population effects, the headline and worked examples.

Everything here is computed from this run's measurements plus the stated
assumptions of ``netmodel``, ``capacity`` and ``population``; nothing is
measured here. Figures beyond the measured set sizes are marked extrapolated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from blindmatch.client import get_algo
from blindmatch.protocol import REGISTRY

from ..cost.capacity import LinearCost, cores_needed, fit_linear, fit_proportional, qps_per_core
from ..cost.netmodel import LatencyInputs, NetworkProfile, simulate
from ..decide.variants import Variant
from ..stats import BetaBinomialFit
from .population import account_flag_probability, exact_probe_pair_rate, fmr_for_set

__all__ = ["derive"]


def _ok(cells: list[dict[str, Any]], label: str, transport: str) -> list[dict[str, Any]]:
    return sorted(
        (
            c
            for c in cells
            if c["variant"] == label and c["transport"] == transport and c.get("status") == "ok"
        ),
        key=lambda c: c["set_size"],
    )


def _se(cell: dict[str, Any]) -> float:
    """Standard error of a cell's mean server CPU, from its per-query samples."""
    x = np.asarray(cell.get("samples", {}).get("server_ms") or [], dtype=np.float64)
    if x.size < 2 or not np.isfinite(x).all() or x.mean() <= 0:
        return float("nan")
    return float(x.std(ddof=1) / math.sqrt(x.size) * cell["server_cpu_ms"] / x.mean())


def server_model(
    cells: list[dict[str, Any]], label: str, cost_model: str = "affine", max_factor: float = 100.0
) -> dict[str, Any]:
    """Server CPU per query vs set size: protocol handler (fitted) + HTTP overhead (measured)."""
    loc, http = _ok(cells, label, "local"), _ok(cells, label, "http")
    if loc and cost_model == "proportional":
        fit = fit_proportional([c["set_size"] for c in loc], [c["server_cpu_ms"] for c in loc])
    elif loc:
        fit = fit_linear(
            [c["set_size"] for c in loc], [c["server_cpu_ms"] for c in loc], [_se(c) for c in loc]
        )
    if loc:
        over = [h["server_cpu_ms"] - fit.at(h["set_size"]) for h in http]
        overhead = max(0.0, float(np.mean(over))) if over else float("nan")
        source = "in-process handler fit" + (
            " + measured HTTP overhead" if over else " (no HTTP measurement)"
        )
    elif http:
        fit = fit_linear([c["set_size"] for c in http], [c["server_cpu_ms"] for c in http])
        overhead, source = 0.0, "server process CPU over HTTP"
    else:
        fit, overhead, source = (
            LinearCost(float("nan"), float("nan"), ()),
            float("nan"),
            "not measured",
        )
    return {
        "fit": fit,
        "http_overhead_ms": overhead,
        "source": f"{source}; {fit.growth}",
        "max_factor": max_factor,
    }


def _server_ms(model: dict[str, Any], n: float) -> float:
    """Server CPU at set size ``n``, or NaN where the measurements do not support an estimate."""
    if not model["fit"].estimable(n, model["max_factor"]):
        return float("nan")
    over = model["http_overhead_ms"]
    return float(model["fit"].at(n)) + (over if math.isfinite(over) else 0.0)


def _headline_cpu(model: dict[str, Any], cells: list[dict[str, Any]], label: str, ref: int) -> dict[str, Any]:
    """Server CPU at the reference size, or the nearest measured size when it cannot be estimated."""
    ms = _server_ms(model, ref)
    if math.isfinite(ms):
        return {"server_cpu_ms": ms, "server_cpu_at": ref}
    near = _nearest_cell(_ok(cells, label, "http"), ref) or _nearest_cell(_ok(cells, label, "local"), ref)
    if near is None:
        return {"server_cpu_ms": None, "server_cpu_at": None}
    return {"server_cpu_ms": near["server_cpu_ms"], "server_cpu_at": near["set_size"]}


def _nearest_cell(cells: list[dict[str, Any]], size: int) -> dict[str, Any] | None:
    if not cells:
        return None
    return min(cells, key=lambda c: (abs(math.log(c["set_size"]) - math.log(size)), c["set_size"]))


def _download(proto: str, label: str, cells: list[dict[str, Any]], n: int) -> tuple[float, str]:
    for c in _ok(cells, label, "http") + _ok(cells, label, "local"):
        if c["set_size"] == n:
            return float(c["one_time_download_bytes"]), "measured"
    p = REGISTRY.get(proto)
    if p is None:
        return float("nan"), "unknown"
    return float(p.download_bytes(int(n), get_algo("pdq"))), "predicted by the protocol"


def _fmr_cell(acc: dict[str, Any], label: str, algo: str, size: int) -> dict[str, Any] | None:
    for c in acc["fmr"]:
        if c["variant"] == label and c["algo"] == algo and c["set_size"] == size:
            return dict(c)
    return None


def _fnmr_cell(acc: dict[str, Any], label: str, algo: str, pert: str) -> dict[str, Any] | None:
    for c in acc["fnmr"]:
        if c["variant"] == label and c["algo"] == algo and c["perturbation"] == pert:
            return dict(c)
    return None


def derive(
    cfg: dict[str, Any],
    variants: dict[str, list[Variant]],
    corpus: dict[str, Any],
    acc: dict[str, Any],
    verification: list[dict[str, Any]],
    cost: dict[str, Any],
    evasion: list[dict[str, Any]],
    seed: int,
) -> dict[str, Any]:
    calgo = str(cfg["cost"]["algo"])
    cells = cost["cells"]
    profiles = [NetworkProfile.from_config(k, v) for k, v in cfg["network"]["profiles"].items()]
    ref = int(cfg["network"]["reference_set_size"])
    cap, pop = cfg["capacity"], cfg["population"]
    fit_d = corpus.get(calgo, {}).get("beta_binomial")
    fit = BetaBinomialFit(**fit_d) if fit_d else None
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A7]))
    hash_samples = np.asarray(cost["hash_12mp"].get(calgo, {}).get("samples", [0.0]), dtype=np.float64)

    latency, capacity, population, headline, worked, accounts = [], [], [], [], [], []
    for proto, vs in variants.items():
        p = REGISTRY.get(proto)
        for v in vs:
            model = server_model(cells, v.label, v.cost_model, float(cap["max_extrapolation"]))
            loc = _nearest_cell(_ok(cells, v.label, "local"), ref) or _nearest_cell(
                _ok(cells, v.label, "http"), ref
            )
            # latency
            lat_rows = {}
            if loc is not None:
                srv = np.asarray(loc["samples"]["server_ms"] or [loc["server_cpu_ms"]], dtype=np.float64)
                over = model["http_overhead_ms"]
                inp = LatencyInputs(
                    hash_samples,
                    np.asarray(loc["samples"]["crypto_ms"], dtype=np.float64),
                    srv + (over if math.isfinite(over) else 0.0),
                    loc["requests"],
                    loc["bytes_up"],
                    loc["bytes_down"],
                    _download(proto, v.label, cells, loc["set_size"])[0],
                )
                for prof in profiles:
                    r = simulate(prof, inp, int(cfg["network"]["samples"]), rng)
                    lat_rows[prof.name] = r
                    latency.append(
                        {
                            "protocol": proto,
                            "variant": v.label,
                            "profile": prof.name,
                            "set_size": loc["set_size"],
                            **r,
                        }
                    )
            # capacity
            for n in sorted({int(s) for s in cfg["database"]["sizes"]} | {int(s) for s in pop["set_sizes"]}):
                ms = _server_ms(model, n)
                capacity.append(
                    {
                        "protocol": proto,
                        "variant": v.label,
                        "set_size": n,
                        "server_cpu_ms": ms,
                        "qps_per_core": qps_per_core(ms) if math.isfinite(ms) else None,
                        "extrapolated": model["fit"].extrapolated(n),
                        "source": model["source"],
                        "cores": {
                            f"{vol:.0e}": cores_needed(
                                vol, ms, cap["peak_to_mean"], cap["target_utilisation"]
                            )
                            for vol in cap["daily_volumes"]
                        },
                    }
                )
            # population
            spec = v.decision(get_algo(calgo))
            if fit is not None:
                p_pair = (
                    fit.cdf(spec.radius)
                    if spec.kind == "fuzzy"
                    else exact_probe_pair_rate(fit, spec.probe_bits)
                )
            else:
                p_pair = float("nan")
            if math.isfinite(p_pair) and v.scans_per_image > 1:  # dihedral: 8 hashes, 8× the pairs
                p_pair = fmr_for_set(p_pair, v.scans_per_image)
            lookups = (2**spec.probe_bits if spec.kind == "exact" else 1) * v.scans_per_image
            filter_fp = min(1.0, lookups * v.lookup_fpr)

            def model_fmr(n: float, p_pair: float = p_pair, filter_fp: float = filter_fp) -> float:
                """Hash collisions with set entries, plus the filter's own false positives."""
                if not math.isfinite(p_pair):
                    return float("nan")
                a = fmr_for_set(p_pair, n)
                return a + filter_fp - a * filter_fp  # 1 - (1-a)(1-b) without cancellation

            for n in [int(s) for s in pop["set_sizes"]]:
                fmr_m = model_fmr(n)
                meas = _fmr_cell(acc, v.label, calgo, n)
                up = meas["wilson"][1] if meas else None
                population.append(
                    {
                        "protocol": proto,
                        "variant": v.label,
                        "algo": calgo,
                        "set_size": n,
                        "pair_rate_model": p_pair,
                        "filter_false_positive": filter_fp,
                        "fmr_model": fmr_m,
                        "fmr_measured": meas,
                        "fmr_measured_upper95": up,
                    }
                )
                for vol in pop["daily_volumes"]:
                    ms = _server_ms(model, n)
                    bpq = (loc["bytes_up"] + loc["bytes_down"]) if loc else float("nan")
                    dl, dl_src = _download(proto, v.label, cells, n)
                    row = {
                        "protocol": proto,
                        "variant": v.label,
                        "daily_images": vol,
                        "set_size": n,
                        "server_cpu_ms": ms,
                        "extrapolated": model["fit"].extrapolated(n),
                        "cores": cores_needed(vol, ms, cap["peak_to_mean"], cap["target_utilisation"]),
                        "traffic_gb_per_day": vol * bpq / 1e9 if math.isfinite(bpq) else None,
                        "one_time_download_bytes": dl,
                        "download_source": dl_src,
                        "innocent_flagged_per_day_model": vol * fmr_m,
                        "innocent_flagged_per_day_upper95": vol * up if up is not None else None,
                    }
                    if v.threshold > 0 and v.learner == "server":
                        n_img = int(
                            sorted(pop["images_per_account_year"])[len(pop["images_per_account_year"]) // 2]
                        )
                        t = int(max(pop["tpsi_thresholds"]))
                        fp = account_flag_probability(n_img, fmr_m, t)
                        row["accounts_flagged_per_year_model"] = pop["accounts"] * fp.binomial
                        row["accounts_flagged_per_year_model_log10"] = (
                            None
                            if fp.log10_binomial is None
                            else math.log10(pop["accounts"]) + fp.log10_binomial
                        )
                        ref_rate = float(pop["reference_rates"][0]) if pop["reference_rates"] else None
                        if ref_rate is not None:
                            fr = account_flag_probability(n_img, ref_rate, t)
                            row["reference_rate"] = ref_rate
                            row["accounts_flagged_per_year_reference"] = pop["accounts"] * fr.binomial
                            row["accounts_flagged_per_year_reference_log10"] = (
                                None
                                if fr.log10_binomial is None
                                else math.log10(pop["accounts"]) + fr.log10_binomial
                            )
                        row["account_assumption"] = f"{n_img} images per account per year, t = {t}"
                    worked.append(row)
            if v.threshold > 0 and v.learner == "server":
                rates = [(f"model, N={int(n):.0e}", model_fmr(n)) for n in pop["set_sizes"]] + [
                    (f"reference {r:g}", float(r)) for r in pop["reference_rates"]
                ]
                for meas in [_fmr_cell(acc, v.label, calgo, int(n)) for n in cfg["database"]["sizes"][-1:]]:
                    if meas:
                        rates.append((f"measured upper 95%, N={meas['set_size']:.0e}", meas["wilson"][1]))
                for name, rate_ in rates:
                    for n_img in pop["images_per_account_year"]:
                        for t in pop["tpsi_thresholds"]:
                            fp = account_flag_probability(int(n_img), rate_, int(t))
                            accounts.append(
                                {
                                    "protocol": proto,
                                    "variant": v.label,
                                    "per_image_rate_source": name,
                                    "per_image_rate": rate_,
                                    "images_per_year": int(n_img),
                                    "threshold": int(t),
                                    **fp.to_dict(),
                                    "accounts_flagged_per_year": pop["accounts"] * fp.binomial,
                                }
                            )
            # headline
            ver = [r for r in verification if r["variant"] == v.label]
            big = max(int(s) for s in cfg["database"]["sizes"])
            hl_n = max(int(s) for s in pop["set_sizes"])
            ev = [e for e in evasion if e["algo"] == calgo]
            headline.append(
                {
                    "protocol": proto,
                    "variant": v.label,
                    "private": bool(p.private) if p else None,
                    "learner": v.learner,
                    "matching": v.matching,
                    "server_sees_hash": bool(p.leakage.server_sees_hash) if p else None,
                    "client_sees_set": bool(p.leakage.client_sees_set) if p else None,
                    # he server-learns hides the hash from a semi-honest server only (opt-in)
                    "server_trust": (
                        "semi-honest" if v.client_options.get("allow_server_learns") else "malicious"
                    ),
                    "fnmr_jpeg70": _fnmr_cell(acc, v.label, calgo, "jpeg-70"),
                    "fnmr_everyday": _fnmr_cell(acc, v.label, calgo, "everyday edits"),
                    "fnmr_all": _fnmr_cell(acc, v.label, calgo, "all edits"),
                    "fmr_measured": _fmr_cell(acc, v.label, calgo, big),
                    "fmr_model_at": hl_n,
                    "fmr_model": model_fmr(hl_n) if math.isfinite(p_pair) else None,
                    "latency": {
                        k: {"p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"], "p99_ms": r["p99_ms"]}
                        for k, r in lat_rows.items()
                    },
                    "bytes_per_image": (loc["bytes_up"] + loc["bytes_down"]) if loc else None,
                    "one_time_download_bytes": _download(proto, v.label, cells, ref)[0],
                    "reference_set_size": ref,
                    **_headline_cpu(model, cells, v.label, ref),
                    "cores_at": {
                        "daily_images": max(cap["daily_volumes"]),
                        "set_size": hl_n,
                        "cores": cores_needed(
                            max(cap["daily_volumes"]),
                            _server_ms(model, hl_n),
                            cap["peak_to_mean"],
                            cap["target_utilisation"],
                        ),
                        "extrapolated": model["fit"].extrapolated(hl_n),
                    },
                    "verified": all(r["verified"] for r in ver) if ver else False,
                    "verified_algos": sorted(r["algo"] for r in ver if r["verified"]),
                    "verdict_source": sorted({r["verdict_source"] for r in ver}),
                    "evasion_success": (sum(e["success"] for e in ev) / len(ev)) if ev else None,
                }
            )
    return {
        "latency": latency,
        "capacity": capacity,
        "population": population,
        "accounts": accounts,
        "headline": headline,
        "worked_examples": worked,
        "profiles": [p.to_dict() for p in profiles],
    }
