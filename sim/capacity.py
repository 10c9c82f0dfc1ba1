"""Server capacity: queries per second per core, and cores for a daily volume.

Assumptions (stated in the report): server CPU per query grows linearly with
the set size, ``cpu(N) = a + b·N`` with a, b ≥ 0 fitted to the sizes measured in
this run (exact at measured sizes, an extrapolation beyond them and flagged as
such); traffic peaks at ``peak_to_mean`` times the daily average; cores are
provisioned to run at most ``target_utilisation`` busy at peak; one query = one
image; CPU is the only bottleneck (memory, disk and network are not modelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

__all__ = ["LinearCost", "cores_needed", "fit_linear"]

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class LinearCost:
    """``a + b·N`` milliseconds per query, fitted on ``sizes``."""

    a: float
    b: float
    sizes: tuple[int, ...]

    def at(self, n: float) -> float:
        return self.a + self.b * float(n)

    def extrapolated(self, n: float) -> bool:
        return not self.sizes or float(n) > max(self.sizes) * 1.0001

    def to_dict(self) -> dict[str, Any]:
        return {"a_ms": self.a, "b_ms_per_entry": self.b, "measured_sizes": list(self.sizes)}


def fit_linear(sizes: list[int], ms: list[float]) -> LinearCost:
    """Non-negative least squares in relative error (so small sizes weigh as much as large)."""
    pts = [
        (float(s), float(m)) for s, m in zip(sizes, ms, strict=True) if math.isfinite(m) and m >= 0
    ]
    if not pts:
        return LinearCost(float("nan"), float("nan"), ())
    if len(pts) == 1:
        return LinearCost(pts[0][1], 0.0, (int(pts[0][0]),))
    s = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    w = 1.0 / np.maximum(y, 1e-6)
    coef, _ = nnls(np.column_stack([np.ones_like(s), s]) * w[:, None], y * w)
    return LinearCost(float(coef[0]), float(coef[1]), tuple(int(x) for x in s))


def qps_per_core(cpu_ms: float) -> float:
    return 1000.0 / cpu_ms if cpu_ms > 0 else float("inf")


def cores_needed(
    daily_volume: float, cpu_ms: float, peak_to_mean: float, utilisation: float
) -> int:
    """Cores to serve ``daily_volume`` queries a day at the stated peak and utilisation."""
    if not math.isfinite(cpu_ms):
        return -1
    peak_qps = daily_volume / SECONDS_PER_DAY * peak_to_mean
    return max(1, math.ceil(peak_qps * cpu_ms / 1000.0 / utilisation))
