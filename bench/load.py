"""load: a real uvicorn server on loopback, driven from another process.

Why record-and-replay: request bodies are produced by the protocols' own client
halves (against an in-process copy of the same server state, so keys and tables
agree) and then replayed by the driver process. The driver therefore costs
almost nothing per request, and what is measured is the server: throughput,
p50/p99 latency, errors (which must be 0), RSS before and after, and server CPU
per request (the whole uvicorn process tree, read with psutil).

Single-use bodies (tpsi vouchers, whose ids make replays idempotent no-ops) are
each sent once; the run stops when they run out, and says so.

Past saturation the server must queue or answer 429/503 with Retry-After, never
crash; the ``saturation`` rows check exactly that.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from blindmatch.protocol import (
    REGISTRY,
    LocalTransport,
    Transport,
    TransportReply,
    get_algo,
)

from .context import BenchContext, Metric, make_row
from .hooks import LoadScenario, base_protocol, load_scenarios, server_options, with_variants
from .loaddriver import read_bodies, write_bodies
from .micro import ensure_group_prims, group_ops
from .protocols import build_set, make_queries
from .timing import Stat, measure

__all__ = ["RecordingTransport", "record_bodies", "run_driver", "run_load_suite", "server_tree_stats"]

WARMUP = 3
HIGH_RATE = {"BLINDMATCH_RATE_PER_SECOND": "1000000000", "BLINDMATCH_RATE_BURST": "1000000000"}


def _tag(label: str) -> int:
    return zlib.crc32(label.encode()) % 100_000


class RecordingTransport(Transport):
    """Forwards to an inner transport and keeps the POST bodies sent to ``path``."""

    def __init__(self, inner: Transport, path: str) -> None:
        super().__init__()
        self.inner = inner
        self.path = path
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        if method == "POST" and path == self.path:
            self.bodies.append(body)
            self.headers.append({k.lower(): v for k, v in (headers or {}).items()})
        rep = self.inner.request(method, path, body, headers)
        self.bytes_up, self.bytes_down = self.inner.bytes_up, self.inner.bytes_down
        return rep


def server_tree_stats(pid: int) -> dict[str, float]:
    """RSS (bytes) and CPU seconds of a process and all its descendants."""
    import psutil

    rss, cpu, procs = 0.0, 0.0, 0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {"rss_bytes": 0.0, "cpu_s": 0.0, "processes": 0}
    for p in tree:
        try:
            rss += p.memory_info().rss
            t = p.cpu_times()
            cpu += t.user + t.system
            procs += 1
        except psutil.Error:
            continue
    return {"rss_bytes": rss, "cpu_s": cpu, "processes": procs}


def record_bodies(
    ctx: BenchContext, sc: LoadScenario, set_dir: Path, count: int, time_cap_s: float
) -> tuple[list[bytes], dict[str, str]]:
    """Run the real client half in-process and keep the request bodies it sends."""
    from blindmatch.server import SetDir

    proto = REGISTRY[sc.protocol]
    sd = SetDir.open(set_dir)
    sopts = server_options(sc.variant or sc.protocol)
    server = proto.open_server(sd.hashes, sd.state_dir(sc.protocol), sopts)
    try:
        rec = RecordingTransport(LocalTransport(server, client_id="bench-recorder"), sc.path)
        cache = set_dir.parent / f"client-cache-{_tag(sc.label)}"
        client = proto.new_client(sd.algo, cache, sc.client_options)
        queries = make_queries(ctx.seed, sd.hashes, count, sc.member_rate, tag=_tag(sc.label) % 1000)
        t0 = time.perf_counter()
        if sc.use_scan_many:
            k = sc.use_scan_many
            extra = make_queries(
                ctx.seed, sd.hashes, count * k, sc.member_rate, tag=_tag(sc.label) % 1000 + 1
            )
            for b in range(count):
                batch = [replace(q, account=f"bench-load-{b % 16}") for q, _ in extra[b * k : (b + 1) * k]]
                client.scan_many(batch, rec)
                if len(rec.bodies) >= count or time.perf_counter() - t0 > time_cap_s:
                    break
        else:
            for q, _ in queries:
                client.scan(q, rec)
                if len(rec.bodies) >= count or time.perf_counter() - t0 > time_cap_s:
                    break
    finally:
        server.close()
    if not rec.bodies:
        raise RuntimeError(f"{sc.label}: the client sent no POST to {sc.path!r}")
    hdrs = {k: v for k, v in rec.headers[0].items() if k not in ("content-length", "x-blindmatch-client")}
    return rec.bodies, hdrs


def run_driver(ctx: BenchContext, spec: dict[str, Any], tag: str) -> dict[str, Any]:
    """Run the load driver in a child process and return its JSON report."""
    d = ctx.workdir / "load-specs"
    d.mkdir(parents=True, exist_ok=True)
    spec_p, out_p = d / f"{tag}.spec.json", d / f"{tag}.out.json"
    spec_p.write_text(json.dumps(spec))
    out_p.unlink(missing_ok=True)
    hard = float(spec["duration_s"]) + float(spec.get("timeout_s", 30.0)) + 60.0
    r = subprocess.run(  # noqa: S603 - our own module, fixed argv
        [sys.executable, "-m", "blindmatch.bench.loaddriver", str(spec_p), str(out_p)],
        capture_output=True,
        text=True,
        timeout=hard,
        check=False,
    )
    if r.returncode != 0 or not out_p.exists():
        raise RuntimeError(f"load driver failed ({r.returncode}): {r.stderr[-1500:]}")
    out: dict[str, Any] = json.loads(out_p.read_text())
    return out


def _prepare_state(ctx: BenchContext, name: str, base_set: Path) -> tuple[Path, Path]:
    """Two identical copies of a set dir with initialised state: A served, B for recording."""
    from blindmatch.server import SetDir

    root = ctx.workdir / f"load-{name}"
    shutil.rmtree(root, ignore_errors=True)
    a, b = root / "served", root / "recorder"
    shutil.copytree(base_set, a)
    sd = SetDir.open(a)
    proto = base_protocol(name)
    srv = REGISTRY[proto].open_server(sd.hashes, sd.state_dir(proto), server_options(name))
    srv.close()
    shutil.copytree(a, b)
    return a, b


def _refusals(res: dict[str, Any], kind: str) -> tuple[int, int]:
    """Errors and 429/503 refusals of one run: refusals count as errors only where the kind forbids them."""
    non_ok = {k: v for k, v in res["status_counts"].items() if not k.startswith("2")}
    limited = sum(v for k, v in non_ok.items() if k in ("429", "503"))
    other = sum(v for k, v in non_ok.items() if k not in ("429", "503")) + sum(
        res["transport_errors"].values()
    )
    # at throughput settings nothing may be refused; past saturation refusals are allowed,
    # but only with Retry-After
    errors = other + (limited if kind.startswith("throughput") else res["retry_after_missing"])
    return errors, limited


def _load_metrics(
    sc: LoadScenario, res: dict[str, Any], before: dict[str, float], after: dict[str, float], errors: int
) -> dict[str, Metric]:
    """Throughput, latency and server CPU per request/item; CPU per item is what prices capacity."""
    lat = res["latency_s"]
    answered = sum(res["status_counts"].values())
    cpu_per_req = (after["cpu_s"] - before["cpu_s"]) / answered if answered else None
    metrics: dict[str, Metric] = {
        "throughput_rps": Metric(
            Stat(res["throughput_rps"], res["throughput_rps"], res["throughput_rps"], 1, "req/s")
        ),
        "items_per_s": Metric(Stat(*(res["throughput_rps"] * sc.batch,) * 3, 1, "items/s")),
        "errors": Metric(Stat(float(errors), float(errors), float(errors), 1, "count")),
        "rss_before": Metric(Stat(before["rss_bytes"], before["rss_bytes"], before["rss_bytes"], 1, "B")),
        "rss_after": Metric(Stat(after["rss_bytes"], after["rss_bytes"], after["rss_bytes"], 1, "B")),
    }
    if lat["n"]:
        metrics["latency"] = Metric(
            Stat(lat["p50"], lat["min"], lat["max"], lat["n"], "s"), note="median is p50; see p99"
        )
        metrics["latency_p99"] = Metric(Stat(lat["p99"], lat["p99"], lat["p99"], lat["n"], "s"))
    if cpu_per_req is not None:
        metrics["server_cpu_per_request"] = Metric(Stat(cpu_per_req, cpu_per_req, cpu_per_req, 1, "s"))
        metrics["server_cpu_per_item"] = Metric(Stat(*(cpu_per_req / sc.batch,) * 3, 1, "s"))
        if cpu_per_req > 0:
            # capacity of one fully used server core: items per server CPU-second
            cap = sc.batch / cpu_per_req
            metrics["items_per_server_core_s"] = Metric(
                Stat(cap, cap, cap, 1, "items/s"),
                note="items per second of server CPU (uvicorn process tree), HTTP included",
            )
    return metrics


def _row_from(
    ctx: BenchContext,
    sc: LoadScenario,
    workers: int,
    res: dict[str, Any],
    before: dict[str, float],
    after: dict[str, float],
    alive: bool,
    kind: str,
    n: int,
    rate_env: Mapping[str, str],
    extra_note: str | None = None,
) -> dict[str, Any]:
    errors, limited = _refusals(res, kind)
    metrics = _load_metrics(sc, res, before, after, errors)
    notes = [extra_note] if extra_note else []
    if res.get("exhausted"):
        notes.append(f"stopped when the {res['bodies_available']} single-use bodies ran out")
    if not alive:
        notes.append("SERVER DID NOT SURVIVE")
    return make_row(
        "load",
        sc.protocol,
        f"{sc.label}, {workers} worker(s), {kind}",
        metrics,
        {
            "workers": workers,
            "kind": kind,
            "concurrency": res["concurrency"],
            "duration_s": res["duration_s"],
            "requests": res["requests"],
            "status_counts": res["status_counts"],
            "transport_errors": res["transport_errors"],
            "error_samples": res["error_samples"],
            "retry_after_missing": res["retry_after_missing"],
            "retry_after_values": res["retry_after_values"][:5],
            "refused_429_503": limited,
            "batch": sc.batch,
            "set_size": n,
            "server_alive_after": alive,
            "rate_env": dict(rate_env),
            "driver": {
                "engine": res.get("engine"),
                "cpu_share": res.get("driver_cpu_share"),
                "tcp_quickack": res.get("quickack"),
            },
            "protocol": sc.protocol,
            "variant": sc.variant,
            "server_env": dict(sc.server_env),
            "path": sc.path,
        },
        status="ok" if alive else "failed",
        reason="; ".join(notes) or None,
    )


def _run_one(
    ctx: BenchContext,
    sc: LoadScenario,
    served: Path,
    bodies_file: Path,
    n_bodies: int,
    headers: dict[str, str],
    workers: int,
    concurrency: int,
    duration: float,
    env: Mapping[str, str],
    kind: str,
    shared_client: str | None,
    n: int,
    note: str | None = None,
    quickack: bool = True,
) -> dict[str, Any]:
    from blindmatch.server import LiveServer

    log = ctx.workdir / f"load-{sc.variant or sc.protocol}" / f"server-{workers}.log"
    server_env = {"BLINDMATCH_PROTOCOLS": sc.protocol, **sc.server_env, **env}
    with LiveServer(served, env=server_env, workers=workers, log_file=log) as srv:
        assert srv.proc is not None
        # warm-up: a few requests so lazy imports and caches are not billed to the run
        warm = read_bodies(bodies_file)[:WARMUP]
        with httpx.Client(timeout=60) as c:
            for body in warm:
                c.post(
                    f"{srv.url}/v1/{sc.protocol}/{sc.path}",
                    content=body,
                    headers={
                        **headers,
                        "content-type": "application/octet-stream",
                        "x-blindmatch-client": "bench-warmup",
                    },
                )
            time.sleep(0.2 if ctx.quick else 0.5)
            probe = _keepalive_probe(c, srv.url)
        raw_before = _raw_scalar_mult_s()
        add_before = _raw_point_add_s()
        before = server_tree_stats(srv.proc.pid)
        spec = {
            "url": srv.url,
            "path": f"/v1/{sc.protocol}/{sc.path}",
            "method": "POST",
            "bodies_file": str(bodies_file),
            "concurrency": concurrency,
            "duration_s": duration,
            "max_requests": n_bodies if sc.unique else 10**9,
            "unique": sc.unique,
            "offset": WARMUP if sc.unique else 0,
            "client_id": shared_client,
            "client_id_prefix": f"bench-{sc.protocol}",
            "headers": headers,
            "timeout_s": 30.0,
            "quickack": quickack,
        }
        ctx.log(f"load: driver start ({kind}, {workers} worker(s))")
        res = run_driver(ctx, spec, f"{sc.protocol}-{_tag(sc.label)}-{workers}-{kind}")
        ctx.log(f"load: driver done: {res['requests']} requests in {res['duration_s']:.1f} s")
        after = server_tree_stats(srv.proc.pid)
        alive = srv.proc.poll() is None
        if alive:
            try:
                alive = httpx.get(srv.url + "/healthz", timeout=10).status_code == 200
            except httpx.HTTPError:
                alive = False
    row = _row_from(ctx, sc, workers, res, before, after, alive, kind, n, env, note)
    row["params"]["keepalive_get_ms_median"] = probe
    # the raw libsodium rate next to this run (before it and after it, server idle), so the
    # HTTP/raw comparison is not skewed by load that came and went since the micro suite
    row["params"]["raw_scalar_mult_s"] = [raw_before, _raw_scalar_mult_s()]
    # and a point addition, for the VOPRF ceiling 1 ÷ (2·mult + add) per element
    row["params"]["raw_point_add_s"] = [add_before, _raw_point_add_s()]
    return row


def _raw_scalar_mult_s() -> float:
    """Median seconds of one ristretto255 scalar multiplication, measured now (~0.3 s)."""
    return measure(group_ops()["r255.scalar_mult"], repeats=5, min_time=0.04).median


def _raw_point_add_s() -> float:
    """Median seconds of one ristretto255 point addition, measured now (~0.2 s)."""
    return measure(group_ops()["r255.add"], repeats=5, min_time=0.02).median


def _keepalive_probe(c: httpx.Client, url: str, count: int = 9) -> float:
    """Median latency of sequential keep-alive GET /healthz (ms).

    A value near 40 ms means Nagle's algorithm is on for the server's sockets
    (uvicorn issue #3149: with --workers N the accepted sockets lose TCP_NODELAY,
    so each response waits for the client's delayed ACK).
    """
    lat = []
    for _ in range(count):
        t0 = time.perf_counter()
        c.get(url + "/healthz")
        lat.append((time.perf_counter() - t0) * 1000)
    return sorted(lat)[len(lat) // 2]


@dataclass(frozen=True)
class _Run:
    workers: int
    concurrency: int
    env: Mapping[str, str]
    kind: str
    shared_client: str | None = None
    note: str | None = None
    quickack: bool = True
    share: float = 1.0  # fraction of the per-run single-use item budget


_DELAYED_ACK_NOTE = (
    "client without TCP_QUICKACK, like an ordinary HTTP client, against 2 workers: plain "
    "`uvicorn --workers 2` leaves Nagle on (Kludex/uvicorn#3149) and each response would wait "
    "~40 ms for the delayed ACK; blindmatch.server.run re-wraps the listener so it does not"
)


def _runs_for(ctx: BenchContext, sc: LoadScenario, si: int, conc: int) -> list[_Run]:
    """Throughput at 1 and 2 workers; only a protocol's first scenario adds the delayed-ACK and
    saturation runs, so those run once per protocol."""
    hc = 16 if ctx.quick else 128
    # the driver stands in for a trusted proxy that names each client in a header
    low = {
        "BLINDMATCH_RATE_PER_SECOND": "20",
        "BLINDMATCH_RATE_BURST": "20",
        "BLINDMATCH_TRUSTED_PROXIES": "127.0.0.1",
    }
    runs = [_Run(1, conc, HIGH_RATE, "throughput"), _Run(2, conc, HIGH_RATE, "throughput")]
    if si == 0:
        runs += [
            _Run(
                2,
                conc,
                HIGH_RATE,
                "throughput-delayed-ack",
                note=_DELAYED_ACK_NOTE,
                quickack=False,
                share=0.25,
            ),
            _Run(
                1,
                hc,
                HIGH_RATE,
                "saturation-queueing",
                note=f"concurrency {hc} against 1 worker, rate limit off: requests queue",
                share=0.5,
            ),
            _Run(
                1,
                conc * 2,
                low,
                "saturation-rate-limited",
                f"bench-{sc.protocol}-single",
                "one client id against a 20 req/s bucket: expect 429 + Retry-After",
            ),
        ]
    return runs


def _body_shares(ctx: BenchContext, sc: LoadScenario, runs: list[_Run], duration: float) -> list[int]:
    """Bodies each run needs: single-use bodies are split by share, reusable ones replayed round-robin."""
    if sc.unique:
        items = 100 if ctx.quick else int(min(3000, max(400, 300 * duration)))
        shares = [
            (
                64
                if r.kind == "saturation-rate-limited"
                else max(40 if sc.batch > 1 else 4, int(items * r.share) // sc.batch)
            )
            + WARMUP
            for r in runs
        ]
    else:
        shares = [16 if ctx.quick else 64] * len(runs)
    return shares


def _run_scenario(
    ctx: BenchContext,
    sc: LoadScenario,
    si: int,
    served: Path,
    recorder: Path,
    n: int,
    duration: float,
    conc: int,
) -> None:
    """Throughput at 1 and 2 workers; for a protocol's first scenario also the two-worker run
    with an ordinary client ACK and the two saturation runs.

    Reusable bodies are recorded once (a few dozen, replayed round-robin). Single-use
    bodies are recorded once for all runs and split between them; a run that uses up
    its share stops early and says so, its throughput taken over the time it ran.
    """
    runs = _runs_for(ctx, sc, si, conc)
    shares = _body_shares(ctx, sc, runs, duration)
    total = sum(shares) if sc.unique else shares[0]
    ctx.log(f"load: {sc.label}: recording {total} request bodies with the real client")
    bodies, headers = record_bodies(ctx, sc, recorder, total, time_cap_s=10.0 if ctx.quick else 90.0)
    if sc.unique and len(bodies) < total:  # time cap hit: share what we have proportionally
        shares = [max(1, s * len(bodies) // total) for s in shares]
    start = 0
    for k, r in enumerate(runs):
        if sc.unique:
            part, start = bodies[start : start + shares[k]], start + shares[k]
        else:
            part = bodies
        bf = ctx.workdir / f"load-{sc.variant or sc.protocol}" / f"bodies-{si}-{k}.bin"
        write_bodies(bf, part)
        ctx.log(
            f"load: {sc.label}, {r.workers} worker(s), {r.kind}, "
            f"concurrency {r.concurrency}, {duration:.0f} s"
        )
        # past the rate limit most requests are refused (and store nothing), so single-use
        # bodies may be replayed there: accepted replays are idempotent and the run is about
        # the 429s, not throughput
        run_sc = replace(sc, unique=False) if r.kind == "saturation-rate-limited" else sc
        ctx.add(
            _run_one(
                ctx,
                run_sc,
                served,
                bf,
                len(part),
                headers,
                r.workers,
                r.concurrency,
                duration,
                r.env,
                r.kind,
                r.shared_client,
                n,
                note=r.note,
                quickack=r.quickack,
            )
        )


def run_load_suite(ctx: BenchContext, n: int | None = None) -> None:
    """Throughput with 1 and 2 workers, then saturation, for every protocol with scenarios."""
    ensure_group_prims(ctx)
    algo = get_algo("pdq")
    n = n or (1_000 if ctx.quick else 10_000)
    base = build_set(ctx, n, algo)
    duration = min(2.0, ctx.load_seconds) if ctx.quick else ctx.load_seconds
    conc = 4 if ctx.quick else 8
    for name in with_variants(ctx.protocol_names()):
        scenarios = load_scenarios(name)
        if not scenarios:
            ctx.add(
                make_row(
                    "load",
                    name,
                    f"{name} load",
                    status="skipped",
                    reason="no load scenario for this protocol (per-query cost is measured in 'protocols')",
                )
            )
            continue
        if ctx.quick:
            scenarios = scenarios[:2]
        try:
            served, recorder = _prepare_state(ctx, name, base)
        except Exception as e:
            ctx.record_error("load", name, e)
            ctx.add(make_row("load", name, f"{name} load", status="failed", reason=repr(e)[:500]))
            continue
        for si, sc in enumerate(scenarios):
            try:
                _run_scenario(ctx, sc, si, served, recorder, n, duration, conc)
            except Exception as e:
                ctx.record_error("load", sc.label, e)
                ctx.add(make_row("load", name, sc.label, status="failed", reason=repr(e)[:500]))
