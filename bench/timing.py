"""Timing that survives a noisy, shared machine: medians with their min–max spread.

Why medians: the benchmark host has 2 cores shared with other jobs, so a mean is
dragged by whichever repeat was pre-empted. Every figure is reported as the
median over repeats together with the minimum and maximum, so a reader can see
how noisy the run was. Wall time uses ``perf_counter``; CPU time uses
``process_time`` plus the CPU of live child processes (process pools), so work a
protocol farms out to other cores is not silently dropped.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Stat", "child_pids", "cpu_now", "descendants", "measure", "proc_cpu", "stat", "timed"]


@dataclass(frozen=True)
class Stat:
    """A measured quantity: median and spread over ``n`` samples, in ``unit``."""

    median: float
    min: float
    max: float
    n: int
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n, "unit": self.unit}

    def scaled(self, factor: float, unit: str) -> Stat:
        """The same samples in another unit (e.g. s → ms); factor must be positive."""
        return Stat(self.median * factor, self.min * factor, self.max * factor, self.n, unit)

    def per(self, divisor: float, unit: str | None = None) -> Stat:
        """Divide every figure by a positive constant (e.g. per element)."""
        if divisor <= 0:
            raise ValueError("divisor must be positive")
        return Stat(self.median / divisor, self.min / divisor, self.max / divisor, self.n, unit or self.unit)

    def rate(self, unit: str) -> Stat:
        """Reciprocal (time per op → ops per time); min and max swap."""
        if self.min <= 0:
            raise ValueError("cannot invert a non-positive time")
        return Stat(1.0 / self.median, 1.0 / self.max, 1.0 / self.min, self.n, unit)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stat:
        return cls(float(d["median"]), float(d["min"]), float(d["max"]), int(d["n"]), str(d["unit"]))


def stat(samples: Sequence[float], unit: str) -> Stat:
    """Median/min/max of ``samples`` (at least one)."""
    if not samples:
        raise ValueError("no samples")
    return Stat(
        float(statistics.median(samples)), float(min(samples)), float(max(samples)), len(samples), unit
    )


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_pids(pid: int) -> list[int]:
    """Live children of ``pid`` (every thread's), read from /proc; [] where it is absent."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` at any depth (pool workers may hang under a forkserver helper)."""
    out: list[int] = []
    todo = child_pids(pid)
    while todo:
        out.append(todo.pop())
        todo += child_pids(out[-1])
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one live process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _children_cpu() -> float:
    """CPU seconds of this process's live multiprocessing children (process pools).

    Only children started through ``multiprocessing`` (which ``concurrent.futures``
    pools use) are visited, read straight from /proc: ~1 µs when there are none,
    where a process-table scan (psutil) would cost ~1.5 ms and swamp the
    sub-millisecond handlers this wraps. 0 where /proc is absent.
    """
    import multiprocessing

    roots = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    return sum(proc_cpu(pid) for root in roots for pid in (root, *descendants(root)))


def cpu_now(include_children: bool = True) -> float:
    """Process CPU seconds so far (+ reaped and live children when asked)."""
    if not include_children:
        return time.process_time()
    ru = os.times()
    return time.process_time() + ru.children_user + ru.children_system + _children_cpu()


@dataclass(frozen=True)
class Timed:
    wall_s: float
    cpu_s: float
    value: Any


def timed(fn: Callable[[], Any], include_children: bool = True) -> Timed:
    """Run ``fn`` once; wall and CPU seconds (CPU includes child processes)."""
    c0 = cpu_now(include_children)
    t0 = time.perf_counter()
    v = fn()
    wall = time.perf_counter() - t0
    return Timed(wall, cpu_now(include_children) - c0, v)


def measure(
    fn: Callable[[], object],
    repeats: int = 5,
    min_time: float = 0.05,
    max_inner: int = 1_000_000,
    budget_s: float | None = None,
) -> Stat:
    """Seconds per call of ``fn``: the loop count is calibrated so one repeat lasts
    at least ``min_time``; the median over ``repeats`` such loops is reported.

    ``budget_s`` caps the total time: slow calls get fewer repeats (never fewer than one).
    """
    t0 = time.perf_counter()
    fn()  # warm-up (imports, caches, lazy keys)
    first = time.perf_counter() - t0
    inner = 1 if first >= min_time else min(max_inner, max(1, int(min_time / max(first, 1e-7))))
    if budget_s is not None and first * inner * repeats > budget_s:
        repeats = max(1, int(budget_s / max(first * inner, 1e-9)))
    samples: list[float] = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t) / inner)
    return stat(samples, "s")
