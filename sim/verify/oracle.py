"""Verdicts from the real protocols: client and server halves, in process and over HTTP.

Why this matters: every accuracy number must trace back to the real code. The
simulator runs each protocol variant's real ``ClientHalf`` against its real
``ServerHalf`` — in process through ``LocalTransport`` and against a real
uvicorn server on loopback (``LiveServer`` + ``HttpTransport``) — and compares
the verdicts with the decision function that stands in for it at scale.

Where the verdict lives:

* client-learns protocols (and ``plain``): ``ScanResult.matched``;
* server-learns protocols: the client sees ``None``. The simulator then acts as
  the operator, through the interface every server half has: ``settle(account)``
  (finish owed work, e.g. queued reveals) and ``server_verdicts(account)``; over
  HTTP the server's generic admin route ``GET /v1/<protocol>/admin/verdicts``
  calls the same two with a throwaway operator token. It first sends, under a
  fresh account, ``threshold`` exact set members as *primers* (at least one; so
  a threshold protocol reaches its threshold and the read-out is known to
  work), then the sample, each with a unique associated-data token. Verdicts
  that carry associated data (a threshold protocol's reveals) count a query as
  matched iff its token was revealed; verdicts without it form a log of one
  verdict per query in arrival order. If the primers are not found, the
  verdicts are marked unavailable rather than guessed.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from blindmatch.client import HashedImage, HttpTransport, ScanItem, Scanner
from blindmatch.protocol import (
    BlindmatchError,
    HashAlgo,
    LocalTransport,
    Protocol,
    ServerHalf,
    ServerVerdict,
    Transport,
    TransportReply,
)
from blindmatch.server import LiveServer, SetDir
from blindmatch.server.settings import protocol_env
from blindmatch.server.testing import LiveParties

from ..decide.variants import Variant

__all__ = [
    "MeteredTransport",
    "RealOutcome",
    "Session",
    "SimQuery",
    "http_session",
    "local_session",
    "real_verdicts",
]

# No rate limit, and the simulator's own loopback client is the trusted proxy that names the
# account of each request (X-Blindmatch-Client): server-learns verdicts are logged per account
# and read back per account, which the server does only for a trusted proxy's header.
BENCH_ENV = {
    "BLINDMATCH_RATE_PER_SECOND": "1e9",
    "BLINDMATCH_RATE_BURST": "1e9",
    "BLINDMATCH_TRUSTED_PROXIES": "127.0.0.1",
}


@dataclass(frozen=True)
class SimQuery:
    """One simulated query: an id, the hash bytes, and what robust matching may use."""

    qid: int
    raw: bytes
    floats: tuple[float, ...] | None = None
    quality: int | None = None
    dihedral: tuple[SimQuery, ...] = ()  # the 8 rotations/flips, for dihedral variants

    def scans(self, variant: Variant) -> tuple[SimQuery, ...]:
        """What the client sends for one image: itself, or all 8 transforms (matched if any is)."""
        if not variant.dihedral:
            return (self,)
        if len(self.dihedral) != 8:
            raise ValueError(f"{variant.label}: query {self.qid} carries no dihedral hashes")
        return self.dihedral

    def to_item(self, algo: HashAlgo, ad: bytes) -> ScanItem:
        hashed = HashedImage(algo.from_bytes(self.raw), self.quality, self.floats)
        return ScanItem(hashed, f"query {self.qid}", ad)


class MeteredTransport(Transport):
    """Wraps a transport; counts requests and, for in-process servers, handler CPU time."""

    def __init__(self, inner: Transport, time_handlers: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.requests = 0
        self.handler_cpu_s = 0.0
        self._time = time_handlers

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        u0, d0 = self.inner.bytes_up, self.inner.bytes_down
        t0 = time.thread_time() if self._time else 0.0
        try:
            return self.inner.request(method, path, body, headers)
        finally:
            if self._time:
                self.handler_cpu_s += time.thread_time() - t0
            self.requests += 1
            self.bytes_up += self.inner.bytes_up - u0
            self.bytes_down += self.inner.bytes_down - d0

    def close(self) -> None:
        """Close the wrapped HTTP transport (an in-process one holds nothing)."""
        if isinstance(self.inner, HttpTransport):
            self.inner.close()


@dataclass
class Session:
    """A running server for one protocol: in process (``server``) or on loopback (``live``)."""

    proto: Protocol
    set_dir: SetDir
    server: ServerHalf | None = None
    live: LiveServer | LiveParties | None = None
    setup_s: float = 0.0
    setup_cpu_s: float = 0.0
    admin_token: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "local" if self.server is not None else "http"

    @property
    def pid(self) -> int | None:
        return self.live.proc.pid if self.live and self.live.proc else None

    def transport(self, account: str) -> MeteredTransport:
        if self.server is not None:
            return MeteredTransport(LocalTransport(self.server, client_id=account), time_handlers=True)
        assert self.live is not None
        return MeteredTransport(HttpTransport(self.live.url, self.proto.name, client_id=account))

    def scanner(
        self,
        transport: Transport,
        variant: Variant,
        algo: HashAlgo,
        account: str,
        cache_dir: Path,
        strict: bool = False,
    ) -> Scanner:
        """The variant's real client over ``transport``: one query per round, no quality gate
        (the simulator's query pool has already applied it)."""
        return Scanner(
            transport,
            self.proto,
            algo=algo,
            options=variant.client_options_for(algo),
            account=account,
            cache_dir=cache_dir,
            min_quality=0,
            batch_size=1,
            strict=strict,
        )


@contextmanager
def local_session(proto: Protocol, set_dir: SetDir, variant: Variant) -> Iterator[Session]:
    """In process; a protocol served by several processes runs them on loopback instead."""
    from ..machine import tree_cpu_seconds

    if proto.server_processes > 1:
        with http_session(proto, set_dir, variant, 600.0) as sess:
            yield sess
        return

    c0, t0 = time.process_time() + tree_cpu_seconds(os.getpid(), False), time.perf_counter()
    server = proto.open_server(set_dir.hashes, set_dir.state_dir(proto.name), dict(variant.server_options))
    sess = Session(proto, set_dir, server=server)
    sess.setup_s = time.perf_counter() - t0
    sess.setup_cpu_s = time.process_time() + tree_cpu_seconds(os.getpid(), False) - c0
    try:
        yield sess
    finally:
        server.close()


@contextmanager
def http_session(
    proto: Protocol,
    set_dir: SetDir,
    variant: Variant,
    timeout_s: float,
    log_file: Path | None = None,
) -> Iterator[Session]:
    token = secrets.token_urlsafe(24)  # a throwaway operator token for this loopback server
    env = {
        **BENCH_ENV,
        "BLINDMATCH_PROTOCOLS": proto.name,
        "BLINDMATCH_ADMIN_TOKEN": token,
        **protocol_env(proto.name, variant.server_options),
        **variant.server_env,
    }
    live: LiveServer | LiveParties = (
        LiveParties(set_dir.path, env=env, startup_timeout=timeout_s, log_file=log_file)
        if proto.server_processes > 1
        else LiveServer(set_dir.path, env=env, startup_timeout=timeout_s, log_file=log_file)
    )
    t0 = time.perf_counter()
    live.start()
    sess = Session(proto, set_dir, live=live, setup_s=time.perf_counter() - t0, admin_token=token)
    try:
        yield sess
    finally:
        live.stop()


@dataclass
class RealOutcome:
    """Verdicts of the real protocol on a sample; ``None`` entries were not obtained."""

    verdicts: list[bool | None]
    source: str  # client | server-reveal | unavailable
    note: str = ""
    truncated: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def _token(nonce: str, kind: str, i: int) -> str:
    return f"bmsim:{nonce}:{kind}{i:07d}:"


def _found(token: str, text: str) -> bool:
    b = token.encode()
    return token in text or b.hex() in text or base64.b64encode(b).decode() in text


def _server_verdicts(sess: Session, account: str) -> tuple[list[ServerVerdict] | None, str]:
    """What the server learned about ``account`` after settling, or (None, why not)."""
    if sess.server is not None:
        sess.server.settle(account)
        return sess.server.server_verdicts(account), ""
    if sess.live is None or not sess.admin_token:
        return None, "no admin access to the server"
    try:
        r = httpx.get(
            f"{sess.live.url}/v1/{sess.proto.name}/admin/verdicts",
            headers={"authorization": f"Bearer {sess.admin_token}", "x-blindmatch-account": account},
            timeout=120,
        )
    except httpx.HTTPError as e:
        return None, f"GET admin/verdicts: {type(e).__name__}"
    if r.status_code != 200:
        return None, f"GET admin/verdicts: HTTP {r.status_code}"
    items = r.json()["verdicts"]
    return [
        ServerVerdict(
            bool(v["matched"]),
            None if v["associated_data"] is None else bytes.fromhex(v["associated_data"]),
            v["at"],
        )
        for v in items
    ], ""


def _from_server(
    verdicts: list[ServerVerdict],
    nonce: str,
    sent: int,
    queries: list[SimQuery],
    n_out: int,
    clean: bool,
    per: int = 1,
) -> tuple[list[bool | None] | None, str]:
    """Per-query verdicts from the server's list, or (None, why not).

    A log (verdicts without associated data) lines up with the queries only if
    every scan went through (``clean``); ``per`` scans make one image (8 for a
    dihedral variant), matched if any of them is."""
    revealed = b"\n".join(v.associated_data for v in verdicts if v.associated_data is not None)
    if revealed:
        text = revealed.decode("utf-8", errors="replace")
        if not all(_found(_token(nonce, "p", i), text) for i in range(sent)):
            return None, "the primers were not revealed"
        return [_found(_token(nonce, "q", q.qid), text) for q in queries[:n_out]], "server-reveal"
    if clean and len(verdicts) == sent + per * n_out and all(v.matched for v in verdicts[:sent]):
        log = [v.matched for v in verdicts[sent:]]
        return [any(log[per * j : per * (j + 1)]) for j in range(n_out)], "server-log"
    return None, f"{len(verdicts)} server verdicts for {sent} primers and {n_out} × {per} scans"


def real_verdicts(
    sess: Session,
    variant: Variant,
    algo: HashAlgo,
    queries: list[SimQuery],
    primers: list[SimQuery],
    account: str,
    cache_dir: Path,
    budget_s: float,
    min_queries: int = 2,
) -> RealOutcome:
    """Run the real client half against ``sess`` for each query and collect verdicts.

    The first ``min_queries`` always run; the time budget may cut only the rest
    (those extra verdicts are reported but kept out of the deterministic digest).
    A dihedral variant sends each image's 8 orientations; the image matched if any did.
    """
    t0 = time.perf_counter()
    nonce = account
    n_primers = max(1, variant.threshold) if variant.learner == "server" else 0
    if not queries:
        return RealOutcome([], "unavailable", "no query to check (every candidate was quality-gated)")
    if n_primers > len(primers):
        return RealOutcome(
            [None] * len(queries),
            "unavailable",
            f"the server-side read-out needs {n_primers} exact set members to prime it; "
            f"the set holds {len(primers)} from images",
        )
    out: list[bool | None] = []
    errors: list[str] = []
    truncated = False
    with closing(sess.transport(account)) as tr:
        scanner = sess.scanner(tr, variant, algo, account, cache_dir)
        try:
            primed = enumerate(primers[:n_primers])
            scanner.scan([q.to_item(algo, _token(nonce, "p", i).encode()) for i, q in primed], strict=True)
        except BlindmatchError as e:
            return RealOutcome(
                [None] * len(queries),
                "unavailable",
                f"primer scan failed: {e.code}: {e.detail}",
                seconds=time.perf_counter() - t0,
                errors=[str(e)],
            )
        for q in queries:
            ad = _token(nonce, "q", q.qid).encode()
            vs = [scanner.scan_one(s.to_item(algo, ad)) for s in q.scans(variant)]
            err = next((v.error for v in vs if v.error is not None), None)
            if err is not None:
                errors.append(f"query {q.qid}: {err.code}: {err.detail}")
            seen = [v.matched for v in vs]
            out.append(None if err is not None or any(m is None for m in seen) else any(seen))
            over = time.perf_counter() - t0 > budget_s
            if len(out) < len(queries) and over and len(out) >= max(1, min_queries):
                truncated = True
                break
    if any(m is not None for m in out):
        note = "some queries failed" if errors else ""
        return RealOutcome(out, "client", note, truncated, time.perf_counter() - t0, errors)
    sent = min(n_primers, len(primers))
    return _server_outcome(sess, variant, queries, account, sent, out, errors, truncated, t0)


def _server_outcome(
    sess: Session,
    variant: Variant,
    queries: list[SimQuery],
    account: str,
    sent: int,
    out: list[bool | None],
    errors: list[str],
    truncated: bool,
    t0: float,
) -> RealOutcome:
    """Read the verdicts from the server when the client half cannot learn them itself.

    Queries whose scan failed stay unknown even if the server logged a verdict for them.
    """
    nonce = account
    verdicts, why = _server_verdicts(sess, account)
    got: list[bool | None] | None = None
    if verdicts is not None:
        got, why = _from_server(
            verdicts, nonce, sent, queries, len(out), not errors, variant.scans_per_image
        )
    if got is None:
        return RealOutcome(
            [None] * len(out),
            "unavailable",
            f"the client cannot know and no server-side verdict was readable: {why}",
            truncated,
            time.perf_counter() - t0,
            errors,
        )
    failed = {e.split(":", 1)[0] for e in errors}
    final: list[bool | None] = [
        None if f"query {q.qid}" in failed else v for q, v in zip(queries, got, strict=False)
    ]
    return RealOutcome(final, why, "", truncated, time.perf_counter() - t0, errors)
