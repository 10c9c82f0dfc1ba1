"""What every benchmark result carries: the machine, library versions and seed.

Why: a number without its machine is not reproducible (CONVENTIONS, "Benchmarks
print their seed, the machine and the library versions"). Everything here is
read from the running system, never typed in.
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

__all__ = ["LIBRARIES", "library_versions", "machine_info"]

LIBRARIES = (
    "blindmatch",
    "numpy",
    "rbcl",
    "cryptography",
    "tenseal",
    "pdqhash",
    "ImageHash",
    "pillow",
    "openmined_psi",
    "fastapi",
    "uvicorn",
    "httpx",
    "psutil",
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
    except Exception:
        return None


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(  # noqa: S603
            ["git", "-C", str(here), "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(  # noqa: S603
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose speed the results depend on."""
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
    """CPU model, cores (logical, usable by this process), memory, OS, load."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "memory_bytes": _mem_total_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "load_avg_at_start": load,
        "git_commit": _git_commit(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
