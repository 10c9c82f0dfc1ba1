"""The machine record every measured output carries (simulator, benchmarks, reliability).

Why one record: a number without its machine is not reproducible (CONVENTIONS, "Benchmarks
print their seed, the machine and the library versions"), and three outputs describing the
same machine with three sets of keys cannot be compared. Everything is read from the running
system, never typed in.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "MACHINE_KEYS", "library_versions", "loadavg", "machine_info"]

LIBRARIES = (
    "blindmatch",
    "numpy",
    "scipy",
    "scikit-image",
    "pillow",
    "pdqhash",
    "ImageHash",
    "rbcl",
    "cryptography",
    "tenseal",
    "fastapi",
    "uvicorn",
    "httpx",
    "matplotlib",
    "dask",
    "distributed",
    "openmined_psi",
    "psutil",
    "hypothesis",
    "atheris",
    "schemathesis",
)

MACHINE_KEYS = (
    "cpu_model",
    "logical_cpus",
    "usable_cpus",
    "memory_bytes",
    "platform",
    "python",
    "implementation",
    "loadavg_at_start",
    "git_commit",
    "started_utc",
    "libraries",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _libsodium_version() -> str | None:
    try:
        import rbcl._sodium as s

        lib = getattr(s, "_sodium", s)  # the module, or (as rbcl exports it) the CDLL
        fn = lib.sodium_version_string
        fn.restype = ctypes.c_char_p
        v = fn()
        return v.decode() if isinstance(v, bytes) else None
    except Exception:  # any failure means "unknown", never a crashed run
        return None


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        r = subprocess.run(  # noqa: S603
            ["git", "-C", str(here), *args],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _git_commit() -> str | None:
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if dirty else "")


def loadavg() -> list[float]:
    """1, 5 and 15-minute load averages (empty where the OS does not say)."""
    try:
        return [float(x) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return []


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries the results depend on (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["libsodium"] = _libsodium_version()
    out["python"] = platform.python_version()
    return out


def machine_info() -> dict[str, Any]:
    """CPU, cores (logical, usable by this process), memory, OS, load, commit, libraries."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info = {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": _mem_total_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "loadavg_at_start": loadavg(),
        "git_commit": _git_commit(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "libraries": library_versions(),
    }
    assert tuple(info) == MACHINE_KEYS
    return info
