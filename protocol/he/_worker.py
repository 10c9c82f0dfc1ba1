"""Isolated evaluation for ``he``: untrusted SEAL bytes are only ever parsed in here.

Why a separate process: SEAL's deserialisers run C++ on attacker-chosen bytes
(zstd streams, key-switching key vectors). A hostile query could make them
allocate without bound or crash. Each worker is a separate process whose
initializer caps its address space with ``RLIMIT_AS``; the server waits with a
timeout. A worker that dies (segfault, SIGKILL, OOM) or overruns becomes a typed
``WorkerCrashedError`` / ``WorkerTimeoutError``, the pool is rebuilt, and the
server process itself never touches the bytes.

The same pool parallelises a query: the groups of N set entries are split across
workers, each of which computes the baby-step rotations once and then its groups.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import os
import resource
import signal
import struct
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BlindmatchError, DecodeError, InputError, ParameterError
from ..hazmat import ristretto
from ..hazmat.bfv import Bfv, EvalKeys, get_param_set
from ..processes import worker_context
from ._circuit import CircuitSpec, QueryEvaluator, uniform_mod
from ._errors import (
    KeysRejectedError,
    WorkerCrashedError,
    WorkerError,
    WorkerMemoryError,
    WorkerTimeoutError,
)
from ._heap import map_large_buffers, trim_heap
from ._messages import DOMAIN, KeysMessage

__all__ = ["GroupResult", "GroupTask", "Job", "JobResult", "WorkerPool", "psi_message"]

PSI_DST = DOMAIN + b"|psi"


def psi_message(sid: bytes, slot: int, value: int) -> bytes:
    """The string hashed to the group for slot j holding value v (both parties)."""
    return sid + struct.pack(">II", slot, value)


@dataclass(frozen=True)
class GroupTask:
    """Group g: ``entries[s]`` is the set row placed in slot s, or −1 for an empty slot."""

    index: int
    entries: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Job:
    param_set: str
    bits: int
    radius: int
    baby: int
    digest: bytes
    keys: bytes
    ciphertext: bytes
    groups: tuple[GroupTask, ...]
    server_learns: bool = False
    sid: bytes = b""
    psi_scalar: bytes = field(default=b"", repr=False)
    used_slots: int = 0
    cpu_limit_s: float = 0.0  # > 0: SIGXCPU ends the worker past this much CPU for the job


@dataclass
class GroupResult:
    index: int
    raw: npt.NDArray[np.uint64]
    elements: bytes


@dataclass
class JobResult:
    groups: list[GroupResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: tuple[str, str] | None = None


# ----------------------------------------------------------------- in the worker

_SET: npt.NDArray[np.uint8] | None = None
_BFV: dict[str, Bfv] = {}
_KEYS: dict[bytes, EvalKeys] = {}


def _init(set_path: str, memory_mb: int) -> None:
    """Worker initializer: cap the address space, map large buffers apart, map the set read-only."""
    map_large_buffers()
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    global _SET
    _SET = np.load(set_path, mmap_mode="r")


def _bfv(name: str) -> Bfv:
    if name not in _BFV:
        _BFV[name] = Bfv.create(get_param_set(name))
    return _BFV[name]


def _keys(bfv: Bfv, job: Job, spec: CircuitSpec) -> EvalKeys:
    """The job's deserialised keys; a worker holds one client's keys at a time.

    One, not more: SEAL keeps freed objects in its memory pool for reuse and never
    returns them to the system, so the most key sets ever held at once fixes the
    worker's size for good. Evicting before loading keeps that at one set (~35 MB at
    N = 16384) whatever the number of clients, at the price of a reload (~0.3 s) when
    consecutive jobs on a worker come from different clients.
    """
    got = _KEYS.get(job.digest)
    if got is None:
        if _KEYS:
            _KEYS.clear()
            trim_heap()
        msg = KeysMessage.from_bytes(job.keys)
        got = bfv.load_eval_keys(msg.public, msg.relin, msg.galois, spec.galois_steps)
        _KEYS[job.digest] = got
    return got


def _rows(entries: npt.NDArray[np.int64], bits: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    assert _SET is not None
    real = entries >= 0
    rows = np.zeros((entries.size, bits), dtype=np.uint8)
    if real.any():
        rows[real] = np.unpackbits(np.asarray(_SET[entries[real]]), axis=1)[:, :bits]
    return rows, real


def _near_memory_cap(headroom: int) -> bool:
    """True when this worker's address space peaked within ``headroom`` bytes of RLIMIT_AS.

    SEAL's loaders turn a failed allocation inside their stream into "I/O error",
    the same words as for a corrupt blob; a peak at the cap tells the two apart.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return False
    try:
        with open("/proc/self/status") as f:
            peak = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmPeak:")), 0)
    except OSError:
        return False
    return peak + headroom >= soft


