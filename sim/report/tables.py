"""Every table of the report as rows of display strings, built from ``results.json`` alone.

Why separate from the templates: the same rows feed report.html, summary.md,
the CSV files and the terminal, so the numbers are formatted once. Column
headers name the set sizes the run actually used.
"""

from __future__ import annotations

from typing import Any

from .detail_rows import DETAIL_BUILDERS
from .fmt import (
    fmt_big,
    fmt_bytes,
    fmt_cores,
    fmt_count,
    fmt_count_log,
    fmt_estimate,
    fmt_ms,
    fmt_rate,
    fmt_recall,
    fmt_sci,
)

__all__ = [
    "HASH_NAMES",
    "console_rows",
    "detail_tables",
    "false_match_rows",
    "frontier_table",
    "headline_rows",
    "row_label",
    "worked_rows",
]

Rows = list[dict[str, str]]

HASH_NAMES = {"pdq": "PDQ", "phash": "pHash", "dhash": "dHash", "sha256": "SHA-256"}


def row_label(row: dict[str, Any], res: dict[str, Any]) -> str:
    """A headline or frontier row's variant, with its hash when it is not the run's cost hash
    (a protocol configured without that hash is reported on its own)."""
    algo = row.get("algo") or res["cost"]["algo"]
    same = algo == res["cost"]["algo"]
    return row["variant"] if same else f"{row['variant']} ({HASH_NAMES.get(algo, algo)})"

_WHO = {
    "both": "the provider, which tells the client",
    "client": "the client's device",
    "server": "the provider",
    "nobody": "nobody",
    "client-or-server": "client or provider",
}


def _privacy(h: dict[str, Any]) -> str:
    if not h["private"]:
        return "Not private: the server sees every hash"
    who = _WHO.get(h["learner"], h["learner"])
    if h.get("server_trust") == "semi-honest":
        return (
            "Hash hidden from a server that follows the protocol (a cheating one reads bits of it); "
            f"verdict goes to {who}"
        )
    return f"Hash hidden from the server; verdict goes to {who}"


def _model_cell(rate_: Any, status: str) -> str:
    if status == "accepted":
        return f"{fmt_sci(rate_)} (calibrated model)"
    return "model rejected" if status == "rejected" else "model not checked (too few pairs)"


def _pair_cell(h: dict[str, Any]) -> str:
    m = h.get("fmr_pair")
    if not m:
        return "not measured"
    return f"{m['k']:,} of {m['n']:,} pairs; ≤ {fmt_sci(h['fmr_pair_upper95'])} per pair"


def _verified(h: dict[str, Any]) -> str:
    if h["verified"]:
        return "yes (" + ", ".join(h["verified_algos"]) + ")"
    return "partly: " + ", ".join(h["verified_algos"]) if h["verified_algos"] else "NO"


def headline_rows(res: dict[str, Any]) -> Rows:
    """The side-by-side table (HTML, Markdown and CSV)."""
    rows = []
    lat_prof = "4G" if any("4G" in h["latency"] for h in res["headline"]) else None
    for h in res["headline"]:
        prof = lat_prof or next(iter(h["latency"]), None)
        lat = h["latency"].get(prof) if prof else None
        ca, ref, n = h["cores_at"], h["reference_set_size"], h["fmr_model_at"]
        rows.append(
            {
                "Protocol": row_label(h, res),
                "Privacy": _privacy(h),
                "Matching": h["matching"],
                "Misses JPEG-70 copies": fmt_rate(h["fnmr_jpeg70"]),
                "Misses everyday edits": fmt_rate(h["fnmr_everyday"]),
                "Unrelated pairs falsely matched (measured, 95% upper)": _pair_cell(h),
                f"Innocent image falsely matched, N = {fmt_big(n)} ({h['fmr_bound_label']})": fmt_sci(
                    h["fmr_bound"]
                ),
                f"… tail model, N = {fmt_big(n)}": _model_cell(h["fmr_model"], h["fmr_model_status"]),
                f"Latency p50 / p95 ({prof})": f"{fmt_ms(lat['p50_ms'])} / {fmt_ms(lat['p95_ms'])}"
                if lat
                else "not modelled: no cost measurement",
                "Bytes per image": fmt_bytes(h["bytes_per_image"])
                if h["bytes_per_image"] is not None
                else "not measured",
                f"One-time download (N = {ref:,})": fmt_bytes(h["one_time_download_bytes"]),
                f"Server CPU / image (N = {ref:,})": fmt_estimate(
                    h["server_cpu_ms"], h["server_cpu_basis"], h["server_cpu_note"]
                ),
                f"Server cores for {fmt_big(ca['daily_images'])} images/day, N = {fmt_big(ca['set_size'])}": (
                    fmt_cores(ca["cores"], ca["basis"], ca["note"])
                ),
                "Checked against real code": _verified(h),
            }
        )
    return rows


