"""Scale-out: one party's set split over W processes, shard w paired with shard w of the peers.

Why processes and not threads: the circuit is numpy passes that hold the GIL between
calls and one party already saturates a core; W processes use W cores (or W hosts'
worth of ports). Each shard worker is a full ``PartyNode`` with its own authenticated
channels, listening on the party's channel port + w·step, and a configuration digest
that names (w, W), so shard w only ever pairs with shard w of the other parties.

Per query, the party's own process (shard 0) runs the input check first, so every
shard starts only on shares that all three parties accepted; it then hands its pair
of the client's bits to the workers over a local pipe, evaluates shard 0 itself, and
collects each worker's replicated share of P_w = Π_{k in shard w} f_k (in count
mode also of the shard's count c_w). The shares never leave the party. ``run_party``
multiplies the P_w into P with the same OR tree (and adds the c_w: a count is a sum),
then masks and opens once, so the learner's view and the wire formats do not depend
on W.

A run that a worker does not finish in time fails the query, and the worker is
replaced by a fresh process: answers carry the run id (a late one is skipped), and
a replaced worker cannot hold on to, or consume, frames of a later run.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import BlindmatchError, PartyError, PartyUnavailableError
from ..processes import worker_context
from ._circuit import SetColumns
from ._field import ELEMENT_BYTES, Vec, from_wire, to_wire
from ._party import ERRORS, PartyConfig, PartyNode, load_identity, pinned_key_reader

__all__ = ["ShardPool", "shard_bounds"]


def shard_bounds(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of near-equal size, shard 0 first."""
    return [(n * w // workers, n * (w + 1) // workers) for w in range(workers)]


@dataclass(frozen=True)
class _ShardSpec:
    state_dir: Path
    cfg: PartyConfig
    words: npt.NDArray[np.uint64]
    radius: int
    bits: int
    set_digest: bytes
    algo: str


def _signal_connected(node: PartyNode, connected: EventType) -> None:
    with contextlib.suppress(PartyError):
        for j in range(3):
            if j != node.i:
                node.channel(j, 24 * 3600.0)
        connected.set()


def _serve_shard(conn: Connection, spec: _ShardSpec, connected: EventType) -> None:
    """Worker process: a PartyNode for one shard, driven by (run id, xa, xb, count) over ``conn``.

    Every answer carries the run id it belongs to, so the party process can tell a
    late answer of an abandoned run from the one it waits for.
    """
    ident = load_identity(spec.state_dir, spec.cfg.index)
    cols = SetColumns.build(spec.words, spec.radius)
    digest = spec.cfg.digest(spec.set_digest, spec.algo, spec.radius)
    pinned = pinned_key_reader(spec.state_dir)
    node = PartyNode(ident, spec.cfg, cols, spec.bits, digest, pinned, follow=False)
    threading.Thread(target=_signal_connected, args=(node, connected), daemon=True).start()
    conn.send(("ready", b"", b"", 0))
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                return
            run_id, xa, xb, count = msg
            try:
                xa_v, xb_v = from_wire(xa, spec.bits), from_wire(xb, spec.bits)
                pa, pb = node.evaluate_shard(run_id, xa_v, xb_v, count)
                conn.send(("ok", run_id, to_wire(pa) + to_wire(pb), node.last_party_bytes))
            except BlindmatchError as e:
                conn.send((e.code, run_id, e.detail.encode(), node.last_party_bytes))
    except (EOFError, OSError):
        return
    finally:
        node.close()


@dataclass(eq=False)
class _Worker:
    """One shard worker process, its pipe and its "connected to the peer shards" event."""

    shard: int
    proc: mp.process.BaseProcess
    conn: Connection
    connected: EventType


class ShardPool:
    """The W − 1 worker processes of one party (shard 0 stays in the party's own process).

    A worker that does not answer a run in time (stuck, or too slow) or that exited is
    killed and started again before the query's error is raised: its peer shards see
    its channels close and reconnect to the new process, so no later run ever meets a
    worker still busy with, or holding frames of, an abandoned one.
    """

    def __init__(
        self,
        state_dir: Path,
        cfg: PartyConfig,
        words: npt.NDArray[np.uint64],
        radius: int,
        bits: int,
        set_digest: bytes,
        algo: str,
        start_timeout_s: float = 300.0,
    ) -> None:
        self._ctx = worker_context(__name__, "__main__")  # the parent runs threads: never a plain fork
        self.timeout_s = cfg.timeout_s
        self.last_party_bytes = 0
        self.restarts = 0
        self._restarting = threading.Lock()  # queries and manifest requests run on different threads
        self._elements = 1  # per share component in an answer: P, or (c, P) in count mode
        bounds = shard_bounds(len(words), cfg.workers)
        self._specs = {
            w: _ShardSpec(state_dir, cfg.for_shard(w), words[a:b].copy(), radius, bits, set_digest, algo)
            for w, (a, b) in enumerate(bounds)
            if w > 0
        }
        self._workers = [self._spawn(w) for w in self._specs]
        for worker in self._workers:
            try:
                ready = worker.conn.poll(start_timeout_s) and worker.conn.recv()[0] == "ready"
            except (EOFError, OSError):  # it exited: e.g. its channel port is taken
                ready = False
            if not ready:
                self.close()
                raise PartyUnavailableError(f"mpc shard worker {worker.shard} did not start")

    def _spawn(self, w: int) -> _Worker:
        here, there = self._ctx.Pipe()
        connected = self._ctx.Event()
        proc = self._ctx.Process(
            target=_serve_shard, args=(there, self._specs[w], connected), name=f"mpc-shard-{w}", daemon=True
        )
        proc.start()
        there.close()
        return _Worker(w, proc, here, connected)

    def _restart(self, worker: _Worker) -> _Worker:
        """Kill ``worker`` (whatever run it is in) and start a fresh process for its shard.

        Not waiting for the new one to be ready: its "ready" message carries no run id
        and is skipped by ``collect``; until it is connected, ``wait_connected`` fails.
        """
        with self._restarting:
            if worker not in self._workers:  # another thread replaced it already
                return next(w for w in self._workers if w.shard == worker.shard)
            worker.proc.kill()
            worker.proc.join(timeout=10.0)
            worker.conn.close()
            fresh = self._spawn(worker.shard)
            self._workers[self._workers.index(worker)] = fresh
            self.restarts += 1
            return fresh

    def wait_connected(self, wait_s: float) -> None:
        """Every worker is alive and has channels to its two peer shards (else ``PartyUnavailableError``).

        A worker that died since the last query is started again here, so the manifest
        (which waits for this) is not served while a shard cannot run.
        """
        deadline = time.monotonic() + wait_s
        for worker in list(self._workers):
            if not worker.proc.is_alive():
                worker = self._restart(worker)
            if not worker.connected.wait(max(0.0, deadline - time.monotonic())):
                raise PartyUnavailableError(f"shard {worker.shard} is not connected to its peer shards")

    def start(self, run_id: bytes, xa: Vec, xb: Vec, count: bool = False) -> None:
        """Hand this party's pair of the (checked) client bits to every worker."""
        msg = (run_id, to_wire(xa), to_wire(xb), count)
        self._elements = 2 if count else 1
        for worker in list(self._workers):
            try:
                worker.conn.send(msg)
            except OSError:  # it exited since the last run: a fresh one takes the run
                self._restart(worker).conn.send(msg)

    def _answer(self, worker: _Worker, run_id: bytes, deadline: float) -> tuple[str, bytes, int] | None:
        """The worker's answer to ``run_id`` (answers to other runs are skipped); None if none in time."""
        while True:
            try:
                if not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                    return None
                status, rid, data, sent = worker.conn.recv()
            except (EOFError, OSError):
                return None
            if rid == run_id:
                return status, data, sent

    def collect(self, run_id: bytes) -> list[tuple[Vec, Vec]]:
        """Each worker's replicated share of its shard's result, in shard order."""
        deadline = time.monotonic() + self.timeout_s + 5.0
        out: list[tuple[Vec, Vec]] = []
        failure: BlindmatchError | None = None
        total = 0
        for worker in list(self._workers):
            answer = self._answer(worker, run_id, deadline)
            if answer is None:
                self._restart(worker)
                failure = failure or PartyUnavailableError(f"mpc shard worker {worker.shard} did not answer")
                continue
            status, data, sent = answer
            total += sent
            if status != "ok":
                detail = f"shard {worker.shard}: {data.decode(errors='replace')}"
                failure = failure or ERRORS.get(status, PartyError)(detail)
            elif len(data) != 2 * self._elements * ELEMENT_BYTES:
                malformed = f"mpc shard worker {worker.shard} sent a malformed result"
                failure = failure or PartyUnavailableError(malformed)
            else:
                half = self._elements * ELEMENT_BYTES
                out.append((from_wire(data[:half], self._elements), from_wire(data[half:], self._elements)))
        self.last_party_bytes = total
        if failure is not None:
            raise failure
        return out

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.proc.join(timeout=5.0)
            if worker.proc.is_alive():
                worker.proc.terminate()
                worker.proc.join(timeout=5.0)
            if worker.proc.is_alive():  # e.g. stopped by the OS: SIGTERM waits, SIGKILL does not
                worker.proc.kill()
                worker.proc.join(timeout=5.0)
        for worker in self._workers:
            worker.conn.close()
