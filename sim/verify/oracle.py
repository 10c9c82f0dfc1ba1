"""Verdicts from the real protocols: client and server halves, in process and over HTTP.

Why this matters: every accuracy number must trace back to the real code. The
simulator runs each protocol variant's real ``ClientHalf`` against its real
``ServerHalf`` — in process through ``LocalTransport`` and against a real
uvicorn server on loopback (``LiveServer`` + ``HttpTransport``) — and compares
the verdicts with the decision function that stands in for it at scale.

Where the verdict lives:

* client-learns protocols (and ``plain``): ``ScanResult.matched``;
* server-learns protocols: the client sees ``None``. The simulator then acts as
  the operator. It first sends, under a fresh account, ``threshold`` exact set
  members as *primers* (at least one; so a threshold protocol reaches its
  threshold and the read-out is known to work), then the sample, each with a
  unique associated-data token. It asks the server to finish its reveal work
  (in process: a ``process_reveals(account)`` or ``wait_idle()`` method; over
  HTTP: the admin ``POST reveals`` endpoint with a throwaway operator token),
  then reads what was revealed — a ``revealed``/``reveals`` method, the admin
  endpoint's reply, or the documented operator command ``blindmatch admin
  reveals --db SET_DIR --account ID``. Without a way to finish the work, it
  reads until two reads agree. A query counts as matched iff its token was
  revealed. If the primers are not revealed, the verdicts are marked
  unavailable rather than guessed.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from blindmatch.client import HttpTransport
from blindmatch.protocol import (
    BlindmatchError,
    HashAlgo,
    LocalTransport,
    Protocol,
    Query,
    ServerHalf,
    Transport,
    TransportReply,
)
from blindmatch.server import LiveServer, SetDir

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

_REVEAL_HOOKS = ("revealed", "reveals", "revealed_ads", "reveal", "server_verdicts")
_TRIGGER_HOOKS = ("process_reveals",)  # "reveal now", as an operator would ask for it
_IDLE_HOOKS = ("wait_idle",)  # wait for background reveal work already queued
BENCH_ENV = {"BLINDMATCH_RATE_PER_SECOND": "1e9", "BLINDMATCH_RATE_BURST": "1e9"}


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

    def to_query(self, algo: HashAlgo, account: str, ad: bytes) -> Query:
        return Query(algo.from_bytes(self.raw), self.floats, self.quality, account, ad)


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


@dataclass
class Session:
    """A running server for one protocol: in process (``server``) or on loopback (``live``)."""

    proto: Protocol
    set_dir: SetDir
    server: ServerHalf | None = None
    live: LiveServer | None = None
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


@contextmanager
def local_session(proto: Protocol, set_dir: SetDir, variant: Variant) -> Iterator[Session]:
    from ..machine import tree_cpu_seconds

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
        **variant.server_env,
    }
    live = LiveServer(set_dir.path, env=env, startup_timeout=timeout_s, log_file=log_file)
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


def _call_hooks(obj: Any, names: tuple[str, ...], *args: Any) -> tuple[list[Any], list[str]]:
    out, notes = [], []
    for name in names:
        fn = getattr(obj, name, None)
        if callable(fn):
            try:
                out.append(fn(*args))
            except Exception as e:
                notes.append(f"{name}(): {type(e).__name__}: {e}")
    return out, notes


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _verdict_log(sess: Session, account: str) -> tuple[list[bool] | None, list[str]]:
    """The server's verdicts for ``account`` in arrival order, if it keeps such a log.

    In process: a ``verdicts()`` method of the server half; over HTTP: the admin
    ``GET verdicts`` endpoint. Items carry ``client_id`` and ``matched``.
    """
    items: list[Any] | None = None
    notes: list[str] = []
    if sess.server is not None:
        got, notes = _call_hooks(sess.server, ("verdicts",))
        items = list(got[0]) if got else None
    elif sess.live is not None and sess.admin_token:
        try:
            r = httpx.get(
                f"{sess.live.url}/v1/{sess.proto.name}/verdicts",
                headers={"authorization": f"Bearer {sess.admin_token}"},
                timeout=120,
            )
            if r.status_code == 200:
                body = r.json()
                items = body if isinstance(body, list) else body.get("verdicts")
            else:
                notes.append(f"GET verdicts: HTTP {r.status_code}")
        except (httpx.HTTPError, ValueError, AttributeError) as e:
            notes.append(f"GET verdicts: {type(e).__name__}")
    if items is None:
        return None, notes
    mine = [it for it in items if _field(it, "client_id") == account]
    if not all(isinstance(_field(it, "matched"), bool) for it in mine):
        return None, [*notes, "verdict log without boolean 'matched'"]
    return [bool(_field(it, "matched")) for it in mine], notes


def _reveal_text(sess: Session, account: str, need: list[str]) -> tuple[str, list[str], bool, bool]:
    """What the operator can read about ``account``.

    Returns (text, notes, ok, complete): ``ok`` is False if no interface
    answered; ``complete`` is True if the server was asked to finish its reveal
    work first (so one read suffices).
    """
    texts: list[str] = []
    notes: list[str] = []
    ok = complete = False
    if sess.server is not None:
        done, n1 = _call_hooks(sess.server, _TRIGGER_HOOKS, account)
        if not done:
            done, n2 = _call_hooks(sess.server, _IDLE_HOOKS)
            n1 += n2
        complete = bool(done)
        got, n3 = _call_hooks(sess.server, _REVEAL_HOOKS, account)
        texts.extend(repr(list(g)) for g in got)
        notes += n1 + n3
        ok = bool(got)
    elif sess.live is not None and sess.admin_token:
        try:  # the operator's "reveal now and list" endpoint, if the protocol has one
            r = httpx.post(
                f"{sess.live.url}/v1/{sess.proto.name}/reveals",
                content=account.encode(),
                headers={"authorization": f"Bearer {sess.admin_token}"},
                timeout=120,
            )
            if r.status_code == 200:
                texts.append(r.text)
                ok = complete = True
            else:
                notes.append(f"POST reveals: HTTP {r.status_code}")
        except httpx.HTTPError as e:
            notes.append(f"POST reveals: {type(e).__name__}")
    if ok and need and all(_found(t, "\n".join(texts)) for t in need):
        return "\n".join(texts), notes, ok, complete
    cmd = [
        sys.executable,
        "-m",
        "blindmatch.cli",
        "admin",
        "reveals",
        "--db",
        str(sess.set_dir.path),
        "--account",
        account,
    ]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=120, check=False)  # noqa: S603
        texts.append(p.stdout.decode(errors="replace"))
        if p.returncode == 0:
            ok = True
        else:
            notes.append(
                f"`blindmatch admin reveals` exit {p.returncode}: "
                f"{p.stderr.decode(errors='replace').strip()[-300:]}"
            )
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"`blindmatch admin reveals` failed: {e}")
    return "\n".join(texts), notes, ok, complete


def real_verdicts(
    sess: Session,
    variant: Variant,
    algo: HashAlgo,
    queries: list[SimQuery],
    primers: list[SimQuery],
    account: str,
    cache_dir: Path,
    budget_s: float,
    reveal_wait_s: float = 10.0,
    min_queries: int = 2,
) -> RealOutcome:
    """Run the real client half against ``sess`` for each query and collect verdicts.

    The first ``min_queries`` always run; the time budget may cut only the rest
    (those extra verdicts are reported but kept out of the deterministic digest).
    """
    t0 = time.perf_counter()
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
    client = sess.proto.new_client(algo, cache_dir, variant.client_options_for(algo))
    tr = sess.transport(account)
    nonce = account
    out: list[bool | None] = []
    errors: list[str] = []
    truncated = False
    try:
        if n_primers:
            for i, q in enumerate(primers[:n_primers]):
                client.scan(q.to_query(algo, account, _token(nonce, "p", i).encode()), tr)
        for q in queries:
            if time.perf_counter() - t0 > budget_s and len(out) >= max(1, min_queries):
                truncated = True
                break
            try:
                ad = _token(nonce, "q", q.qid).encode()
                got = [client.scan(s.to_query(algo, account, ad), tr).matched for s in q.scans(variant)]
                out.append(None if any(g is None for g in got) else any(got))
            except BlindmatchError as e:
                errors.append(f"query {q.qid}: {e.code}: {e.detail}")
                out.append(None)
    except BlindmatchError as e:
        return RealOutcome(
            [None] * len(queries),
            "unavailable",
            f"primer scan failed: {e.code}: {e.detail}",
            seconds=time.perf_counter() - t0,
            errors=[str(e)],
        )
    finally:
        inner = tr.inner
        if isinstance(inner, HttpTransport):
            inner.close()
    if any(m is not None for m in out):
        note = "some queries failed" if errors else ""
        return RealOutcome(out, "client", note, truncated, time.perf_counter() - t0, errors)
    # server-learns, first way: an ordered log of the server's verdicts for this client
    sent = min(n_primers, len(primers))
    log, log_notes = _verdict_log(sess, account)
    per = variant.scans_per_image
    if log is not None and not errors and len(log) == sent + per * len(out) and all(log[:sent]):
        grouped: list[bool | None] = [
            any(log[sent + per * j : sent + per * (j + 1)]) for j in range(len(out))
        ]
        return RealOutcome(grouped, "server-log", "", truncated, time.perf_counter() - t0, errors)
    # second way: read what the server revealed for this account (associated data)
    need = [_token(nonce, "p", i) for i in range(sent)]
    deadline = time.perf_counter() + reveal_wait_s
    previous = None
    while True:
        text, notes, ok, complete = _reveal_text(sess, account, need)
        if ok and need and all(_found(t, text) for t in need) and (complete or text == previous):
            break  # background reveal work may still be running: wait until two reads agree
        previous = text
        if not ok or time.perf_counter() > deadline:
            why = "; ".join(log_notes + notes) or "the primers were not revealed"
            return RealOutcome(
                [None] * len(out),
                "unavailable",
                f"the client cannot know and no server-side verdict was readable: {why}",
                truncated,
                time.perf_counter() - t0,
                errors,
            )
        time.sleep(1.0)
    failed = {e.split(":", 1)[0] for e in errors}
    verdicts: list[bool | None] = [
        None if f"query {q.qid}" in failed else _found(_token(nonce, "q", q.qid), text)
        for q in queries[: len(out)]
    ]
    return RealOutcome(
        verdicts, "server-reveal", "; ".join(notes), truncated, time.perf_counter() - t0, errors
    )