def console_rows(res: dict[str, Any]) -> Rows:
    """A narrow version of the headline for terminals (no intervals, short headers)."""
    rows = []
    for h in res["headline"]:
        lat = h["latency"].get("4G") or next(iter(h["latency"].values()), None)
        ca = h["cores_at"]
        rows.append(
            {
                "protocol": row_label(h, res),
                "private": "yes" if h["private"] else "no",
                "verdict to": h["learner"],
                "miss JPEG70": fmt_rate(h["fnmr_jpeg70"], False),
                "miss everyday": fmt_rate(h["fnmr_everyday"], False),
                "FMR bound": fmt_sci(h["fmr_bound"]),
                "model": "ok" if h["fmr_model_status"] == "accepted" else h["fmr_model_status"],
                "p50 4G": fmt_ms(lat["p50_ms"]) if lat else "n/a",
                "bytes/img": fmt_bytes(h["bytes_per_image"]),
                "server CPU": fmt_ms(h["server_cpu_ms"])
                + ("*" if h["server_cpu_basis"] in ("extrapolated", "lower bound") else ""),
                "cores": fmt_cores(ca["cores"], ca["basis"], "").split(" (")[0],
                "verified": "yes" if h["verified"] else ("part" if h["verified_algos"] else "NO"),
            }
        )
    return rows


def _accounts_cell(w: dict[str, Any]) -> str:
    if "accounts_flagged_per_year_bound" not in w:
        return "n/a (no threshold)"
    out = fmt_count_log(w["accounts_flagged_per_year_bound"], w.get("accounts_flagged_per_year_bound_log10"))
    out += " (bound)"
    if "accounts_flagged_per_year_model" in w:
        m = fmt_count_log(
            w["accounts_flagged_per_year_model"], w.get("accounts_flagged_per_year_model_log10")
        )
        out += f"; {m} (calibrated model)"
    if "accounts_flagged_per_year_reference" in w:
        ref = fmt_count_log(
            w["accounts_flagged_per_year_reference"], w.get("accounts_flagged_per_year_reference_log10")
        )
        out += f"; {ref} if the per-image rate were {w['reference_rate']:g}"
    return out + f" — {w['account_assumption']}"


def worked_rows(res: dict[str, Any]) -> Rows:
    rows = []
    for w in res["worked_examples"]:
        model = w["innocent_flagged_per_day_model"]
        rows.append(
            {
                "Protocol": w["variant"],
                "Images per day": fmt_big(w["daily_images"]),
                "Set size": fmt_big(w["set_size"]),
                "Server cores": fmt_cores(w["cores"], w["cores_basis"], w["cores_note"]),
                "Client↔server traffic per day": fmt_bytes(w["traffic_gb_per_day"] * 1e9)
                if w["traffic_gb_per_day"] is not None
                else "not measured",
                "One-time download per client": fmt_bytes(w["one_time_download_bytes"])
                + ("" if w.get("download_source") == "measured" else " (predicted)"),
                "Innocent images falsely matched per day": "≤ "
                + fmt_count(w["innocent_flagged_per_day_bound"])
                + f" ({w['bound_label']})",
                "… calibrated tail model": fmt_count(model)
                if model is not None
                else f"model {w['model_status']}",
                "Innocent accounts flagged per year (threshold)": _accounts_cell(w),
            }
        )
    return rows


def frontier_table(res: dict[str, Any]) -> Rows:
    """One row per protocol variant: recall against cost and what privacy is given up."""
    rows = []
    real = any(f["recall_real_copies"] for f in res.get("frontier", []))
    for f in res.get("frontier", []):
        row = {
            "Variant": row_label(f, res),
            "Recall, everyday edits (95%)": fmt_recall(f["recall_everyday"]),
        }
        if real:
            row["Recall, real copies (95%)"] = fmt_recall(f["recall_real_copies"])
        row |= {
            "Server CPU / query at 10^6 entries": fmt_estimate(
                f["server_cpu_ms_at_1e6"], f["server_cpu_basis"], f["server_cpu_note"]
            ),
            "Bytes / query": fmt_bytes(f["bytes_per_query"])
            if f["bytes_per_query"] is not None
            else "not measured",
            "Who learns the verdict": _WHO.get(f["learner"], f["learner"]),
            "Adversary model": f["adversary"],
            "Trust assumption": f["trust"],
            "Hash revealed": f["revealed"],
        }
        rows.append(row)
    return rows


def false_match_rows(res: dict[str, Any]) -> Rows:
    """Per hash and matching rule: the measured per-pair rate first, the calibration beside it."""
    rows = []
    for r in res.get("false_matches", []):
        m, cal = r["measured"], r["calibration"]
        lo, hi = m["clopper_pearson"]
        rows.append(
            {
                "hash": r["algo"],
                "rule": r["rule"],
                "unrelated pairs matched": f"{m['k']:,} of {m['n']:,}",
                "per-pair rate (95% Clopper–Pearson)": f"{fmt_sci(m['rate'])} ({fmt_sci(lo)}–{fmt_sci(hi)})",
                "calibration check": f"{cal['status']}: {cal['reason']}",
                "tail model per pair": fmt_sci(r["model_pair_rate"])
                if r["model_pair_rate"] is not None
                else f"not used ({cal['status']})",
                "pairs needed to bound at 10⁻⁶ / 10⁻⁹ / 10⁻¹²": " / ".join(
                    f"{n:,}" for n in r["pairs_needed"].values()
                ),
                "variants": ", ".join(r["variants"]),
            }
        )
    return rows


def detail_tables(res: dict[str, Any]) -> dict[str, Rows]:
    """The tables of the detail sections, by name (see templates/details.html.j2)."""
    return {name: fn(res) for name, fn in DETAIL_BUILDERS.items()}
