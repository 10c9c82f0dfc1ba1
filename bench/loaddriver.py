"""Load driver, run as its own process: ``python -m blindmatch.bench.loaddriver SPEC OUT``.

Why a separate process: the server's CPU and the clients' CPU must not share a
GIL, or the measured throughput is the driver's, not the server's. The driver
only replays pre-recorded request bodies (made by the real client halves).

Why h11 rather than httpx's AsyncClient (the default ``engine``): with httpx the
driver was the bottleneck. Against the ``plain`` endpoint on this 2-core machine,
httpx reached ~300 req/s at 8 connections and fell to ~45 req/s at 128 (its
per-request cost grows with the pool; the server sat at 5% CPU), while the
same server answered ~1000 req/s at 8 connections and ~850 at 128 when driven
by h11 (the HTTP/1.1 state machine httpx uses internally) over asyncio streams,
at ~0.2 ms of driver CPU per request. ``engine="httpx"`` remains for cross-checks.

Safety: it talks to loopback addresses only, stops by itself at the first of
``duration_s`` or ``max_requests`` (or when single-use bodies run out), and has
a hard deadline on top of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx

__all__ = ["LOOPBACK", "read_bodies", "run_load", "write_bodies"]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_LEN = struct.Struct(">I")
_PER_POOL = 4


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


@dataclass
class _Resp:
    status: int
    headers: dict[str, str]
    body: bytes


class _H11Conn:
    """One keep-alive HTTP/1.1 connection driven by h11 over asyncio streams.

    h11 is the HTTP/1.1 state machine httpx itself uses; driving it directly keeps the
    driver's cost per request near 150 µs and flat in the number of connections.
    """

    def __init__(self, host: str, port: int, netloc: str, quickack: bool = False) -> None:
        self.host, self.port, self.netloc = host, port, netloc
        self.quickack = quickack and hasattr(socket, "TCP_QUICKACK")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.conn: h11.Connection | None = None
        self._sock: Any = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.conn = h11.Connection(h11.CLIENT)
        self._sock = self.writer.get_extra_info("socket")

    def _ack_now(self) -> None:
        """Re-arm TCP_QUICKACK (Linux clears it): ACK the response's first segment at once."""
        if self.quickack and self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = self.conn = None

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Resp:
        if self.conn is None or self.conn.our_state is not h11.IDLE:
            self.close()
            await self._connect()
        assert self.conn is not None and self.writer is not None and self.reader is not None
        hdrs = [("host", self.netloc), *headers.items()]
        if method == "POST":
            hdrs.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        if method == "POST" and body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        self.writer.write(data)
        await self.writer.drain()
        self._ack_now()
        status, rh, chunks = 0, {}, []
        while True:
            ev = self.conn.next_event()
            if ev is h11.NEED_DATA:
                raw = await self.reader.read(65536)
                if not raw and self.conn.their_state is not h11.DONE:
                    raise ConnectionResetError("server closed the connection mid-response")
                self.conn.receive_data(raw)
                self._ack_now()
                continue
            if isinstance(ev, h11.Response):
                status = ev.status_code
                rh = {k.decode().lower(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h11.Data):
                chunks.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage):
                break
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        else:
            self.close()
        return _Resp(status, rh, b"".join(chunks))


