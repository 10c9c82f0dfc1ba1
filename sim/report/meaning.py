"""The facts behind "What this means": which rows the plain-language sentences quote.

Why facts here and sentences in ``templates/meaning.txt.j2``: choosing the row
to quote (the best fuzzy matcher, the costliest variant) is logic and is tested;
the wording is prose and is edited without touching code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["meaning_facts"]


def _pooled(res: dict[str, Any], label: str, algo: str, family: str) -> dict[str, Any] | None:
    names = {p["name"] for p in res["perturbations"] if p["family"] == family}
    cells = [
        c
        for c in res["accuracy"]["fnmr"]
        if c["variant"] == label and c["algo"] == algo and c["perturbation"] in names
    ]
    k, n = sum(c["k"] for c in cells), sum(c["n"] for c in cells)
    return {"k": k, "n": n, "rate": k / n} if n else None


def _rate(h: dict[str, Any], key: str) -> float:
    c = h.get(key)
    return float(c["rate"]) if c and c.get("rate") is not None else 1.0


def _accuracy(res: dict[str, Any], algo: str) -> dict[str, Any]:
    hl = [h for h in res["headline"] if h.get("algo", algo) == algo]  # one hash: rows compare
    fuzzy = [h for h in hl if h["matching"] == "fuzzy" and h["fnmr_jpeg70"]]
    exact = [h for h in hl if h["matching"] == "exact" and h["fnmr_jpeg70"]]
    out: dict[str, Any] = {}
    if fuzzy:
        f = min(fuzzy, key=lambda h: _rate(h, "fnmr_jpeg70"))
        out["fuzzy"] = {
            "row": f,
            "protocols": sorted({h["protocol"] for h in fuzzy}),
            "geometry": _pooled(res, f["variant"], algo, "geometry"),
        }
    if exact:
        out["exact"] = {
            "worst": max(exact, key=lambda h: _rate(h, "fnmr_jpeg70")),
            "best": min(exact, key=lambda h: _rate(h, "fnmr_everyday")),
            "protocols": sorted({h["protocol"] for h in exact}),
        }
    return out


def _evasion(res: dict[str, Any]) -> dict[str, Any] | None:
    att = res["evasion"]["attempts"]
    if not att:
        return None
    ok = [a for a in att if a["success"]]
    psnr = sorted(a["psnr_db"] for a in ok if a["psnr_db"] is not None)
    return {"ok": len(ok), "total": len(att), "median_psnr": psnr[len(psnr) // 2] if psnr else None}


def _false_matches(res: dict[str, Any], algo: str) -> dict[str, Any]:
    hl = [h for h in res["headline"] if h.get("fmr_pair")]
    out: dict[str, Any] = {"rows": [r for r in res.get("false_matches", []) if r["algo"] == algo]}
    if hl:
        worst = max(hl, key=lambda h: h["fmr_pair_upper95"] or 0.0)
        out["worst"] = worst
        out["pairs_needed"] = next(
            (r["pairs_needed"] for r in out["rows"] if worst["variant"] in r["variants"]), None
        )
    filt = [
        p
        for p in res["population"]
        if p.get("filter_false_positive") and p["set_size"] == max(x["set_size"] for x in res["population"])
    ]
    if filt:
        out["filter"] = max(filt, key=lambda p: p["filter_false_positive"])
        out["daily"] = max(res["config"]["population"]["daily_volumes"])
    out["weak"] = [
        r
        for r in res.get("false_matches", [])
        if r["algo"] != algo and r["kind"] == "fuzzy" and r["measured"]["k"] > 0
    ]
    return out


def _cost(res: dict[str, Any]) -> dict[str, Any] | None:
    cost = [h for h in res["headline"] if h["server_cpu_ms"] is not None and h["bytes_per_image"] is not None]
    if len(cost) < 2:
        return None
    return {
        "cheap": min(cost, key=lambda h: h["server_cpu_ms"]),
        "dear": max(cost, key=lambda h: h["server_cpu_ms"]),
        "heavy": max(cost, key=lambda h: h["bytes_per_image"]),
    }


def meaning_facts(res: dict[str, Any]) -> dict[str, Any]:
    """Everything ``meaning.txt.j2`` quotes, picked from the results."""
    algo = res["cost"]["algo"]
    return {
        "algo": algo,
        **_accuracy(res, algo),
        "evasion": _evasion(res),
        "fm": _false_matches(res, algo),
        "cost": _cost(res),
        "unverified": [f"{r['variant']} ({r['algo']})" for r in res["verification"] if not r["verified"]],
        "http_verified": any(r.get("http") for r in res["verification"]),
        "embedded": res["corpus"]["source"] == "embedded",
        "quick": bool(res.get("quick")),
    }
