"""Fault and load drills against a real uvicorn server: SIGKILL cycles and a soak.

Why here and not only in tests: the same drills produce the measured table of
``python -m blindmatch.reliability`` (RELIABILITY.md); the tests
run them short, the command runs them long.

Kill drill (tpsi). Uploaders send voucher batches continuously over HTTP; the
server is SIGKILLed at a random moment, restarted, and so on. Afterwards the
SQLite store is read directly: every voucher whose upload got HTTP 200 must be
present with the digest of the bytes that were sent; no stored voucher may be
unknown, inconsistent (opened but without its inner layer) or part of a batch of
which only some vouchers were stored. Caveat: SIGKILL does not drop the OS page
cache, so this checks that the server acknowledges only after commit, not power
loss (that is SQLite's ``synchronous=FULL`` guarantee).

Soak. Client threads scan members and non-members over HTTP for a fixed time against
one or more servers at once (``SoakLoad``: its protocols, clients dealt round-robin over
them, its set size; he, whose cost grows with the set, gets its own small set); it
reports scans, error counts by status, latency percentiles overall and per protocol,
and the RSS of the servers' whole process trees (he evaluates in worker processes)
after warm-up and at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import sqlite3
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blindmatch.client import HttpTransport, ServerError
from blindmatch.protocol import REGISTRY, BlindmatchError, HashSet, TransportReply
from blindmatch.server import LiveServer, SetDir

from blindmatch.corpus import random_set

from .harness import LIVE_ENV, client_options, queries

__all__ = ["SOAK_LOADS", "KillReport", "RecordingHttp", "SoakLoad", "SoakReport", "kill_cycles", "rss_mb",
           "soak", "tree_rss_mb"]


class RecordingHttp(HttpTransport):
    """HttpTransport that logs (path, request body, status, response body) of every POST."""

    def __init__(self, *a: Any, log: list[tuple[str, bytes, int, bytes]], **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.log = log

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        try:
            rep = super().request(method, path, body, headers)
        except ServerError as e:
            if method == "POST":
                self.log.append((path, body, e.http_status, b""))
            raise
        if method == "POST":
            self.log.append((path, body, rep.status, rep.body))
        return rep


def rss_mb(pid: int) -> float:
    """Resident set size of a process (Linux /proc), MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(root: int) -> float:
    """Resident set size of ``root`` and all its live descendants, MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = (entry / "stat").read_text()
                children.setdefault(int(raw[raw.rfind(")") + 2 :].split()[1]), []).append(int(entry.name))
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        with contextlib.suppress(OSError):
            total += rss_mb(pid)
        stack.extend(children.get(pid, []))
    return total


# ------------------------------------------------------------------ kill drill

@dataclass
class KillReport:
    cycles: int = 0
    batches_sent: int = 0
    batches_acked: int = 0
    vouchers_acked: int = 0
    vouchers_stored: int = 0
    lost_acked: list[str] = field(default_factory=list)
    unknown_stored: list[str] = field(default_factory=list)
    digest_mismatch: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    partial_batches: int = 0
    integrity: str = ""
    account_counts_ok: bool = True
    restart_seconds: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.lost_acked and not self.unknown_stored and not self.digest_mismatch
            and not self.inconsistent and self.partial_batches == 0 and self.integrity == "ok"
            and self.account_counts_ok and self.batches_acked > 0
        )


def _audit_uploads(
    log: list[tuple[str, bytes, int, bytes]], rep: KillReport
) -> tuple[dict[bytes, bytes], list[list[bytes]], set[bytes]]:
    """What the clients sent and what the server acknowledged, read back from the wire log."""
    from blindmatch.protocol.tpsi import UploadBatch, UploadReply

    sent: dict[bytes, bytes] = {}
    batches: list[list[bytes]] = []
    acked: set[bytes] = set()
    for path, body, status, reply in log:
        if path != "vouchers":
            continue
        rep.batches_sent += 1
        try:
            vouchers = UploadBatch.from_bytes(body, 1 << 20).parsed()
        except BlindmatchError:
            continue
        vids = []
        for v in vouchers:
            sent[v.vid] = hashlib.sha256(v.to_bytes()).digest()
            vids.append(v.vid)
        batches.append(vids)
        if status == 200:
            rep.batches_acked += 1
            acked.update(UploadReply.from_bytes(reply).acked)
    rep.vouchers_acked = len(acked)
    return sent, batches, acked


def _audit_store(
    db_path: Path, rep: KillReport, sent: dict[bytes, bytes], batches: list[list[bytes]], acked: set[bytes]
) -> None:
    """Compare the database after the kills with the wire log: nothing acked lost, nothing torn."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rep.integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        rows = db.execute("SELECT vid, account, digest, status, inner FROM vouchers").fetchall()
        per_acct = dict(db.execute("SELECT account, opened FROM accounts").fetchall())
    finally:
        db.close()
    stored = {bytes(v): (a, bytes(d), int(s), i) for v, a, d, s, i in rows}
    rep.vouchers_stored = len(stored)
    rep.lost_acked = sorted(v.hex() for v in acked if v not in stored)
    for vid, (_a, digest, status, inner) in stored.items():
        if vid not in sent:
            rep.unknown_stored.append(vid.hex())
        elif sent[vid] != digest:
            rep.digest_mismatch.append(vid.hex())
        if (status == 1) != (inner is not None and len(inner) > 0):
            rep.inconsistent.append(vid.hex())
    rep.partial_batches = sum(1 for b in batches if 0 < sum(v in stored for v in b) < len(b))
    opened: dict[str, int] = {}
    for a, _d, s, _i in stored.values():
        opened[a] = opened.get(a, 0) + (s != 0)
    rep.account_counts_ok = all(per_acct.get(a, 0) == n for a, n in opened.items())


