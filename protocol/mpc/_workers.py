"""Scale-out: one party's set split over W processes, shard w paired with shard w of the peers.

Why processes and not threads: the circuit is numpy passes that hold the GIL between
calls and one party already saturates a core; W processes use W cores (or W hosts'
worth of ports). Each shard worker is a full ``PartyNode`` with its own authenticated
channels, listening on the party's channel port + w·step, and a configuration digest
that names (w, W), so shard w only ever pairs with shard w of the other parties.

Per query, the party's own process (shard 0) runs the input check first, so every
shard starts only on shares that all three parties accepted; it then hands its pair
of the client's bits to the workers over a local pipe, evaluates shard 0 itself, and
collects each worker's replicated share of P_w = Π_{k in shard w} f_k. The shares
never leave the party. ``run_party`` multiplies them into P with the same OR tree,
then masks and opens once, so the learner's view and the wire formats do not depend
on W.
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
    """Worker process: a PartyNode for one shard, driven by (run id, xa, xb) over ``conn``."""
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
            run_id, xa, xb = msg
            try:
                pa, pb = node.evaluate_shard(run_id, from_wire(xa, spec.bits), from_wire(xb, spec.bits))
                conn.send(("ok", run_id, to_wire(pa) + to_wire(pb), node.last_party_bytes))
            except BlindmatchError as e:
                conn.send((e.code, run_id, e.detail.encode(), node.last_party_bytes))
    except (EOFError, OSError):
        return
    finally:
        node.close()


class ShardPool:
    """The W − 1 worker processes of one party (shard 0 stays in the party's own process)."""

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
        ctx = mp.get_context("spawn")  # the parent runs threads (uvicorn, channels): never fork
        self.timeout_s = cfg.timeout_s
        self.last_party_bytes = 0
        self._conns: list[Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        self._connected: list[EventType] = []
        bounds = shard_bounds(len(words), cfg.workers)
        for w in range(1, cfg.workers):
            start, stop = bounds[w]
            spec = _ShardSpec(
                state_dir, cfg.for_shard(w), words[start:stop].copy(), radius, bits, set_digest, algo
            )
            here, there = ctx.Pipe()
            connected = ctx.Event()
            proc = ctx.Process(
                target=_serve_shard, args=(there, spec, connected), name=f"mpc-shard-{w}", daemon=True
            )
            self._connected.append(connected)
            proc.start()
            there.close()
            self._conns.append(here)
            self._procs.append(proc)
        for w, conn in enumerate(self._conns, start=1):
            try:
                ready = conn.poll(start_timeout_s) and conn.recv()[0] == "ready"
            except (EOFError, OSError):  # it exited: e.g. its channel port is taken
                ready = False
            if not ready:
                self.close()
                raise PartyUnavailableError(f"mpc shard worker {w} did not start")

    def wait_connected(self, wait_s: float) -> None:
        """Every worker has channels to its two peer shards (else ``PartyUnavailableError``)."""
        deadline = time.monotonic() + wait_s
        for w, ev in enumerate(self._connected, start=1):
            if not ev.wait(max(0.0, deadline - time.monotonic())):
                raise PartyUnavailableError(f"shard {w} is not connected to its peer shards")

    def start(self, run_id: bytes, xa: Vec, xb: Vec) -> None:
        """Hand this party's pair of the (checked) client bits to every worker."""
        for conn in self._conns:
            conn.send((run_id, to_wire(xa), to_wire(xb)))

    def collect(self, run_id: bytes) -> list[tuple[Vec, Vec]]:
        """Each worker's replicated share of its shard's product, in shard order."""
        out, failure, total = [], None, 0
        for w, conn in enumerate(self._conns, start=1):
            while True:
                if not conn.poll(self.timeout_s + 5.0):
                    raise PartyUnavailableError(f"mpc shard worker {w} did not answer")
                try:
                    status, rid, data, sent = conn.recv()
                except (EOFError, OSError):
                    raise PartyUnavailableError(f"mpc shard worker {w} exited") from None
                if rid == run_id:
                    break  # answers of an earlier, aborted run are skipped
            total += sent
            if status != "ok":
                detail = f"shard {w}: {data.decode(errors='replace')}"
                failure = failure or ERRORS.get(status, PartyError)(detail)
                continue
            if len(data) != 2 * ELEMENT_BYTES:
                raise PartyUnavailableError(f"mpc shard worker {w} sent a malformed result")
            out.append((from_wire(data[:ELEMENT_BYTES], 1), from_wire(data[ELEMENT_BYTES:], 1)))
        self.last_party_bytes = total
        if failure is not None:
            raise failure
        return out

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5.0)
        for conn in self._conns:
            conn.close()

