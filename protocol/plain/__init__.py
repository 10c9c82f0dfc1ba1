"""``plain``: the client sends its hash in the clear; the server answers.

Not private. It is the reference point every private protocol's cost and
accuracy is measured against ("the price of privacy"), and the model for how a
protocol plugs into the registry.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import (
    ClientHalf,
    Endpoint,
    Leakage,
    Learner,
    Matching,
    Protocol,
    Query,
    Reply,
    Request,
    ScanResult,
    ServerHalf,
    Transport,
    elapsed_ms,
    register,
)
from ..costfloor import CostFloor, Floor, Term
from ..errors import BadHashError, DecodeError, LengthError, OptionError
from ..hamming import HammingIndex
from ..hashes import ALGO_IDS, HashAlgo, HashSet, HashValue, get_algo
from ..options import NoOptions, Options, option
from ..wire import decode_fields, encode_fields

__all__ = ["PLAIN", "PlainQuery", "PlainReply", "PlainServerOptions"]

PROTOCOL_ID = 1
_MSG_QUERY = 1
_MSG_REPLY = 2
_ID_TO_ALGO = {v: k for k, v in ALGO_IDS.items()}


class PlainQuery:
    """Wire message: ``algo id (1 byte) || hash bytes``."""

    def __init__(self, hash: HashValue) -> None:
        self.hash = hash

    def to_bytes(self) -> bytes:
        return encode_fields(
            PROTOCOL_ID, _MSG_QUERY, [bytes([ALGO_IDS[self.hash.algo.name]]), self.hash.raw]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PlainQuery:
        algo_b, raw = decode_fields(data, PROTOCOL_ID, _MSG_QUERY, 2, max_field=64)
        if len(algo_b) != 1 or algo_b[0] not in _ID_TO_ALGO:
            raise DecodeError("unknown hash algorithm id")
        algo = get_algo(_ID_TO_ALGO[algo_b[0]])
        try:
            return cls(algo.from_bytes(raw))
        except BadHashError as e:
            raise LengthError(e.detail) from None


class PlainReply:
    """Wire message: ``matched (1 byte) || distance (u16, 0xffff = none)``."""

    def __init__(self, matched: bool, distance: int | None) -> None:
        self.matched = matched
        self.distance = distance

    def to_bytes(self) -> bytes:
        d = 0xFFFF if self.distance is None else self.distance
        return encode_fields(
            PROTOCOL_ID, _MSG_REPLY, [bytes([int(self.matched)]), struct.pack(">H", d)]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PlainReply:
        m, d = decode_fields(data, PROTOCOL_ID, _MSG_REPLY, 2, max_field=2)
        if len(m) != 1 or m[0] > 1 or len(d) != 2:
            raise DecodeError("malformed plain reply")
        (dist,) = struct.unpack(">H", d)
        return cls(bool(m[0]), None if dist == 0xFFFF else dist)


@dataclass(frozen=True)
class PlainServerOptions(Options):
    """Server options (``BLINDMATCH_PLAIN_*``)."""

    protocol = "plain"

    radius: int | None = option(None, "Hamming radius of a match (None: the algorithm's default)")

    def check(self) -> None:
        if self.radius is not None and self.radius < 0:
            raise OptionError("plain option radius must be >= 0")


class PlainServer(ServerHalf):
    def __init__(self, hashes: HashSet, radius: int) -> None:
        self.index = HammingIndex(hashes)
        self.radius = radius

    def _query(self, req: Request) -> Reply:
        q = PlainQuery.from_bytes(req.body)
        if q.hash.algo != self.index.hashes.algo:
            raise BadHashError(
                f"server holds {self.index.hashes.algo.name} hashes, query is {q.hash.algo.name}"
            )
        _, dist = self.index.nearest(q.hash)
        return Reply(PlainReply(dist <= self.radius, dist).to_bytes())

    def endpoints(self) -> Sequence[Endpoint]:
        return [Endpoint(
                "POST", "query", self._query, max_body=256, rate_limited=True,
                summary="Plaintext lookup",
            )]

    def setup_bytes(self) -> int:
        return 0


class PlainClient(ClientHalf):
    def scan(self, query: Query, transport: Transport) -> ScanResult:
        up0, down0 = transport.bytes_up, transport.bytes_down
        t0 = time.perf_counter()
        body = PlainQuery(query.hash).to_bytes()
        cpu = elapsed_ms(t0)
        rep = transport.post("query", body)
        t1 = time.perf_counter()
        r = PlainReply.from_bytes(rep.body)
        cpu += elapsed_ms(t1)
        return ScanResult(
            matched=r.matched,
            distance=r.distance,
            bytes_up=transport.bytes_up - up0,
            bytes_down=transport.bytes_down - down0,
            crypto_ms=cpu,
        )


class Plain(Protocol):
    name = "plain"
    protocol_id = PROTOCOL_ID
    learner = Learner.BOTH
    matching = Matching.FUZZY
    private = False
    server_options_type = PlainServerOptions
    client_options_type = NoOptions
    leakage = Leakage(
        client=("whether its hash matched, and the distance to the nearest set entry",),
        server=("the client's hash in full", "the verdict", "query timing and volume"),
        network=("with TLS: request/response sizes and timing; without TLS: everything",),
        server_sees_hash=True,
        client_sees_set=False,
    )

    def open_server(
        self, hashes: HashSet, state_dir: Path, options: Mapping[str, Any] | Options | None = None
    ) -> ServerHalf:
        radius = PlainServerOptions.from_options(options).radius
        return PlainServer(hashes, hashes.algo.default_threshold if radius is None else radius)

    def new_client(
        self,
        algo: HashAlgo,
        cache_dir: Path | None = None,
        options: Mapping[str, Any] | Options | None = None,
    ) -> ClientHalf:
        NoOptions.from_options(options)
        return PlainClient()

    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        return 0

    def cost_floor(
        self,
        set_size: int,
        algo: HashAlgo,
        server_options: Mapping[str, Any] | Options | None = None,
        client_options: Mapping[str, Any] | Options | None = None,
    ) -> CostFloor:
        """A plaintext scan must read every set entry once: one XOR pass over the set."""
        return CostFloor(
            server_cpu_s=Floor(
                (Term(1, f"stream_pass.{set_size}x{algo.words}"),),
                f"one XOR pass over n×{algo.nbytes} B (measured memory floor)",
            ),
            bytes_per_query=Floor.constant(
                float(algo.nbytes + 1), f"{algo.nbytes} B hash up + 1 B verdict down"
            ),
        )


PLAIN = register(Plain())