def _evaluate(job: Job) -> JobResult:
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    bfv = _bfv(job.param_set)
    spec = CircuitSpec(job.bits, job.radius, job.baby)
    t0 = time.perf_counter()
    try:
        keys = _keys(bfv, job, spec)
    except DecodeError as e:
        if _near_memory_cap(2 * len(job.keys) + (16 << 20)):
            return JobResult(error=("memory", "worker memory limit reached while loading keys"))
        return JobResult(error=("keys", e.detail))
    query = bfv.load_ciphertext(job.ciphertext)
    load_s = time.perf_counter() - t0
    ev = QueryEvaluator(bfv, spec, keys, query)
    n, t = bfv.params.slots, bfv.params.plain_modulus
    out = JobResult()
    psi_s = 0.0
    for task in job.groups:
        if task.entries.shape != (n,):
            raise InputError("group layout has the wrong size")
        rows, real = _rows(task.entries, job.bits)
        rho = uniform_mod(n, t, 1)
        mask = uniform_mod(n, t) if job.server_learns else None
        raw = ev.evaluate_group(rows, real, rho, mask)
        elements = b""
        if mask is not None:
            t1 = time.perf_counter()
            first = task.index * n
            upto = max(0, min(n, job.used_slots - first))
            elements = b"".join(
                ristretto.scalar_mult(
                    job.psi_scalar,
                    ristretto.hash_to_group(psi_message(job.sid, first + s, int(mask[s])), PSI_DST),
                )
                for s in range(upto)
            )
            psi_s += time.perf_counter() - t1
        out.groups.append(GroupResult(task.index, raw, elements))
    out.timings = {
        **ev.timings.as_dict(),
        "load_s": load_s,
        "psi_s": psi_s,
        "wall_s": time.perf_counter() - t_wall,
        "cpu_s": time.process_time() - t_cpu,
    }
    return out


def _workers(ex: cf.ProcessPoolExecutor) -> dict[int, Any]:
    """pid -> process of the pool's workers (the executor keeps them privately; {} once shut down)."""
    procs: dict[int, Any] = getattr(ex, "_processes", None) or {}
    return procs


def _ended_by(proc: Any, sig: int) -> bool:
    """Whether a pool process has exited on signal ``sig``.

    The status comes from the forkserver helper, which a loaded machine may schedule late:
    a dead process's status is waited for up to 10 s (only on this, the broken-pool path).
    """
    with contextlib.suppress(AssertionError, OSError, ValueError):
        proc.join(timeout=10.0)
        return bool(proc.exitcode == -sig)
    return False


def _cpu_cap(seconds: float) -> None:
    """Second guard beside the server's wall-clock timeout: a spinning worker dies of SIGXCPU.

    Needed because SEAL, when an allocation fails under RLIMIT_AS, can spin instead
    of throwing (seen while inflating a key blob); the kernel then ends the process.
    The cap is at least a second beyond the wall-clock limit, which normally ends a
    job first; a job the cap ends is reported as the same timeout (``WorkerPool.run``).
    """
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if seconds <= 0:
        limit = hard
    else:
        used = resource.getrusage(resource.RUSAGE_SELF)
        limit = math.ceil(used.ru_utime + used.ru_stime + seconds) + 1
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))