def kill_cycles(
    work: Path, cycles: int = 3, seed: int = 1, uploaders: int = 2, batch: int = 6,
    min_alive: float = 0.4, max_alive: float = 2.5,
) -> KillReport:
    """SIGKILL a tpsi server ``cycles`` times while vouchers are being uploaded; then audit."""
    from blindmatch.protocol.tpsi import DB_NAME

    rng = random.Random(seed)  # noqa: S311 — kill timing, not cryptography
    hs = random_set(64, seed=seed)
    sd = SetDir.build(work / "set", hs.algo, hs.values(), ["kill-drill"])
    env = {**LIVE_ENV, "BLINDMATCH_PROTOCOLS": "tpsi", "BLINDMATCH_RATE_PER_SECOND": "100000",
           "BLINDMATCH_RATE_BURST": "100000"}
    log: list[tuple[str, bytes, int, bytes]] = []
    lock = threading.Lock()
    rep = KillReport()
    proto = REGISTRY["tpsi"]

    def uploader(url: str, k: int, stop: threading.Event, cyc: int) -> None:
        client = proto.new_client(hs.algo, work / f"cache{k}", client_options(proto.name))
        local: list[tuple[str, bytes, int, bytes]] = []
        tr = RecordingHttp(url, "tpsi", client_id=f"up{k}", log=local, timeout=30)
        n = 0
        try:
            while not stop.is_set():
                qs = queries(hs, batch // 2, batch - batch // 2, seed=1000 * cyc + 100 * k + n,
                             account=f"acct{k}")
                n += 1
                try:
                    client.scan_many(qs, tr)
                except BlindmatchError:
                    time.sleep(0.05)  # the server is gone (killed) or restarting
        finally:
            tr.close()
            with lock:
                log.extend(local)

    for cyc in range(cycles):
        t0 = time.monotonic()
        srv = LiveServer(sd.path, env=env).start()
        rep.restart_seconds.append(time.monotonic() - t0)
        stop = threading.Event()
        threads = [threading.Thread(target=uploader, args=(srv.url, k, stop, cyc)) for k in range(uploaders)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(min_alive, max_alive))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(timeout=60)
        rep.cycles += 1

    # a clean start after the last kill (recovery), then a clean stop
    with LiveServer(sd.path, env=env):
        pass

    sent, batches, acked = _audit_uploads(log, rep)
    _audit_store(sd.state_dir("tpsi") / DB_NAME, rep, sent, batches, acked)
    return rep


# ------------------------------------------------------------------ soak

@dataclass(frozen=True)
class SoakLoad:
    """One server of the soak: the protocols it serves, its clients (dealt round-robin), its set."""

    protocols: tuple[str, ...]
    clients: int
    set_size: int = 256


# The release soak: 64 clients over the three lightweight protocols, and he, whose server
# cost grows with the set, beside them on its own small set.
SOAK_LOADS = (SoakLoad(("plain", "oprf", "tpsi"), 64, 256), SoakLoad(("he",), 2, 32))


@dataclass
class SoakReport:
    protocols: list[str]
    seconds: float | None  # None: a fixed number of scans per client instead
    clients: int
    loads: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    scans: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    per_protocol: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(n for k, n in self.errors.items() if k.startswith("5") or k == "transport")

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_start_mb


def _percentiles(v: list[float]) -> dict[str, float]:
    v = sorted(v)
    return {"scans": len(v), "p50_ms": statistics.median(v), "p99_ms": v[min(len(v) - 1, int(0.99 * len(v)))],
            "max_ms": v[-1]}


