"""glibc heap settings for processes that handle he's multi-megabyte buffers.

Why: a key bundle is ~18 MB and a job pickles it again; glibc raises its mmap
threshold to the size of the largest buffer freed (up to 32 MB), after which such
buffers come from the heap, where long-lived allocations between them keep the freed
pages from going back to the kernel. Resident size then drifts up and down by tens
of MB with the order of requests (measured: ±54 MB on an idle he server). A fixed
threshold keeps every buffer of 1 MiB or more in its own mapping, returned on free.
Elsewhere than glibc (musl, macOS) both calls are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

__all__ = ["map_large_buffers", "trim_heap"]

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
_THRESHOLD = 1 << 20


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def map_large_buffers() -> bool:
    """Serve allocations of 1 MiB or more from their own mappings, for the whole process."""
    return _LIBC is not None and bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))


def trim_heap() -> None:
    """Hand freed heap pages back to the kernel (``malloc_trim``)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