def run_job(job: Job) -> JobResult:
    """Entry point in the worker; every failure comes back as data, not as a dead process."""
    _cpu_cap(job.cpu_limit_s)
    try:
        return _evaluate(job)
    except MemoryError:
        return JobResult(error=("memory", "worker memory limit reached"))
    except DecodeError as e:
        return JobResult(error=("decode", e.detail))
    except ParameterError as e:
        return JobResult(error=("parameters", e.detail))
    except BlindmatchError as e:
        return JobResult(error=("input", e.detail))
    except (RuntimeError, ValueError) as e:  # SEAL's std::exceptions on input it rejects
        return JobResult(error=("decode", f"{type(e).__name__}: {str(e)[:200]}"))
    except Exception as e:
        return JobResult(error=("internal", type(e).__name__))


def _probe_pid() -> int:
    return os.getpid()


# ----------------------------------------------------------------- in the server


class WorkerPool:
    """A restartable process pool with an address-space cap per worker."""

    def __init__(self, set_path: str, workers: int, memory_mb: int) -> None:
        if workers < 1:
            raise ParameterError("need at least one HE worker")
        self.set_path = set_path
        self.workers = workers
        self.memory_mb = memory_mb
        self._lock = threading.Lock()
        self._ex: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._ex is None:
                self._ex = cf.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=worker_context(__name__, "tenseal.sealapi", "__main__"),
                    initializer=_init,
                    initargs=(self.set_path, self.memory_mb),
                )
            return self._ex

    def pids(self) -> list[int]:
        """Process ids of the live workers (starting them if needed)."""
        ex = self._executor()
        for f in [ex.submit(_probe_pid) for _ in range(self.workers)]:
            f.result(timeout=120)
        return sorted(_workers(ex))

    def restart(self, wait: bool = False) -> None:
        """Kill every worker (a hung one included) and start afresh on next use.

        ``wait`` also joins the pool's manager thread, so nothing of it is left at exit.
        """
        with self._lock:
            ex, self._ex = self._ex, None
        if ex is None:
            return
        for p in list(_workers(ex).values()):
            with contextlib.suppress(OSError, AttributeError):
                p.kill()
        ex.shutdown(wait=wait, cancel_futures=True)

    def run(self, jobs: list[Job], timeout: float) -> list[JobResult]:
        """Run jobs in parallel; typed errors for crashes, overruns and bad inputs."""
        ex = self._executor()
        deadline = time.monotonic() + timeout
        overrun = f"HE evaluation exceeded {timeout:.0f} s"
        procs = dict(_workers(ex))  # a warm pool's workers
        try:
            futures = [ex.submit(run_job, j) for j in jobs]
            procs |= _workers(ex)
            results = [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
        except cf.TimeoutError:
            self.restart()
            raise WorkerTimeoutError(overrun) from None
        except (BrokenProcessPool, cf.CancelledError, RuntimeError):
            self.restart()
            if any(_ended_by(p, signal.SIGXCPU) for p in procs.values()):  # its CPU cap: the same overrun
                raise WorkerTimeoutError(overrun) from None
            raise WorkerCrashedError("HE worker died during evaluation") from None
        for r in results:
            if r.error is not None:
                kind, detail = r.error
                if kind == "memory":
                    raise WorkerMemoryError(detail)
                if kind == "keys":
                    raise KeysRejectedError(detail)
                if kind == "decode":
                    raise DecodeError(detail)
                if kind == "parameters":
                    raise ParameterError(detail)
                if kind == "internal":
                    raise WorkerError(f"HE worker failed ({detail})")
                raise InputError(detail)
        return results

    def close(self) -> None:
        self.restart(wait=True)
