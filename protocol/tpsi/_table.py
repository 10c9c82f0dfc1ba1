"""Server set-up: the cuckoo table of blinded points ``α·H(x)``, built on all cores.

Why a process pool: the build costs one hash-to-group and one scalar
multiplication per set entry (about 80 µs here), i.e. ~80 CPU-seconds for 10^6
hashes; the slot assignment itself is cheap Python. Chunks of items go to a
process pool; small sets are done inline because starting workers costs time.
The pool forks when the caller is single-threaded (no re-import of the
caller's ``__main__``, so plain scripts work) and spawns otherwise (forking a
threaded process can deadlock; spawn needs the usual ``if __name__ ==
"__main__"`` guard in scripts).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from ..hazmat.ristretto import base_mult, random_scalar, scalar_mult
from . import _cuckoo
from ._core import h2g

__all__ = ["BuiltTable", "blind_items", "build_table", "random_points", "table_size_bytes"]

PARALLEL_MIN = 20_000
_CHUNK = 25_000


def table_size_bytes(n: int, eps: float = 0.3, n_hash: int = 3) -> int:
    """Bytes of the table message for ``n`` hashes (a new client downloads it once)."""
    return 4 + 2 * 4 + 4 + 32 * _cuckoo.table_slots(n, eps, n_hash)


def _blind_chunk(args: tuple[bytes, list[bytes]]) -> bytes:
    alpha, items = args
    return b"".join(scalar_mult(alpha, h2g(it)) for it in items)


def _random_chunk(n: int) -> bytes:
    return b"".join(base_mult(random_scalar()) for _ in range(n))


def _context() -> multiprocessing.context.BaseContext:
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _workers(workers: int | None) -> int:
    return max(1, workers if workers is not None else (os.cpu_count() or 1))


def blind_items(items: list[bytes], alpha: bytes, workers: int | None = None) -> bytes:
    """``α·H(item)`` for every item, 32 bytes each, in order."""
    w = _workers(workers)
    if w == 1 or len(items) < PARALLEL_MIN:
        return _blind_chunk((alpha, items))
    chunks = [(alpha, items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)]
    with ProcessPoolExecutor(w, mp_context=_context()) as ex:
        return b"".join(ex.map(_blind_chunk, chunks))


def random_points(n: int, workers: int | None = None) -> bytes:
    """``n`` uniform points (fillers for empty slots; indistinguishable from α·H(x))."""
    w = _workers(workers)
    if w == 1 or n < PARALLEL_MIN:
        return _random_chunk(n)
    sizes = [min(_CHUNK, n - i) for i in range(0, n, _CHUNK)]
    with ProcessPoolExecutor(w, mp_context=_context()) as ex:
        return b"".join(ex.map(_random_chunk, sizes))


@dataclass(frozen=True)
class BuiltTable:
    seed: bytes
    n_slots: int
    slots: bytes
    attempts: int
    seconds_cuckoo: float
    seconds_points: float


def build_table(
    items: list[bytes], alpha: bytes, n_hash: int, eps: float, workers: int | None = None
) -> BuiltTable:
    """Assign items to slots (re-seeding on failure) and fill every slot with a point."""
    n_slots = _cuckoo.table_slots(len(items), eps, n_hash)
    t0 = time.perf_counter()
    seed, slot_map, attempts = _cuckoo.build_with_reseed(items, n_slots, n_hash)
    t1 = time.perf_counter()
    blinded = blind_items(items, alpha, workers)
    filled = slot_map >= 0
    n_empty = int((~filled).sum())
    fillers = random_points(n_empty, workers)
    out = bytearray(32 * n_slots)
    fi = 0
    for slot, idx in enumerate(slot_map.tolist()):
        if idx >= 0:
            out[32 * slot : 32 * slot + 32] = blinded[32 * idx : 32 * idx + 32]
        else:
            out[32 * slot : 32 * slot + 32] = fillers[32 * fi : 32 * fi + 32]
            fi += 1
    t2 = time.perf_counter()
    return BuiltTable(seed, n_slots, bytes(out), attempts, t1 - t0, t2 - t1)
