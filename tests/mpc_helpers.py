"""Three mpc parties in one process (threads, in-memory frames) for engine-level tests.

The circuit, sharing and checks are the real code; only the carrier differs from
deployment (queues instead of encrypted sockets), so property and privacy tests
can run many queries quickly. Process-level tests use the real servers.
"""

from __future__ import annotations

import queue
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from blindmatch.protocol import (
    BlindmatchError,
    Endpoint,
    HashSet,
    Protocol,
    Reply,
    Request,
    ServerHalf,
    ServerVerdict,
)
from blindmatch.protocol.mpc._circuit import PartyCircuit, SetColumns, run_party
from blindmatch.protocol.mpc._field import P, Vec
from blindmatch.protocol.mpc._sharing import PairKeys, derive_component_key, share_vector
from blindmatch.server import SetDir
from blindmatch.server.testing import LiveParties

from . import _http

BLINDMATCH = str(Path(sys.executable).parent / "blindmatch")  # the CLI of the running venv


@dataclass
class Run:
    outputs: list[Vec | None]
    errors: list[BaseException | None]
    views: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)  # (sender, frame) per party

    @property
    def opened(self) -> Vec:
        return (sum(o.astype(np.int64) for o in self.outputs if o is not None) % P).astype(np.uint32)


def bits_of(words: np.ndarray) -> np.ndarray:
    return np.unpackbits(words.astype(">u8").view(np.uint8)).astype(np.uint32)


def run_circuits(
    body: Callable[[int, PartyCircuit], Vec | None],
    tamper: Callable[[int, int, bytes], bytes] | None = None,
) -> Run:
    """Run ``body(i, circuit)`` for the three parties in threads, on queues, with fresh keys."""
    q = {(a, b): queue.Queue() for a in range(3) for b in range(3)}
    run_id = secrets.token_bytes(16)
    pair_secrets = [secrets.token_bytes(32) for _ in range(3)]
    keys = [derive_component_key(pair_secrets[j], run_id, j) for j in range(3)]
    run = Run([None] * 3, [None] * 3, {i: [] for i in range(3)})

    def party(i: int) -> None:
        def send(peer: int, data: bytes) -> None:
            q[(i, peer)].put(tamper(i, peer, data) if tamper else data)

        def recv(peer: int) -> bytes:
            data = q[(peer, i)].get(timeout=60)
            run.views[i].append((peer, data))
            return data

        circuit = PartyCircuit(i, PairKeys(keys[i], keys[(i + 1) % 3]), (send, recv), run_id)
        try:
            run.outputs[i] = body(i, circuit)
        except BaseException as e:  # recorded for the test to inspect
            run.errors[i] = e

    threads = [threading.Thread(target=party, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return run


def run_three(
    cols: SetColumns,
    x: Vec,
    comps: tuple[Vec, Vec, Vec] | None = None,
    pairs: list[tuple[Vec, Vec]] | None = None,
    server_learns: bool = False,
    chunk: int = 1 << 19,
    tamper: Callable[[int, int, bytes], bytes] | None = None,
    count: bool = False,
) -> Run:
    """One query through three party threads; ``pairs`` overrides what each party receives."""
    comps = comps or share_vector(x.astype(np.uint32))
    shares = pairs or [(comps[i], comps[(i + 1) % 3]) for i in range(3)]
    check_key = secrets.token_bytes(16)

    def body(i: int, circuit: PartyCircuit) -> Vec | None:
        a, b = shares[i]
        return run_party(circuit, cols, a, b, check_key, server_learns, chunk, count=count)

    return run_circuits(body, tamper)


class RemoteError(BlindmatchError):
    """A typed error answered by a party process, re-raised in the caller's process."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.http_status = code, status


class PartiesProxy(ServerHalf):
    """A multi-process protocol's server as a ``ServerHalf``: each endpoint forwards to party 0.

    For suites that drive every registered protocol through ``LocalTransport``; the
    endpoint list comes from the protocol's own (unconfigured) server half.
    """

    def __init__(self, template: ServerHalf, live: LiveParties, protocol: str, token: str) -> None:
        self._template, self._live, self._protocol, self._token = template, live, protocol, token

    def _forward(self, method: str, path: str) -> Callable[[Request], Reply]:
        def handler(req: Request) -> Reply:
            r = _http.request(
                method,
                f"{self._live.url}/v1/{self._protocol}/{path}",
                content=req.body if method == "POST" else None,
                headers={"x-blindmatch-client": req.client_id},
                timeout=120,
            )
            if r.status_code >= 400:
                body = r.json()
                raise RemoteError(r.status_code, body["error"], body["detail"])
            ours = {k: v for k, v in r.headers.items() if k.startswith("x-blindmatch")}
            return Reply(r.content, headers=ours)

        return handler

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(e.method, e.path, self._forward(e.method, e.path), e.max_body, e.rate_limited, e.admin)
            for e in self._template.endpoints()
        ]

    def setup_bytes(self) -> int:
        return self._template.setup_bytes()

    def server_verdicts(self, account: str) -> list[ServerVerdict]:
        r = _http.get(
            f"{self._live.url}/v1/{self._protocol}/admin/verdicts",
            headers={"authorization": f"Bearer {self._token}", "x-blindmatch-account": account},
            timeout=60,
        )
        r.raise_for_status()
        return [ServerVerdict(v["matched"], at=v["at"]) for v in r.json()["verdicts"]]

    def close(self) -> None:
        self._live.stop()


def open_multi_process(proto: Protocol, hashes: HashSet, workdir: Path) -> PartiesProxy:
    """Start ``proto``'s server processes on a set directory of ``hashes``; a proxy to them."""
    token = secrets.token_urlsafe(16)
    sd = SetDir.build(workdir / "set", hashes.algo, hashes.values())
    live = LiveParties(sd.path, env={"BLINDMATCH_ADMIN_TOKEN": token}).start()
    return PartiesProxy(proto.open_server(hashes, workdir / "template", {}), live, proto.name, token)
