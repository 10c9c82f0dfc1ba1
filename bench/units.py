"""Human-readable units for the benchmark reports (one definition for tables and goals)."""

from __future__ import annotations

import math

__all__ = ["fmt_value"]


def fmt_value(v: float | None, unit: str) -> str:
    """Human units: seconds as µs/ms/s, bytes as B/KB/MB (decimal), rates with k/M."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if unit == "s":
        a = abs(v)
        if a == 0:
            return "0 s"
        if a < 1e-3:
            return f"{v * 1e6:.3g} µs"
        if a < 1:
            return f"{v * 1e3:.3g} ms"
        return f"{v:.3g} s"
    if unit == "ms":
        return fmt_value(v / 1000, "s")
    if unit == "B":
        a = abs(v)
        if a >= 1e6:
            return f"{v / 1e6:.3g} MB"
        if a >= 1e3:
            return f"{v / 1e3:.3g} KB"
        return f"{v:.3g} B"
    if unit in ("ops/s", "queries/s", "req/s", "items/s"):
        if abs(v) >= 1e6:
            return f"{v / 1e6:.3g} M{unit}"
        if abs(v) >= 1e3:
            return f"{v / 1e3:.3g} k{unit}"
        return f"{v:.3g} {unit}"
    if unit == "×":
        return f"{v:.3g}×"
    if unit == "count":
        return f"{int(v)}"
    return f"{v:.4g} {unit}"
