"""Small but complete protocols used only by the simulator's tests.

The simulator must pick up protocols that are registered after it was written
and handle every kind the interface allows. These two cover the kinds ``plain``
does not: a server-learns protocol with a reveal threshold (``RevealPlain``, the
shape of ``tpsi``) and an exact client-learns matcher with multi-probe
(``ExactPlain``, the shape of ``oprf``). They are not private (the hash travels
in the clear); they are registered only inside tests, via ``registered``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from blindmatch.protocol import (
    REGISTRY,
    ClientHalf,
    CostFloor,
    Endpoint,
    Floor,
    HashAlgo,
    HashSet,
    Leakage,
    Learner,
    Matching,
    Options,
    OptionsIn,
    Protocol,
    Query,
    Reply,
    Request,
    ScanResult,
    ServerHalf,
    ServerVerdict,
    Term,
    Transport,
    option,
)
from blindmatch.protocol.hamming import HammingIndex
from blindmatch.protocol.multiprobe import probe_rows

__all__ = ["ExactPlain", "LogPlain", "RevealPlain", "registered"]


@dataclass(frozen=True)
class RevealOptions(Options):
    protocol = "test-reveal"
    threshold: int = option(2, "matches before the server reveals")
    radius: int | None = option(None, "Hamming radius (None: the algorithm's default)")


@dataclass(frozen=True)
class LogOptions(Options):
    protocol = "test-log"
    radius: int | None = option(None, "Hamming radius (None: the algorithm's default)")


@dataclass(frozen=True)
class ExactOptions(Options):
    protocol = "test-exact"
    probe_bits: int = option(0, "multi-probe bits")


class _RevealServer(ServerHalf):
    def __init__(self, hashes: HashSet, state_dir: Path, options: RevealOptions | LogOptions) -> None:
        self.index = HammingIndex(hashes)
        self.radius = hashes.algo.default_threshold if options.radius is None else options.radius
        self.threshold = options.threshold if isinstance(options, RevealOptions) else 10**9
        self.seen: dict[str, list[tuple[bytes, bool]]] = {}

    def _submit(self, req: Request) -> Reply:
        (alen,) = struct.unpack(">H", req.body[:2])
        account = req.body[2 : 2 + alen].decode()
        (dlen,) = struct.unpack(">H", req.body[2 + alen : 4 + alen])
        ad = req.body[4 + alen : 4 + alen + dlen]
        raw = req.body[4 + alen + dlen :]
        _, d = self.index.nearest(self.index.hashes.algo.from_bytes(raw))
        self.seen.setdefault(account, []).append((ad, d <= self.radius))
        return Reply(b"ok")

    def server_verdicts(self, account: str) -> list[ServerVerdict]:
        items = self.seen.get(account, [])
        if sum(m for _, m in items) < self.threshold:
            return []
        return [ServerVerdict(True, ad) for ad, m in items if m]

    def endpoints(self) -> Sequence[Endpoint]:
        return [Endpoint("POST", "submit", self._submit, max_body=4096)]

    def setup_bytes(self) -> int:
        return 0


class _RevealClient(ClientHalf):
    def __init__(self, algo: HashAlgo, cache_dir: Path | None, options: Options) -> None:
        pass

    def scan(self, query: Query, transport: Transport) -> ScanResult:
        acc = (query.account or "").encode()
        body = struct.pack(">H", len(acc)) + acc + struct.pack(">H", len(query.associated_data))
        body += query.associated_data + query.hash.raw
        transport.post("submit", body)
        return ScanResult(matched=None)


class RevealPlain(Protocol):
    name = "test-reveal"
    protocol_id = 250
    learner = Learner.SERVER
    matching = Matching.FUZZY
    private = False
    server_options_type = RevealOptions
    server_half_type = _RevealServer
    client_half_type = _RevealClient
    leakage = Leakage(
        client=("nothing",),
        server=("everything",),
        network=("sizes",),
        server_sees_hash=True,
        client_sees_set=False,
    )

    def cost_floor(
        self, set_size: int, algo: HashAlgo,
        server_options: OptionsIn = None, client_options: OptionsIn = None,
    ) -> CostFloor:
        """A plaintext scan of the set per query, and the hash plus its framing on the wire."""
        return CostFloor(
            server_cpu_s=Floor((Term(1, f"stream_pass.{set_size}x{algo.words}"),), "one pass over the set"),
            bytes_per_query=Floor.constant(float(algo.nbytes), "the hash itself"),
            params={"threshold": RevealOptions.from_options(server_options).threshold},
        )

    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        return 0


class _ExactServer(ServerHalf):
    def __init__(self, hashes: HashSet, state_dir: Path, options: Options) -> None:
        self.members = set(
            hashes.raw()[i : i + hashes.algo.nbytes]
            for i in range(0, len(hashes) * hashes.algo.nbytes, hashes.algo.nbytes)
        )
        self.n = hashes.algo.nbytes

    def _lookup(self, req: Request) -> Reply:
        if len(req.body) % self.n:
            raise ValueError("bad length")
        probes = [req.body[i : i + self.n] for i in range(0, len(req.body), self.n)]
        return Reply(bytes(int(p in self.members) for p in probes))

    def endpoints(self) -> Sequence[Endpoint]:
        return [Endpoint("POST", "lookup", self._lookup, max_body=1 << 16)]

    def setup_bytes(self) -> int:
        return 0


class _ExactClient(ClientHalf):
    def __init__(self, algo: HashAlgo, cache_dir: Path | None, options: ExactOptions) -> None:
        self.probe_bits = options.probe_bits

    def scan(self, query: Query, transport: Transport) -> ScanResult:
        fl = None if query.float_values is None else np.asarray(query.float_values, dtype=np.float32)
        probes = probe_rows(np.frombuffer(query.hash.raw, dtype=np.uint8), fl, self.probe_bits)
        up0, down0 = transport.bytes_up, transport.bytes_down
        rep = transport.post("lookup", probes.tobytes())
        return ScanResult(
            matched=any(rep.body),
            bytes_up=transport.bytes_up - up0,
            bytes_down=transport.bytes_down - down0,
        )


class ExactPlain(Protocol):
    name = "test-exact"
    protocol_id = 251
    learner = Learner.CLIENT
    matching = Matching.EXACT
    private = False
    client_options_type = ExactOptions
    server_half_type = _ExactServer
    client_half_type = _ExactClient
    leakage = Leakage(
        client=("verdict",),
        server=("every probe",),
        network=("sizes",),
        server_sees_hash=True,
        client_sees_set=False,
    )

    def cost_floor(
        self, set_size: int, algo: HashAlgo,
        server_options: OptionsIn = None, client_options: OptionsIn = None,
    ) -> CostFloor:
        """2^k probes up, one byte back per probe."""
        e = 1 << ExactOptions.from_options(client_options).probe_bits
        return CostFloor(
            bytes_per_query=Floor.constant(float(e * (algo.nbytes + 1)), f"{e} probes × (hash + 1 B)"),
            params={"probes": e},
        )

    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        return 0


class _LogServer(_RevealServer):
    """Keeps an ordered verdict log per client (the shape of ``he`` server-learns); no reveals."""

    def server_verdicts(self, account: str) -> list[ServerVerdict]:
        return [ServerVerdict(m) for _, m in self.seen.get(account, [])]


class LogPlain(RevealPlain):
    name = "test-log"
    protocol_id = 252
    server_options_type = LogOptions
    server_half_type = _LogServer


@contextmanager
def registered(*protos: Protocol) -> Iterator[None]:
    for p in protos:
        REGISTRY[p.name] = p
    try:
        yield
    finally:
        for p in protos:
            REGISTRY.pop(p.name, None)