@dataclass
class _Tally:
    """Outcomes of every request, kept apart from the send loop so the report reads them in one place."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    ra_missing: int = 0
    retry_after_values: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def record(self, t0: float, r: _Resp) -> None:
        """Count a status; only successes time latency, so shed load cannot flatter the percentiles."""
        code = str(r.status)
        self.statuses[code] = self.statuses.get(code, 0) + 1
        if r.status in (429, 503):
            ra = r.headers.get("retry-after")
            if ra is None:
                self.ra_missing += 1
            elif len(self.retry_after_values) < 20:
                self.retry_after_values.append(ra)
        elif r.status >= 400 and len(self.error_samples) < 5:
            self.error_samples.append(f"{code}: {r.body[:200]!r}")
        if r.status < 400:
            self.latencies.append(time.perf_counter() - t0)

    def fail(self, e: BaseException) -> None:
        """Count a transport error by type, with a few samples to tell them apart."""
        name = type(e).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{name}: {e}")


def _target(spec: dict[str, Any]) -> tuple[str, Any, str | None]:
    """The full URL, its parts and host; refuses anything but loopback so a spec cannot aim load elsewhere."""
    url = spec["url"].rstrip("/") + spec["path"]
    parts = urlsplit(url)
    host = parts.hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing non-loopback target {host!r}")
    return url, parts, host


def _bodies_and_engine(spec: dict[str, Any]) -> tuple[list[bytes], str]:
    """Load the recorded bodies and check the engine before any connection opens, so a bad spec fails fast."""
    bodies = read_bodies(Path(spec["bodies_file"])) if spec.get("bodies_file") else [b""]
    if not bodies:
        raise SystemExit("no request bodies")
    engine = spec.get("engine", "h11")
    if engine not in ("h11", "httpx"):
        raise SystemExit(f"unknown engine {engine!r}")
    return bodies, engine


async def _send(
    conn: _H11Conn | None,
    client: httpx.AsyncClient | None,
    method: str,
    url: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
) -> _Resp:
    """One request on whichever engine is in use, answered in one shape so the tally need not care."""
    if conn is not None:
        return await asyncio.wait_for(conn.request(method, path, headers, body), timeout)
    assert client is not None
    hr = await client.request(method, url, content=body if method == "POST" else None, headers=headers)
    return _Resp(hr.status_code, dict(hr.headers), hr.content)


def _report(
    spec: dict[str, Any],
    url: str,
    engine: str,
    conc: int,
    elapsed: float,
    driver_cpu: float,
    tally: _Tally,
    bodies_available: int,
    exhausted: bool,
) -> dict[str, Any]:
    """The JSON result; driver CPU is reported so a reader can tell a driver-bound run."""
    lat = sorted(tally.latencies)
    ok = sum(v for k, v in tally.statuses.items() if k.startswith("2"))
    return {
        "url": url,
        "engine": engine,
        "quickack": bool(spec.get("quickack")),
        "concurrency": conc,
        "duration_s": elapsed,
        "driver_cpu_s": driver_cpu,
        "driver_cpu_share": driver_cpu / elapsed if elapsed > 0 else None,
        "requests": sum(tally.statuses.values()) + sum(tally.errors.values()),
        "ok": ok,
        "status_counts": tally.statuses,
        "transport_errors": tally.errors,
        "error_samples": tally.error_samples,
        "retry_after_missing": tally.ra_missing,
        "retry_after_values": tally.retry_after_values,
        "throughput_rps": ok / elapsed if elapsed > 0 else 0.0,
        "latency_s": {
            "p50": _percentile(lat, 0.50),
            "p90": _percentile(lat, 0.90),
            "p99": _percentile(lat, 0.99),
            "min": lat[0] if lat else None,
            "max": lat[-1] if lat else None,
            "n": len(lat),
        },
        "bodies_available": bodies_available,
        "exhausted": exhausted,
    }


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    """One load run: the workers share one body counter and deadline, so the driver stops by itself."""
    url, parts, host = _target(spec)
    bodies, engine = _bodies_and_engine(spec)
    method = spec.get("method", "POST")
    conc = int(spec["concurrency"])
    duration = float(spec["duration_s"])
    timeout = float(spec.get("timeout_s", 30.0))
    max_requests = int(spec.get("max_requests", 10**9))
    unique = bool(spec.get("unique", False))
    offset = int(spec.get("offset", 0))  # bodies already used (e.g. by a warm-up)
    if unique:
        max_requests = min(max_requests, len(bodies) - offset)
    shared_id = spec.get("client_id")
    prefix = spec.get("client_id_prefix", "load")
    base_headers = {"content-type": "application/octet-stream", **spec.get("headers", {})}

    tally = _Tally()
    counter = {"next": 0}
    cpu0 = time.process_time()
    start = time.monotonic()
    deadline = start + duration

    def next_body() -> bytes | None:
        i = counter["next"]
        if i >= max_requests or time.monotonic() >= deadline:
            return None
        counter["next"] = i + 1
        return bodies[(offset + i) % len(bodies)]

    async with contextlib.AsyncExitStack() as stack:
        if engine == "httpx":
            # small pools: httpx's pool costs O(connections) per request
            limits = httpx.Limits(max_connections=_PER_POOL, max_keepalive_connections=_PER_POOL)
            clients = [
                await stack.enter_async_context(httpx.AsyncClient(timeout=timeout, limits=limits))
                for _ in range(-(-conc // _PER_POOL))
            ]

        async def worker(wid: int) -> None:
            headers = {**base_headers, "x-blindmatch-client": shared_id or f"{prefix}-{wid}"}
            conn = (
                _H11Conn(host or "127.0.0.1", parts.port or 80, parts.netloc, bool(spec.get("quickack")))
                if engine == "h11"
                else None
            )
            try:
                while (body := next_body()) is not None:
                    t0 = time.perf_counter()
                    try:
                        client = None if conn is not None else clients[wid // _PER_POOL]
                        r = await _send(conn, client, method, url, parts.path, headers, body, timeout)
                    except (OSError, TimeoutError, h11.ProtocolError, httpx.HTTPError) as e:
                        tally.fail(e)
                        if conn is not None:
                            conn.close()
                        continue
                    tally.record(t0, r)
            finally:
                if conn is not None:
                    conn.close()

        hard = duration + timeout + 10.0
        try:
            await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(conc))), hard)
        except TimeoutError:
            tally.errors["driver_hard_deadline"] = tally.errors.get("driver_hard_deadline", 0) + 1
    return _report(
        spec,
        url,
        engine,
        conc,
        time.monotonic() - start,
        time.process_time() - cpu0,
        tally,
        len(bodies) - offset,
        unique and counter["next"] >= max_requests,
    )


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
