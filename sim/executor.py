"""Where the image work runs: this process, a local process pool, or a Dask cluster.

Why results cannot depend on the executor: every task is a pure function of its
arguments (seed, image indices, configuration), draws its randomness from a
``SeedSequence`` keyed by those indices, and results are reassembled in task
order. Scheduling, worker count and machine therefore change only wall time.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "make_executor"]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    name: str

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], done: Callable[[int], None] | None = None
    ) -> list[R]:
        """Apply ``fn`` to each item; results in item order; ``done(i)`` after each finishes."""

    def close(self) -> None: ...


class LocalExecutor:
    """A process pool (``spawn``: no inherited threads or sockets), or in-process when workers=0."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.name = f"local process pool ({workers} workers)" if workers else "in-process"
        self._pool: ProcessPoolExecutor | None = None

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], done: Callable[[int], None] | None = None
    ) -> list[R]:
        if not items:
            return []
        if self.workers == 0 or len(items) == 1:
            out = []
            for i, it in enumerate(items):
                out.append(fn(it))
                if done:
                    done(i)
            return out
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        futs = {self._pool.submit(fn, it): i for i, it in enumerate(items)}
        results: dict[int, R] = {}
        for f in as_completed(futs):
            i = futs[f]
            results[i] = f.result()
            if done:
                done(i)
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Fans tasks out over an existing ``distributed`` scheduler (workers need blindmatch)."""

    def __init__(self, address: Any) -> None:
        from distributed import Client

        self._client = address if isinstance(address, Client) else Client(address)  # type: ignore[no-untyped-call]
        self._own = not isinstance(address, Client)
        self.name = f"dask {getattr(self._client.scheduler, 'address', '?')}"

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], done: Callable[[int], None] | None = None
    ) -> list[R]:
        from distributed import as_completed as d_as_completed

        if not items:
            return []
        futs = [self._client.submit(fn, it, pure=False) for it in items]
        index = {f.key: i for i, f in enumerate(futs)}
        results: dict[int, R] = {}
        for f in d_as_completed(futs):  # type: ignore[no-untyped-call]
            i = index[f.key]
            results[i] = f.result()
            if done:
                done(i)
        return [results[i] for i in range(len(items))]

    def close(self) -> None:
        if self._own:
            self._client.close()  # type: ignore[no-untyped-call]


def make_executor(workers: int, dask: Any | None = None) -> Executor:
    return DaskExecutor(dask) if dask else LocalExecutor(workers)
