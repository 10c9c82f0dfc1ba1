"""Worker processes that inherit nothing from a threaded server, and start quickly.

Why not ``fork``: servers run threads (uvicorn, channel readers, pool managers), and
forking a threaded process can deadlock. Why not ``spawn``: each (re)start would
import numpy, SEAL or libsodium again (0.3–0.7 CPU-s a worker). ``forkserver`` forks
workers from a helper that is single-threaded and has only imported code, so a
worker holds no keys, sockets or threads of the server, as with ``spawn``, and starts
in milliseconds. Where ``forkserver`` is missing, ``spawn``.
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.context import ForkServerContext, SpawnContext

__all__ = ["worker_context"]

_PRELOAD: list[str] = []
_LOCK = threading.Lock()


def worker_context(*preload: str) -> ForkServerContext | SpawnContext:
    """A start context whose helper imports ``preload`` once, before any worker forks.

    The helper starts on first use with every module asked for so far; a module asked
    for later is imported by each worker that needs it, as ``spawn`` would.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    with _LOCK:
        _PRELOAD.extend(m for m in preload if m not in _PRELOAD)
        ctx.set_forkserver_preload(list(_PRELOAD))
    return ctx
