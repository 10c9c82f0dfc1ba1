"""Cost of one protocol variant, measured with the real implementation.

Two transports, two views of the server:

* in process (``LocalTransport``): the protocol's own server work per query,
  as CPU time of the handler (thread CPU, plus any worker processes the server
  half spawned), its set-up time, and the bytes each message carries;
* a real uvicorn server on loopback (``LiveServer`` + ``HttpTransport``): CPU
  time of the whole server process tree per query, read from /proc before and
  after the batch, so HTTP parsing and framework overhead are included.

Client figures: ``crypto_ms`` as the protocol reports it (``ScanResult``),
client process CPU per query, bytes up/down (message bodies, as both transports
count them), requests (round trips) per query, and the one-time download seen on
the first query (manifest, filter, table or keys) against the protocol's own
prediction ``Protocol.download_bytes``.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from blindmatch.client import Scanner, get_algo, hash_bytes
from blindmatch.protocol import BlindmatchError, HashAlgo, Protocol
from PIL import Image

from blindmatch.corpus import generate_image

from ..decide.accuracy import QueryPool
from ..decide.database import build_set_dir
from ..decide.variants import Variant
from ..machine import tree_cpu_seconds
from ..stats import percentiles
from ..verify.checks import sim_queries
from ..verify.oracle import MeteredTransport, Session, SimQuery, http_session, local_session

__all__ = ["cost_queries", "hash_cost_12mp", "measure_protocol", "measure_variant"]

_KEEP = 400  # per-query samples kept for the latency model


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"mean": float("nan"), "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    return {"mean": float(a.mean()), **percentiles(a)}


def _scan_image(scanner: Scanner, q: SimQuery, variant: Variant, algo: HashAlgo, ad: bytes) -> float:
    """One image as the variant sends it (8 scans for a dihedral variant); its crypto time."""
    return sum(scanner.scan_one(s.to_item(algo, ad)).crypto_ms for s in q.scans(variant))


def _variant_header(sess: Session, variant: Variant, algo: HashAlgo) -> dict[str, Any]:
    """What identifies the run and its one-time setup cost, known before any query."""
    return {
        "protocol": variant.protocol,
        "variant": variant.label,
        "transport": sess.kind,
        "set_size": len(sess.set_dir.hashes),
        "setup_s": sess.setup_s,
        "setup_cpu_s": sess.setup_cpu_s if sess.kind == "local" else None,
        "setup_bytes": sess.server.setup_bytes() if sess.server is not None else None,
        "predicted_download_bytes": int(sess.proto.download_bytes(len(sess.set_dir.hashes), algo)),
    }


def measure_variant(
    sess: Session,
    variant: Variant,
    algo: HashAlgo,
    queries: list[SimQuery],
    account: str,
    cache_dir: Path,
    min_queries: int,
    max_queries: int,
    budget_s: float,
) -> dict[str, Any]:
    """Cold first query, then steady-state queries until the budget or the cap."""
    out = _variant_header(sess, variant, algo)
    try:
        with closing(sess.transport(account)) as tr:
            scanner = sess.scanner(tr, variant, algo, account, cache_dir, strict=True)
            out["cold"] = _cold_query(scanner, tr, queries[0], variant, algo)
            wall, crypto, client_cpu, server_ms, up, down, reqs = [], [], [], [], [], [], []
            pid = sess.pid
            me = os.getpid()
            srv0 = tree_cpu_seconds(pid) if pid else tree_cpu_seconds(me, include_root=False)
            start = time.perf_counter()
            i = 0
            while i < max_queries and (i < min_queries or time.perf_counter() - start < budget_s):
                q = queries[(i + 1) % len(queries)]
                u0, d0, n0, h0 = tr.bytes_up, tr.bytes_down, tr.requests, tr.handler_cpu_s
                t0, c0 = time.perf_counter(), time.process_time()
                crypto_ms = _scan_image(scanner, q, variant, algo, f"bmsim-cost-{i}".encode())
                c1, t1 = time.process_time(), time.perf_counter()
                h = tr.handler_cpu_s - h0
                wall.append((t1 - t0) * 1000)
                crypto.append(crypto_ms)
                client_cpu.append((c1 - c0 - h) * 1000)
                server_ms.append(h * 1000)
                up.append(tr.bytes_up - u0)
                down.append(tr.bytes_down - d0)
                reqs.append(tr.requests - n0)
                i += 1
            elapsed = time.perf_counter() - start
            srv1 = tree_cpu_seconds(pid) if pid else tree_cpu_seconds(me, include_root=False)
        n = len(wall)
        if sess.kind == "local":
            server_cpu = (sum(server_ms) + (srv1 - srv0) * 1000) / n  # handler + spawned workers
        else:
            server_cpu = (srv1 - srv0) * 1000 / n
        steady_down = float(np.median(down))
        out.update(
            {
                "status": "ok",
                "queries": n,
                "elapsed_s": elapsed,
                "wall_ms": _summary(wall),
                "crypto_ms": _summary(crypto),
                "client_cpu_ms": _summary(client_cpu),
                "server_cpu_ms": server_cpu,
                "server_cpu_resolution_ms": (1000.0 / os.sysconf("SC_CLK_TCK")) / n
                if sess.kind == "http"
                else None,
                "bytes_up": float(np.mean(up)),
                "bytes_down": float(np.mean(down)),
                "requests": float(np.mean(reqs)),
                "one_time_download_bytes": max(0, int(out["cold"]["bytes_down"] - steady_down)),
                "samples": {
                    "crypto_ms": [round(x, 4) for x in crypto[:_KEEP]],
                    "server_ms": [round(x, 4) for x in server_ms[:_KEEP]] if sess.kind == "local" else [],
                    "wall_ms": [round(x, 4) for x in wall[:_KEEP]],
                },
            }
        )
    except BlindmatchError as e:
        out.update({"status": f"error: {e.code}: {e.detail}"})
    return out


def _cold_query(
    scanner: Scanner, tr: MeteredTransport, q: SimQuery, variant: Variant, algo: HashAlgo
) -> dict[str, Any]:
    """The first image, which pays the one-time download."""
    t0, c0 = time.perf_counter(), time.process_time()
    crypto_ms = _scan_image(scanner, q, variant, algo, b"bmsim-cost-cold")
    return {
        "wall_ms": (time.perf_counter() - t0) * 1000,
        "client_cpu_ms": (time.process_time() - c0) * 1000,
        "bytes_up": tr.bytes_up,
        "bytes_down": tr.bytes_down,
        "requests": tr.requests,
        "crypto_ms": crypto_ms,
    }


def hash_cost_12mp(algos: list[str], reps: int, seed: int) -> dict[str, dict[str, Any]]:
    """Hashing a 12-megapixel JPEG file (decode + downscale + hash), as a phone photo costs."""
    base = generate_image(seed, (1000, 750)).resize((4000, 3000), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    base.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    out: dict[str, dict[str, Any]] = {}
    for a in algos:
        times: list[float] = []
        for _ in range(max(1, reps)):
            c0 = time.process_time()
            hash_bytes(data, a)
            times.append((time.process_time() - c0) * 1000)
        out[a] = {
            "mean": float(np.mean(times)),
            "min": float(np.min(times)),
            "file_bytes": len(data),
            "samples": [round(t, 3) for t in times],
        }
    return out


def cost_queries(pool: QueryPool, pert_names: list[str], n: int = 40) -> list[SimQuery]:
    """A fixed mix for cost runs: JPEG-70 copies of known images and unrelated ones, alternating."""
    pi = pert_names.index("jpeg-70") if "jpeg-70" in pert_names else 0
    pos = [int(i) for i in np.flatnonzero(pool.is_pos & (pool.pert_of == pi) & ~pool.gated)][: n // 2]
    neg = [int(i) for i in pool.negatives if not pool.gated[i]][: n - len(pos)]
    order = [x for pair in itertools.zip_longest(pos, neg) for x in pair if x is not None]
    return sim_queries(pool, order, dihedral=pool.dih_raw is not None)


def _predict(hist: list[tuple[int, float, float]], size: int) -> tuple[float, float]:
    """Set-up and per-query seconds at ``size``: set-up proportional to the set; per query from a
    straight line through the last two sizes (proportional when only one was measured), never
    below the last measurement."""
    s1, setup1, q1 = hist[-1]
    setup = setup1 * size / s1
    if len(hist) >= 2:
        s0, _, q0 = hist[-2]
        slope = max(0.0, (q1 - q0) / (s1 - s0)) if s1 != s0 else 0.0
        return setup, max(q1, q1 + slope * (size - s1))
    return setup, q1 * size / s1


def _skip_reason(
    c: dict[str, Any], hist: list[tuple[int, float, float]], size: int, scans: int, room: int
) -> str | None:
    """Why a cell is not measured: predicted set-up or per-image time too long, or no such set."""
    if size > room:
        return "skipped: set size larger than the generated database"
    if not hist:
        return None
    setup_pred, scan_pred = _predict(hist, size)
    if setup_pred > float(c["setup_timeout_s"]):
        return f"skipped: predicted set-up {setup_pred:.0f} s > {c['setup_timeout_s']} s"
    if scan_pred * scans > float(c["max_query_s"]):
        return f"skipped: predicted {scan_pred * scans:.1f} s per image > {c['max_query_s']} s"
    return None


def _cell_stub(proto: Protocol, v: Variant, kind: str, size: int, status: str) -> dict[str, Any]:
    return {"protocol": proto.name, "variant": v.label, "transport": kind, "set_size": size, "status": status}


def measure_protocol(
    proto: Protocol,
    variants: list[Variant],
    pool: QueryPool,
    queries: list[SimQuery],
    cfg: dict[str, Any],
    workdir: Path,
    algo_name: str,
    done: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Cost cells for every variant, set size and transport on hash ``algo_name``; slow protocols
    (and the slow variants of a protocol, such as its 8-scan dihedral one) stop early."""
    c = cfg["cost"]
    algo = get_algo(algo_name)
    variants = [v for v in variants if v.runs_on(algo.name)]
    if not variants or not queries:
        return []
    sizes = sorted({int(s) for s in c["sizes"]} | {int(s) for s in c["http_sizes"]})
    wanted = {"local": {int(s) for s in c["sizes"]}, "http": {int(s) for s in c["http_sizes"]}}
    if proto.server_processes > 1:  # its in-process session is loopback HTTP too: each size once
        wanted = {"local": set(), "http": set(sizes)}
    cells: list[dict[str, Any]] = []
    history: dict[str, list[tuple[int, float, float]]] = {}  # transport -> [(size, setup s, worst scan s)]
    room = len(pool.known_rows) + len(pool.filler)
    for size in sizes:
        for kind in ("local", "http"):
            if size not in wanted[kind]:
                continue
            hist = history.get(kind, [])
            why = {v.label: _skip_reason(c, hist, size, v.scans_per_image, room) for v in variants}
            cells.extend(
                _cell_stub(proto, v, kind, size, why[v.label] or "") for v in variants if why[v.label]
            )
            run = [v for v in variants if why[v.label] is None]
            if run:
                cells.extend(_measure_size(proto, run, algo, pool, queries, c, workdir, size, kind, history))
            if done:
                done()
    return [{**cell, "algo": algo.name} for cell in cells]