def soak(
    work: Path, loads: Sequence[SoakLoad] = SOAK_LOADS, seconds: float | None = 20.0, warmup: float = 3.0,
    seed: int = 3, scans_per_client: int | None = None,
) -> SoakReport:
    """Real clients scan members and non-members over HTTP for ``seconds`` (or, given
    ``scans_per_client``, until each has made that many measured scans), every load at once.

    Counts every non-2xx and every client-side error. A protocol that is not registered is
    left out; RSS is the sum over the servers' process trees, after warm-up and at the end.
    """
    loads = [SoakLoad(tuple(p for p in ld.protocols if p in REGISTRY), ld.clients, ld.set_size)
             for ld in loads]
    loads = [ld for ld in loads if ld.protocols]
    names = [p for ld in loads for p in ld.protocols]
    rep = SoakReport(names, seconds, sum(ld.clients for ld in loads), [asdict(ld) for ld in loads])
    lat: dict[str, list[float]] = {n: [] for n in names}
    lock = threading.Lock()

    def worker(url: str, hs: HashSet, name: str, k: int, until: float, record: bool) -> None:
        client = REGISTRY[name].new_client(hs.algo, work / f"cache-{name}-{k}", client_options(name))
        tr = HttpTransport(url, name, client_id=f"soak-{name}-{k}", timeout=120)
        i = 0
        limit = scans_per_client if record and scans_per_client is not None else math.inf
        try:
            while time.monotonic() < until and i < limit:
                q = queries(hs, 1, 1, seed=seed * 100000 + k * 1000 + i, account=f"soak{k}")[i % 2]
                i += 1
                t0 = time.perf_counter()
                key = None
                try:
                    client.scan(q, tr)
                except ServerError as e:
                    key = "transport" if e.http_status == 0 else str(e.http_status)
                except BlindmatchError as e:
                    key = f"client:{e.code}"
                except Exception as e:  # counted as an error, never a silently dead client thread
                    key = f"crash:{type(e).__name__}"
                dt = (time.perf_counter() - t0) * 1000
                if record:
                    with lock:
                        rep.scans += 1
                        lat[name].append(dt)
                        if key:
                            rep.errors[key] = rep.errors.get(key, 0) + 1
        finally:
            tr.close()

    def run_all(servers: list[tuple[LiveServer, HashSet, SoakLoad]], until: float, record: bool) -> None:
        threads = [threading.Thread(target=worker, args=(srv.url, hs, ld.protocols[k % len(ld.protocols)],
                                                         k, until, record))
                   for srv, hs, ld in servers for k in range(ld.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def rss(servers: list[tuple[LiveServer, HashSet, SoakLoad]], key: str) -> float:
        for (srv, _, _), row in zip(servers, rep.loads, strict=True):
            row[key] = tree_rss_mb(srv.proc.pid) if srv.proc is not None else 0.0
        return float(sum(row[key] for row in rep.loads))

    with contextlib.ExitStack() as stack:
        servers = _start_soak_servers(stack, work, loads, seed)
        # warm-up: first downloads, caches and allocator growth are not "growth"
        run_all(servers, time.monotonic() + warmup, False)
        rep.rss_start_mb = rss(servers, "rss_start_mb")
        run_all(servers, math.inf if seconds is None else time.monotonic() + seconds, True)
        with contextlib.suppress(OSError):
            rep.rss_end_mb = rss(servers, "rss_end_mb")
    _summarise_latency(rep, lat)
    return rep


def _start_soak_servers(
    stack: contextlib.ExitStack, work: Path, loads: Sequence[SoakLoad], seed: int
) -> list[tuple[LiveServer, HashSet, SoakLoad]]:
    """One live server per load on its own random set; rate limits lifted so the soak measures the server."""
    servers = []
    for j, ld in enumerate(loads):
        hs = random_set(ld.set_size, seed=seed + j)
        sd = SetDir.build(work / f"set{j}", hs.algo, hs.values(), ["soak"])
        env = {**LIVE_ENV, "BLINDMATCH_PROTOCOLS": ",".join(ld.protocols),
               "BLINDMATCH_RATE_PER_SECOND": "1000000", "BLINDMATCH_RATE_BURST": "1000000"}
        servers.append((stack.enter_context(LiveServer(sd.path, env=env)), hs, ld))
    return servers


def _summarise_latency(rep: SoakReport, lat: dict[str, list[float]]) -> None:
    """Overall and per-protocol latency percentiles from the measured (post-warm-up) scans."""
    every = [x for v in lat.values() for x in v]
    if every:
        overall = _percentiles(every)
        rep.p50_ms, rep.p99_ms, rep.max_ms = overall["p50_ms"], overall["p99_ms"], overall["max_ms"]
    rep.per_protocol = {n: _percentiles(v) for n, v in lat.items() if v}
    rep.requests = rep.scans
