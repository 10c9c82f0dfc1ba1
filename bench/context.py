"""Shared state of one benchmark run, and the result-row format every suite emits.

Why one context: bounds must be measured *in the same run* as the figures they
bound, so the primitive timings from ``micro`` are kept here and the
``protocols``, ``load`` and ``peers`` suites read them (measuring any missing
primitive on demand). Protocol cells are cached so ``peers`` reuses the
``protocols`` measurement of ``oprf`` and ``plain`` instead of re-running them.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .timing import Stat

__all__ = ["BenchContext", "Metric", "make_row"]


@dataclass
class Metric:
    """One measured figure, optionally with its physical bound and the ratio to it."""

    stat: Stat
    bound: float | None = None
    bound_formula: str | None = None
    note: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.bound is None or self.bound <= 0:
            return None
        return self.stat.median / self.bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "stat": self.stat.to_dict(),
            "bound": None
            if self.bound is None
            else {"value": self.bound, "unit": self.stat.unit, "formula": self.bound_formula},
            "ratio": self.ratio,
            "note": self.note,
        }


def make_row(
    suite: str,
    group: str,
    name: str,
    metrics: dict[str, Metric] | None = None,
    params: dict[str, Any] | None = None,
    bound_for: str | None = None,
    status: str = "ok",
    reason: str | None = None,
) -> dict[str, Any]:
    """A result row; ``status`` is ok | skipped | failed | extrapolated."""
    return {
        "suite": suite,
        "group": group,
        "name": name,
        "params": params or {},
        "metrics": {k: m.to_dict() for k, m in (metrics or {}).items()},
        "bound_for": bound_for,
        "status": status,
        "reason": reason,
    }


@dataclass
class BenchContext:
    seed: int
    repeats: int
    sizes: list[int]
    workdir: Path
    quick: bool = False
    quick_all: bool = False  # in quick mode, also run protocols listed in hooks.QUICK_SKIP
    protocols: list[str] | None = None  # restrict to these registry names
    load_seconds: float = 8.0
    cell_budget_s: float = 600.0  # predicted time above this → extrapolate instead (10 min)
    prims: dict[str, Stat] = field(default_factory=dict)
    prim_info: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cells: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    verbose: bool = True
    _t0: float = field(default_factory=time.monotonic)

    def log(self, msg: str) -> None:
        if self.verbose:
            sys.stderr.write(f"[bench {time.monotonic() - self._t0:7.1f}s] {msg}\n")
            sys.stderr.flush()

    def record_error(self, suite: str, where: str, exc: BaseException, keep: int = 2000) -> None:
        """Keep a failure, with the end of its traceback, in results.json; the run goes on."""
        self.errors.append(
            {"suite": suite, "where": where, "error": repr(exc), "traceback": traceback.format_exc()[-keep:]}
        )

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        self.rows.append(row)
        return row

    def prim(self, key: str, measure: Callable[[], Stat]) -> Stat:
        """The primitive ``key`` (seconds per op), measured once per run."""
        if key not in self.prims:
            self.prims[key] = measure()
        return self.prims[key]

    def protocol_names(self) -> list[str]:
        from blindmatch.protocol import REGISTRY

        names = sorted(REGISTRY)
        if self.protocols is not None:
            names = [n for n in names if n in self.protocols]
        return names
