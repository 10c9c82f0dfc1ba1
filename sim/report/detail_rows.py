"""Rows of the report's detail sections (corpus, accuracy, verification, cost, latency, capacity,
population, evasion, this run), as display strings. The prose around them is in the templates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .fmt import fmt_bytes, fmt_cores, fmt_count, fmt_estimate, fmt_ms, fmt_rate, fmt_sci

__all__ = ["DETAIL_BUILDERS"]

Rows = list[dict[str, str]]



def _fmt(x: Any, spec: str, unit: str = "") -> str:
    """``x`` formatted, or "n/a" where the corpus gave nothing to measure."""
    return "n/a" if x is None else f"{x:{spec}}{unit}"

def _corpus(res: dict[str, Any]) -> Rows:
    return [
        {
            "hash": d["algo"],
            "pairs": f"{d['pairs']:,}",
            "mean": _fmt(d["mean"], ".1f"),
            "binomial mean": f"{d['binomial_mean']:.0f}",
            "sd": f"{d['sd']:.2f}" if d["sd"] is not None else "n/a",
            "binomial sd": f"{d['binomial_sd']:.2f}",
            "over-dispersion ρ": _fmt((d["beta_binomial"] or {}).get("rho"), ".4f"),
            "total variation vs binomial (2-bit bins)": _fmt(d["total_variation_vs_binomial"], ".3f"),
            "even distances": _fmt(d["even_fraction"] and 100 * d["even_fraction"], ".0f", "%"),
            "closest pair": str(d["min_distance"]),
            "pairs within threshold": f"{d['pairs_within_threshold']} of {d['pairs']:,}",
        }
        for d in res["corpus"]["distances"].values()
    ]


def _pooled(res: dict[str, Any]) -> Rows:
    return [
        {
            "variant": x["variant"],
            "hash": x["algo"],
            "edits": x["perturbation"],
            "missed": f"{x['k']}/{x['n']}",
            "FNMR (95% Wilson)": fmt_rate(x),
            "quality-gated": str(x["gated"]),
        }
        for x in res["accuracy"]["fnmr"]
        if x["family"] == "pooled"
    ]


def _fmr(res: dict[str, Any]) -> Rows:
    return [
        {
            "variant": x["variant"],
            "hash": x["algo"],
            "set size": f"{x['set_size']:,}",
            "false matches": f"{x['k']}/{x['n']}",
            "FMR (95% Wilson)": fmt_rate(x),
        }
        for x in res["accuracy"]["fmr"]
    ]


def _verification(res: dict[str, Any]) -> Rows:
    rows = []
    for r in res["verification"]:
        for t in ("local", "http"):
            x = r[t]
            if x is None:
                continue
            rows.append(
                {
                    "variant": r["variant"],
                    "hash": r["algo"],
                    "transport": "in process" if t == "local" else "HTTP (uvicorn)",
                    "decision function": r["decision"],
                    "sampled": str(x["n"]),
                    "agree": str(x["agree"]),
                    "disagree": str(x["disagree"]),
                    "no verdict": str(x["unavailable"]),
                    "verdict read from": x["source"],
                    "note": x["note"][:200],
                    "verified": "yes" if r["verified"] else "NO",
                }
            )
    return rows


def _cost(res: dict[str, Any]) -> Rows:
    rows = []
    for x in res["cost"]["cells"]:
        row = {
            "variant": x["variant"],
            "transport": x["transport"],
            "set size": f"{x['set_size']:,}",
            "status": "ok" if x.get("status") == "ok" else x["status"],
        }
        if x.get("status") == "ok":
            row |= {
                "queries": str(x["queries"]),
                "client crypto / image": fmt_ms(x["crypto_ms"]["mean"]),
                "client CPU / image": fmt_ms(x["client_cpu_ms"]["mean"]),
                "server CPU / image": fmt_ms(x["server_cpu_ms"]),
                "round trips": f"{x['requests']:.1f}",
                "bytes up": fmt_bytes(x["bytes_up"]),
                "bytes down": fmt_bytes(x["bytes_down"]),
                "one-time download": fmt_bytes(x["one_time_download_bytes"]),
                "predicted download": fmt_bytes(x["predicted_download_bytes"]),
                "server set-up": f"{x['setup_s']:.2f} s",
                "wall / image": fmt_ms(x["wall_ms"]["mean"]),
            }
        rows.append(row)
    return rows


def _hashing(res: dict[str, Any]) -> Rows:
    h12, hc = res["cost"]["hash_12mp"], res["cost"]["hash_corpus_ms"]
    return [
        {
            "hash": a,
            "12 MP JPEG file (decode + hash)": fmt_ms(h12.get(a, {}).get("mean")),
            "corpus image (≤ 640 px, decoded)": fmt_ms(hc[a]["p50"]),
        }
        for a in hc
    ]


def _latency(res: dict[str, Any]) -> Rows:
    return [
        {
            "variant": x["variant"],
            "network": x["profile"],
            "set size": f"{x['set_size']:,}",
            "p50": fmt_ms(x["p50_ms"]),
            "p95": fmt_ms(x["p95_ms"]),
            "p99": fmt_ms(x["p99_ms"]),
            "cold first image (p50)": fmt_ms(x["cold_p50_ms"]),
            "round trips": str(x["round_trips"]),
            "transfer": fmt_ms(x["transfer_ms"]),
        }
        for x in res["latency"]
    ]


def _profiles(res: dict[str, Any]) -> Rows:
    return [
        {
            "profile": p["name"],
            "RTT": f"{p['rtt_ms']:.0f} ms",
            "down": f"{p['down_mbps']} Mbit/s",
            "up": f"{p['up_mbps']} Mbit/s",
            "mean jitter": f"{p['jitter_ms']:.0f} ms",
            "source": p["source"],
        }
        for p in res["network_profiles"]
    ]


def _capacity(res: dict[str, Any]) -> Rows:
    return [
        {
            "variant": x["variant"],
            "set size": f"{x['set_size']:,}",
            "server CPU / image": fmt_estimate(x["server_cpu_ms"], x["basis"], x["note"]),
            "images/s per core": fmt_sci(x["qps_per_core"]) if x["qps_per_core"] else "not estimated",
            **{
                f"cores for {k}/day": fmt_cores(v, x["basis"], "").split(" (")[0]
                for k, v in x["cores"].items()
            },
            "basis": f"{x['basis']}: {x['source']}",
        }
        for x in res["capacity"]
    ]


def _population(res: dict[str, Any]) -> Rows:
    return [
        {
            "variant": x["variant"],
            "set size": f"{x['set_size']:,.0f}",
            "per-pair rate, 95% upper": f"{fmt_sci(x['pair_rate_upper95'])} ({x['bound_label']})",
            "per-image FMR, upper bound": fmt_sci(x["fmr_upper95"]),
            "filter false positives": fmt_sci(x.get("filter_false_positive")),
            "per-image FMR, tail model": fmt_sci(x["fmr_model"])
            if x["fmr_model"] is not None
            else f"model {x['model_status']}",
            "measured FMR (uniform filler)": fmt_rate(x["fmr_measured"])
            if x["fmr_measured"]
            else "not simulated at this size",
        }
        for x in res["population"]
    ]


def _flag(p: Any, lg: Any) -> str:
    if p:
        return fmt_sci(p)
    return f"10^{lg:.0f}" if lg is not None else "0"


def _accounts(res: dict[str, Any]) -> Rows:
    return [
        {
            "variant": x["variant"],
            "per-image rate": f"{fmt_sci(x['per_image_rate'])} ({x['per_image_rate_source']})",
            "images / account / year": f"{x['images_per_year']:,}",
            "threshold t": str(x["threshold"]),
            "P(flag) binomial": _flag(x["binomial"], x["log10_binomial"]),
            "P(flag) Poisson": _flag(x["poisson"], x["log10_poisson"]),
            "accounts flagged / year": fmt_count(x["accounts_flagged_per_year"]),
        }
        for x in res["accounts"]
    ]


def _median(xs: list[Any]) -> Any:
    return sorted(xs)[len(xs) // 2] if xs else None


def _evasion(res: dict[str, Any]) -> Rows:
    att = res["evasion"]["attempts"]
    rows = []
    for a in dict.fromkeys(x["algo"] for x in att):
        ok = [x for x in att if x["algo"] == a and x["success"]]
        ps = sorted(x["psnr_db"] for x in ok if x["psnr_db"] is not None)
        ss = [x["ssim"] for x in ok if x.get("ssim") is not None]
        rows.append(
            {
                "hash": a,
                "evaded": f"{len(ok)}/{sum(1 for x in att if x['algo'] == a)}",
                "median queries": str(_median([x["queries"] for x in ok])) if ok else "none succeeded",
                "median PSNR at success": f"{_median(ps):.1f} dB" if ps else "none succeeded",
                "worst PSNR at success": f"{ps[0]:.1f} dB" if ps else "none succeeded",
                "median SSIM at success": f"{_median(ss):.3f}" if ss else "none succeeded",
            }
        )
    return rows


def _stages(res: dict[str, Any]) -> Rows:
    return [
        {"stage": k, "seconds": str(v["seconds"]), "cached units": f"{v['cached_units']}/{v['units']}"}
        for k, v in res.get("stages", {}).items()
    ]


def _protocols(res: dict[str, Any]) -> Rows:
    return [
        {
            "protocol": p["name"],
            "who learns the verdict": p["learner"],
            "matching": p["matching"],
            "private": "yes" if p["private"] else "no",
            "server learns": "; ".join(p["leakage"]["server"]),
            "client learns": "; ".join(p["leakage"]["client"]),
        }
        for p in res["protocols"]
    ]


DETAIL_BUILDERS: dict[str, Callable[[dict[str, Any]], Rows]] = {
    "corpus": _corpus,
    "pooled": _pooled,
    "fmr": _fmr,
    "verification": _verification,
    "cost": _cost,
    "hashing": _hashing,
    "latency": _latency,
    "profiles": _profiles,
    "capacity": _capacity,
    "population": _population,
    "accounts": _accounts,
    "evasion": _evasion,
    "stages": _stages,
    "protocols": _protocols,
}
