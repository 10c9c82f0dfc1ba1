"""mpc: the three parties as separate processes on loopback, against a reference and the floor.

Why its own suite: ``protocols`` runs server halves in-process, but the point of
``mpc`` is three processes that exchange megabytes per query, so here each party
is a real ``blindmatch.server.run`` process (as ``blindmatch mpc up`` starts them)
and the client is the real client over HTTP. Reported per set size:

* wall time per query (what a user waits), the three parties' CPU per query, the
  client's CPU and bytes up+down;
* party-to-party bytes (party 0's, the three are symmetric) next to their bound:
  (1 squaring + ⌈(r+1)/2⌉ − 1 products + 1 OR product) per entry × 2 bytes × entries;
* the floor, measured in the same run: one pass over the packed set's columns plus
  that many blockwise field multiplications per entry, for three parties on the
  machine's cores, and the ratio of the wall time to it;
* a reference protocol at 10^6 (``hooks.OWN_SUITE_REFERENCE``, he: one measured steady
  query; minutes of BFV work each).

Every size is measured with W = 1 and W = 2 processes per party (``--mpc-workers``):
the parties' CPU includes their shard workers (child processes). Count mode
(``output="count"``: 16 Fermat multiplications per entry more, next to the OR tree)
gets its own row at W = 1, its counts checked against the clear.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from blindmatch.protocol import HashSet, Query, get_algo, get_protocol
from blindmatch.protocol.hamming import popcount64
from blindmatch.server.testing import LiveParties

from .context import BenchContext, Metric, make_row
from .hooks import OWN_SUITE_REFERENCE
from .protocols import build_set, make_queries
from .timing import Stat, descendants, proc_cpu, stat

__all__ = ["mpc_floor_seconds", "run_mpc_suite"]


class Parties(LiveParties):
    """The three party processes for one set directory, with their CPU time."""

    def __init__(self, set_dir: Path, log_dir: Path, workers: int = 1, shared_set: bool = False) -> None:
        env = {"BLINDMATCH_MPC_SET_SHARING": "shared"} if shared_set else None
        super().__init__(set_dir, env=env, startup_timeout=900.0, workers=workers, log_dir=log_dir)

    def cpu(self) -> float:
        """CPU seconds of the three parties and their shard workers (and the workers' helper)."""
        pids = [p.pid for p in self.procs]
        pids += [c for p in self.procs for c in descendants(p.pid)]
        return sum(proc_cpu(pid) for pid in pids)


def mults_per_entry(radius: int, count: bool = False, shared_set: bool = False) -> int:
    """Squaring + product tree over the paired roots + the OR tree's one product per entry
    (count mode: + the Fermat power's multiplications instead of the OR product; a shared
    set: + the one re-shared inner product of the distance)."""
    from blindmatch.protocol.mpc._circuit import FERMAT_MULS, roots

    return 1 + (len(roots(radius)) - 1) + 1 + (FERMAT_MULS if count else 0) + int(shared_set)


def _count_within(hashes: HashSet, q: Query, radius: int) -> int:
    words = hashes.words
    d = popcount64(words ^ q.hash.words()).sum(axis=1, dtype=np.int64)
    return int((d <= radius).sum())


def _share_scan_seconds(n: int, bits: int = 256, rows: int = 1 << 13) -> float:
    """CPU s of one pass over a party's n × 2·bits uint16 share matrix (scaled from one block)."""
    block = np.random.default_rng(1).integers(0, 8191, (min(n, rows), 2 * bits)).astype(np.uint16)
    t0 = time.process_time()
    for _ in range(5):
        block.sum(axis=1, dtype=np.uint32)
    return float((time.process_time() - t0) / 5 * n / block.shape[0])


def mpc_floor_seconds(
    n: int, radius: int, repeats: int = 3, workers: int = 1, count: bool = False, shared_set: bool = False
) -> tuple[float, float, float]:
    """(scan, multiplications) CPU s of one party, measured now; and the 3-party wall floor here.

    With a shared set the scan is one pass over the party's share matrix (1 KiB per
    entry for PDQ) instead of the pass over the packed set (32 B per entry).
    """
    from blindmatch.protocol.mpc._circuit import local_product
    from blindmatch.protocol.mpc._field import P

    rng = np.random.default_rng(0)
    cols = rng.integers(0, 65536, (16, n), dtype=np.uint16)
    a, b, c, d, z = (rng.integers(0, P, n).astype(np.uint32) for _ in range(5))
    scans, mults = [], []
    for _ in range(repeats):  # CPU time: on a shared machine wall time would measure the others too
        t0 = time.process_time()
        cols.sum(axis=0, dtype=np.uint32)
        scans.append(time.process_time() - t0)
        t0 = time.process_time()
        local_product(a, b, c, d, z)
        mults.append(time.process_time() - t0)
    scan = _share_scan_seconds(n) if shared_set else float(np.median(scans))
    mult = float(np.median(mults)) * mults_per_entry(radius, count, shared_set)
    cores = max(1, len(os.sched_getaffinity(0)))
    return scan, mult, 3 * (scan + mult) / min(3 * workers, cores)


def _measure(
    ctx: BenchContext, n: int, queries: int, workers: int = 1, count: bool = False, shared_set: bool = False
) -> dict[str, Any]:
    algo = get_algo("pdq")
    set_dir = build_set(ctx, n, algo)
    from blindmatch.client import HttpTransport
    from blindmatch.protocol.mpc import share_set
    from blindmatch.server import SetDir

    sd = SetDir.open(set_dir)
    hashes = sd.hashes
    if shared_set:  # as `mpc up --shared-set`: the three share files in the one state dir
        share_set(hashes, sd.state_dir("mpc"))
    t0 = time.monotonic()
    parties = Parties(set_dir, ctx.workdir, workers, shared_set).start()
    startup = time.monotonic() - t0
    try:
        client = get_protocol("mpc").new_client(algo, options={"output": "count"} if count else None)
        transport = HttpTransport(parties.url, "mpc", timeout=600)
        client.scan(Query(hashes.value(0)), transport)  # manifest download, warm channels
        walls, cpus, client_ms, up, down, p2p, correct = [], [], [], [], [], [], 0
        for q, member in make_queries(ctx.seed, hashes, queries, tag=7):
            c0, t0 = parties.cpu(), time.perf_counter()
            r = client.scan(q, transport)
            walls.append(time.perf_counter() - t0)
            cpus.append(parties.cpu() - c0)
            client_ms.append(r.crypto_ms)
            up.append(r.bytes_up)
            down.append(r.bytes_down)
            p2p.append(r.extra["party0_bytes"])
            right = r.matched == member
            if count:
                want = _count_within(hashes, q, algo.default_threshold)
                right = r.count == want % 8191 and r.matched == (want > 0)
            correct += int(right)
        transport.close()
    finally:
        parties.stop()
    return {
        "n": n,
        "startup_s": startup,
        "wall": walls,
        "cpu": cpus,
        "client_ms": client_ms,
        "up": up,
        "down": down,
        "p2p": p2p,
        "correct": correct,
        "queries": queries,
    }


REFERENCE = OWN_SUITE_REFERENCE["mpc"]


def _reference_wall(ctx: BenchContext, sizes: list[int]) -> Stat | None:
    """The reference protocol's wall time for one steady query at its set size."""
    from .protocols import measure_cell

    ref = REFERENCE
    wanted = ctx.protocols is None or ref.protocol in ctx.protocols
    if ctx.quick or not wanted or ref.set_size not in sizes:
        return None
    repeats, ctx.repeats = ctx.repeats, 1  # one set-up and one steady query
    try:
        cell = measure_cell(ctx, ref.protocol, ref.set_size, max_queries=1)
    except Exception as e:  # reported, the mpc rows still stand
        ctx.record_error("mpc", f"{ref.protocol} reference", e)
        return None
    finally:
        ctx.repeats = repeats
    return Stat.from_dict(cell["metrics"]["query_wall_s"])


WORKERS = (1, 2)
SIZES = (10**5, 10**6, 10**7)
SHARED_SET_MAX = 10**6  # a shared set costs each party 4 B per bit and entry (2 GiB at 10^7)


def run_mpc_suite(ctx: BenchContext) -> None:
    if ctx.protocols is not None and "mpc" not in ctx.protocols:
        return
    sizes = [10**4] if ctx.quick else [n for n in SIZES if not ctx.sizes or n <= max(ctx.sizes) * 10]
    radius = get_algo("pdq").default_threshold
    ref_wall = _reference_wall(ctx, sizes)
    for n in sizes:
        for workers in WORKERS:
            _measure_row(ctx, n, radius, workers, ref_wall)
        _measure_row(ctx, n, radius, 1, None, count=True)
        if n <= SHARED_SET_MAX:
            _measure_row(ctx, n, radius, 1, None, shared_set=True)


def _measure_row(
    ctx: BenchContext,
    n: int,
    radius: int,
    workers: int,
    ref_wall: Stat | None,
    count: bool = False,
    shared_set: bool = False,
) -> None:
    what = (" count mode" if count else "") + (" shared set" if shared_set else "")
    ctx.log(f"mpc n={n} W={workers}{what}: three party processes on loopback, {workers} process(es) each")
    m = _measure(ctx, n, max(2, ctx.repeats), workers, count, shared_set)
    scan_s, mult_s, floor_s = mpc_floor_seconds(
        n, radius, workers=workers, count=count, shared_set=shared_set
    )
    wall = stat(m["wall"], "s")
    mults = mults_per_entry(radius, count, shared_set)
    bound_p2p = mults * 2 * n
    metrics = {
        "query_wall": Metric(
            wall,
            floor_s,
            f"3 parties × (packed-set scan + field mults) ÷ min({3 * workers} processes, cores)",
            note=f"scan {scan_s * 1e3:.1f} ms + mults {mult_s * 1e3:.1f} ms CPU per party",
        ),
        "party_cpu": Metric(
            stat(m["cpu"], "s"), 3 * (scan_s + mult_s), "3 parties × (packed-set scan + field mults), CPU"
        ),
        "client_cpu": Metric(stat(m["client_ms"], "ms")),
        "client_bytes": Metric(stat([u + d for u, d in zip(m["up"], m["down"], strict=True)], "B")),
        "party_bytes": Metric(
            stat(m["p2p"], "B"),
            float(bound_p2p),
            f"{mults} mults/entry × 2 B × {n} entries (party 0)",
        ),
    }
    if ref_wall is not None and n == REFERENCE.set_size:
        metrics[REFERENCE.metric] = Metric(
            ref_wall,
            note=f"{REFERENCE.protocol} at 10^{REFERENCE.decade}, one steady query in this run; "
            f"{REFERENCE.protocol} ÷ mpc = {ref_wall.median / wall.median:.0f}×",
        )
    ctx.add(
        make_row(
            "mpc",
            "mpc",
            f"mpc n={n}"
            + ("" if workers == 1 else f" W={workers}")
            + (" count" if count else "")
            + (" shared-set" if shared_set else ""),
            metrics,
            params={
                "n": n,
                "workers": workers,
                "output": "count" if count else "any",
                "set_sharing": "shared" if shared_set else "clear",
                "radius": radius,
                "queries": m["queries"],
                "correct": m["correct"],
                "startup_s": round(m["startup_s"], 1),
            },
        )
    )
