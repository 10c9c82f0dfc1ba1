"""Process-tree CPU time from /proc (the machine record is ``blindmatch.machine``).

Why /proc and not the client's clock: the server runs in its own uvicorn
process (and protocols may fan work out to worker processes), so server CPU per
query is the CPU time of that whole process tree, read before and after a batch
of queries. This counts only the server's work, whatever else the shared
machine is doing; wall time would not.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CLK_TCK", "tree_cpu_seconds"]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

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
