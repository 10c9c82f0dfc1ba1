"""Load driver, run as its own process: ``python -m blindmatch.bench.loaddriver SPEC OUT``.

Why a separate process: the server's CPU and the clients' CPU must not share a
GIL, or the measured throughput is the driver's, not the server's. The driver
only replays pre-recorded request bodies (made by the real client halves), so
its own per-request work is a few microseconds of httpx.

Safety: it talks to loopback addresses only, stops by itself at the first of
``duration_s`` or ``max_requests`` (or when single-use bodies run out), and has
a hard deadline on top of that.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["LOOPBACK", "read_bodies", "run_load", "write_bodies"]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_LEN = struct.Struct(">I")


def write_bodies(path: Path, bodies: list[bytes]) -> None:
    """u32 length-prefixed bodies, one file."""
    with open(path, "wb") as f:
        for b in bodies:
            f.write(_LEN.pack(len(b)))
            f.write(b)


def read_bodies(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out: list[bytes] = []
    i = 0
    while i < len(data):
        if i + 4 > len(data):
            raise ValueError("truncated bodies file")
        (n,) = _LEN.unpack_from(data, i)
        i += 4
        if i + n > len(data):
            raise ValueError("truncated bodies file")
        out.append(data[i : i + n])
        i += n
    return out


def _percentile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[k]


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    url = spec["url"].rstrip("/") + spec["path"]
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing non-loopback target {host!r}")
    bodies = read_bodies(Path(spec["bodies_file"])) if spec.get("bodies_file") else [b""]
    if not bodies:
        raise SystemExit("no request bodies")
    method = spec.get("method", "POST")
    conc = int(spec["concurrency"])
    duration = float(spec["duration_s"])
    max_requests = int(spec.get("max_requests", 10**9))
    unique = bool(spec.get("unique", False))
    offset = int(spec.get("offset", 0))  # bodies already used (e.g. by a warm-up)
    if unique:
        max_requests = min(max_requests, len(bodies) - offset)
    shared_id = spec.get("client_id")
    prefix = spec.get("client_id_prefix", "load")
    base_headers = {"content-type": "application/octet-stream", **spec.get("headers", {})}

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    retry_after_missing = 0
    retry_after_values: list[str] = []
    errors: dict[str, int] = {}
    error_samples: list[str] = []
    counter = {"next": 0}
    start = time.monotonic()
    deadline = start + duration

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=float(spec.get("timeout_s", 30.0)), limits=limits) as client:

        async def worker(wid: int) -> None:
            nonlocal retry_after_missing
            headers = {**base_headers, "x-blindmatch-client": shared_id or f"{prefix}-{wid}"}
            while time.monotonic() < deadline:
                i = counter["next"]
                if i >= max_requests:
                    return
                counter["next"] = i + 1
                body = bodies[(offset + i) % len(bodies)]
                t0 = time.perf_counter()
                try:
                    r = await client.request(
                        method, url, content=body if method == "POST" else None, headers=headers
                    )
                except httpx.HTTPError as e:
                    name = type(e).__name__
                    errors[name] = errors.get(name, 0) + 1
                    if len(error_samples) < 5:
                        error_samples.append(f"{name}: {e}")
                    continue
                lat = time.perf_counter() - t0
                code = str(r.status_code)
                statuses[code] = statuses.get(code, 0) + 1
                if r.status_code in (429, 503):
                    ra = r.headers.get("retry-after")
                    if ra is None:
                        retry_after_missing += 1
                    elif len(retry_after_values) < 20:
                        retry_after_values.append(ra)
                elif r.status_code >= 400 and len(error_samples) < 5:
                    error_samples.append(f"{code}: {r.text[:200]}")
                if r.status_code < 400:
                    latencies.append(lat)

        hard = duration + float(spec.get("timeout_s", 30.0)) + 10.0
        try:
            await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(conc))), hard)
        except TimeoutError:
            errors["driver_hard_deadline"] = errors.get("driver_hard_deadline", 0) + 1
    elapsed = time.monotonic() - start
    lat = sorted(latencies)
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {
        "url": url,
        "concurrency": conc,
        "duration_s": elapsed,
        "requests": sum(statuses.values()) + sum(errors.values()),
        "ok": ok,
        "status_counts": statuses,
        "transport_errors": errors,
        "error_samples": error_samples,
        "retry_after_missing": retry_after_missing,
        "retry_after_values": retry_after_values,
        "throughput_rps": ok / elapsed if elapsed > 0 else 0.0,
        "latency_s": {
            "p50": _percentile(lat, 0.50),
            "p90": _percentile(lat, 0.90),
            "p99": _percentile(lat, 0.99),
            "min": lat[0] if lat else None,
            "max": lat[-1] if lat else None,
            "n": len(lat),
        },
        "bodies_available": len(bodies) - offset,
        "exhausted": unique and counter["next"] >= max_requests,
    }


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load spec in this process (the CLI entry calls this)."""
    return asyncio.run(_run(spec))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        sys.stderr.write("usage: python -m blindmatch.bench.loaddriver SPEC.json OUT.json\n")
        return 2
    spec = json.loads(Path(args[0]).read_text())
    out = run_load(spec)
    Path(args[1]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
