"""What the numbers were measured on, and process-tree CPU time from /proc.

Why /proc and not the client's clock: the server runs in its own uvicorn
process (and protocols may fan work out to worker processes), so server CPU per
query is the CPU time of that whole process tree, read before and after a batch
of queries. This counts only the server's work, whatever else the shared
machine is doing; wall time would not.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["CLK_TCK", "loadavg", "machine_info", "tree_cpu_seconds"]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

_LIBS = (
    "numpy",
    "pillow",
    "pdqhash",
    "imagehash",
    "scipy",
    "scikit-image",
    "rbcl",
    "cryptography",
    "tenseal",
    "fastapi",
    "uvicorn",
    "httpx",
    "matplotlib",
    "dask",
    "distributed",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for lib in _LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_at_start": loadavg(),
        "libraries": versions,
    }


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime+cutime+cstime ticks) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    # fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(rest[1]), sum(int(rest[i]) for i in (11, 12, 13, 14))


def tree_cpu_seconds(root: int, include_root: bool = True) -> float:
    """CPU seconds used so far by ``root`` and all its live descendants."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            s = _stat(int(entry.name))
            if s is not None:
                stats[int(entry.name)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in stats and (include_root or pid != root):
            total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total / CLK_TCK
