"""Server cost per query at any set size, with its basis, and the cores it implies.

Why every estimate carries a basis: a reader must tell a measurement from an
extrapolation at a glance, and a cell must never be blank. An estimate is
"measured" or "interpolated" inside the measured sizes, "extrapolated ×F"
beyond them (a linear fit a + b·N, flagged however far it reaches), a "lower
bound" when only one size was measured (cost never falls as the set grows),
or "not estimated" with the reason — usually the cost stage's own note, such as
"skipped: predicted 12 s per query".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from blindmatch.client import get_algo
from blindmatch.protocol import REGISTRY

from ..cost.capacity import LinearCost, cores_needed, fit_linear, fit_proportional

__all__ = ["cores_cell", "cpu_estimate", "download", "nearest_cell", "ok_cells", "server_model"]


def ok_cells(cells: list[dict[str, Any]], label: str, transport: str) -> list[dict[str, Any]]:
    """Measured cost cells of one variant and transport, by set size."""
    return sorted(
        (
            c
            for c in cells
            if c["variant"] == label and c["transport"] == transport and c.get("status") == "ok"
        ),
        key=lambda c: c["set_size"],
    )


def nearest_cell(cells: list[dict[str, Any]], size: int) -> dict[str, Any] | None:
    """The cell whose set size is nearest ``size`` on a log scale."""
    if not cells:
        return None
    return min(cells, key=lambda c: (abs(math.log(c["set_size"]) - math.log(size)), c["set_size"]))


def _se(cell: dict[str, Any]) -> float:
    """Standard error of a cell's mean server CPU, from its per-query samples."""
    x = np.asarray(cell.get("samples", {}).get("server_ms") or [], dtype=np.float64)
    if x.size < 2 or not np.isfinite(x).all() or x.mean() <= 0:
        return float("nan")
    return float(x.std(ddof=1) / math.sqrt(x.size) * cell["server_cpu_ms"] / x.mean())


def _why_not(cells: list[dict[str, Any]], label: str) -> str:
    notes = sorted({str(c.get("status")) for c in cells if c["variant"] == label and c.get("status") != "ok"})
    return "not measured" + (f" ({'; '.join(notes)[:160]})" if notes else " (no cost cell for this variant)")


def server_model(
    cells: list[dict[str, Any]], label: str, cost_model: str = "affine", max_factor: float = 100.0
) -> dict[str, Any]:
    """Server CPU per query vs set size: protocol handler (fitted) + HTTP overhead (measured)."""
    loc, http = ok_cells(cells, label, "local"), ok_cells(cells, label, "http")
    overhead = float("nan")
    if loc:
        sizes, ms = [c["set_size"] for c in loc], [c["server_cpu_ms"] for c in loc]
        fit = (
            fit_proportional(sizes, ms)
            if cost_model == "proportional"
            else fit_linear(sizes, ms, [_se(c) for c in loc])
        )
        over = [h["server_cpu_ms"] - fit.at(h["set_size"]) for h in http]
        overhead = max(0.0, float(np.mean(over))) if over else float("nan")
        source = "in-process handler fit" + (
            " + measured HTTP overhead" if over else " (no HTTP measurement)"
        )
    elif http:
        fit = fit_linear([c["set_size"] for c in http], [c["server_cpu_ms"] for c in http])
        overhead, source = 0.0, "server process CPU over HTTP"
    else:
        fit, source = LinearCost(float("nan"), float("nan"), ()), _why_not(cells, label)
    return {
        "fit": fit,
        "http_overhead_ms": overhead,
        "source": f"{source}; {fit.growth}",
        "max_factor": max_factor,
    }


def cpu_estimate(model: dict[str, Any], n: float) -> dict[str, Any]:
    """Server CPU per query at set size ``n`` with its basis; ``ms`` is None only with a reason."""
    fit: LinearCost = model["fit"]
    over = model["http_overhead_ms"]
    extra = over if math.isfinite(over) else 0.0
    if not fit.sizes or not math.isfinite(fit.a):
        return {"ms": None, "basis": "not estimated", "note": model["source"].split(";")[0]}
    top = max(fit.sizes)
    if float(n) <= top * 1.0001:
        basis = "measured" if any(abs(s - n) < 0.5 for s in fit.sizes) else "interpolated"
        if len(fit.sizes) == 1 and basis != "measured":
            basis = "interpolated"  # one size below the measurement: a constant-cost reading
        return {"ms": fit.at(n) + extra, "basis": basis, "note": fit.growth}
    factor = float(n) / top
    if len(fit.sizes) == 1 and not fit.growth.startswith("assumed proportional"):
        return {
            "ms": fit.at(top) + extra,
            "basis": "lower bound",
            "note": f"only N={top:,} measured; cost does not fall as the set grows",
        }
    return {
        "ms": fit.at(n) + extra,
        "basis": "extrapolated",
        "note": f"×{factor:.3g} beyond the largest measured size {top:,} ({fit.growth})"
        + (" — beyond capacity.max_extrapolation: indicative only" if factor > model["max_factor"] else ""),
    }


def cores_cell(est: dict[str, Any], daily: float, cap: dict[str, Any]) -> dict[str, Any]:
    """Cores for ``daily`` images a day from a CPU estimate, keeping its basis."""
    if est["ms"] is None:
        return {"cores": None, "basis": est["basis"], "note": est["note"]}
    cores = cores_needed(
        daily, float(est["ms"]), float(cap["peak_to_mean"]), float(cap["target_utilisation"])
    )
    return {"cores": cores, "basis": est["basis"], "note": est["note"]}


def download(proto: str, label: str, cells: list[dict[str, Any]], n: int) -> tuple[float, str]:
    """One-time client download at set size ``n``: measured where a cell has it, else predicted."""
    for c in ok_cells(cells, label, "http") + ok_cells(cells, label, "local"):
        if c["set_size"] == n:
            return float(c["one_time_download_bytes"]), "measured"
    p = REGISTRY.get(proto)
    if p is None:
        return float("nan"), "unknown"
    return float(p.download_bytes(int(n), get_algo("pdq"))), "predicted by the protocol"