def _measure_size(
    proto: Protocol,
    variants: list[Variant],
    algo: HashAlgo,
    pool: QueryPool,
    queries: list[SimQuery],
    c: dict[str, Any],
    workdir: Path,
    size: int,
    kind: str,
    history: dict[str, list[tuple[int, float, float]]],
) -> list[dict[str, Any]]:
    """One server (in process or on loopback) at one set size, every variant measured against it."""
    base = workdir / re.sub(r"[^a-z0-9]+", "-", proto.name.lower()) / f"{size}" / kind
    shutil.rmtree(base, ignore_errors=True)
    cells: list[dict[str, Any]] = []
    try:
        sd = build_set_dir(base / "set", algo, pool.rows(size), f"simulator cost set ({kind})")
        ctx = (
            local_session(proto, sd, variants[0])
            if kind == "local"
            else http_session(proto, sd, variants[0], float(c["setup_timeout_s"]), base / "server.log")
        )
        with ctx as sess:
            worst = 0.0
            for v in variants:
                cell = measure_variant(
                    sess,
                    v,
                    algo,
                    queries,
                    f"bmsim-cost-{v.label}-{kind}".replace(" ", "-"),
                    base / "client" / re.sub(r"[^a-z0-9]+", "-", v.label.lower()),
                    int(c["min_queries"]),
                    int(c["max_queries"]),
                    float(c["budget_s"]),
                )
                cells.append(cell)
                if cell.get("status") == "ok":
                    worst = max(worst, cell["wall_ms"]["mean"] / 1000 / v.scans_per_image)
            history.setdefault(kind, []).append((size, sess.setup_s, worst))
    except (BlindmatchError, RuntimeError, OSError, ValueError) as e:
        status = f"error: {type(e).__name__}: {e}"[:500]
        cells = [_cell_stub(proto, v, kind, size, status) for v in variants]
    return cells
