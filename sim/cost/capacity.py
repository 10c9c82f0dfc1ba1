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

__all__ = ["LinearCost", "cores_needed", "fit_linear", "fit_proportional", "qps_per_core"]

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class LinearCost:
    """``a + b·N`` milliseconds per query, fitted on ``sizes``."""

    a: float
    b: float
    sizes: tuple[int, ...]
    growth: str = "single size"

    def at(self, n: float) -> float:
        return self.a + self.b * float(n)

    def extrapolated(self, n: float) -> bool:
        return not self.sizes or float(n) > max(self.sizes) * 1.0001

    def estimable(self, n: float, max_factor: float) -> bool:
        """Whether the fit may be used at ``n``: within ``max_factor`` × the largest measured
        size, or anywhere if cost is assumed proportional to the set; never beyond a single
        measured size (one point says nothing about growth)."""
        if not self.sizes or not math.isfinite(self.a):
            return False
        if self.growth.startswith("assumed proportional"):
            return True
        if len(self.sizes) == 1:
            return float(n) <= self.sizes[0] * 1.0001
        return float(n) <= max(self.sizes) * max_factor

    def to_dict(self) -> dict[str, Any]:
        return {
            "a_ms": self.a,
            "b_ms_per_entry": self.b,
            "measured_sizes": list(self.sizes),
            "growth": self.growth,
        }


def fit_proportional(sizes: list[int], ms: list[float]) -> LinearCost:
    """Cost ∝ N, for protocols that must touch every set entry per query (declared in config)."""
    pts = [
        (float(s), float(m)) for s, m in zip(sizes, ms, strict=True) if math.isfinite(m) and m >= 0 and s > 0
    ]
    if not pts:
        return LinearCost(float("nan"), float("nan"), ())
    b = float(np.mean([m / s for s, m in pts]))
    return LinearCost(0.0, b, tuple(int(s) for s, _ in pts), "assumed proportional to set size (configured)")


def fit_linear(sizes: list[int], ms: list[float], se: list[float] | None = None) -> LinearCost:
    """Fit cost against set size.

    With standard errors: weighted least squares, and the slope is kept only if
    it exceeds twice its own standard error — otherwise timing noise between
    two small sizes would be extrapolated to 10⁶ as if it were growth. Without
    them: non-negative least squares in relative error.
    """
    keep = [i for i, m in enumerate(ms) if math.isfinite(m) and m >= 0]
    if not keep:
        return LinearCost(float("nan"), float("nan"), ())
    s = np.array([float(sizes[i]) for i in keep])
    y = np.array([float(ms[i]) for i in keep])
    measured = tuple(int(x) for x in s)
    if len(keep) == 1:
        return LinearCost(float(y[0]), 0.0, measured)
    if se is not None and all(math.isfinite(se[i]) and se[i] > 0 for i in keep):
        w = 1.0 / np.array([float(se[i]) for i in keep]) ** 2
        x_mean = float(np.sum(w * s) / np.sum(w))
        y_mean = float(np.sum(w * y) / np.sum(w))
        sxx = float(np.sum(w * (s - x_mean) ** 2))
        b = float(np.sum(w * (s - x_mean) * (y - y_mean)) / sxx)
        b_se = math.sqrt(1.0 / sxx)
        if b > 2 * b_se:
            return LinearCost(max(0.0, y_mean - b * x_mean), b, measured, "grows with set size")
        return LinearCost(y_mean, 0.0, measured, "no significant growth: treated as constant")
    wr = 1.0 / np.maximum(y, 1e-6)
    coef, _ = nnls(np.column_stack([np.ones_like(s), s]) * wr[:, None], y * wr)
    return LinearCost(float(coef[0]), float(coef[1]), measured, "least squares (no error estimate)")


def qps_per_core(cpu_ms: float) -> float:
    return 1000.0 / cpu_ms if cpu_ms > 0 else float("inf")


def cores_needed(daily_volume: float, cpu_ms: float, peak_to_mean: float, utilisation: float) -> int:
    """Cores to serve ``daily_volume`` queries a day at the stated peak and utilisation."""
    if not math.isfinite(cpu_ms):
        return -1
    peak_qps = daily_volume / SECONDS_PER_DAY * peak_to_mean
    return max(1, math.ceil(peak_qps * cpu_ms / 1000.0 / utilisation))
