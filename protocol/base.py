"""The one small interface every private-set-membership protocol implements.

Why this shape (after ThreatExchange's ``SignalType``): the server, the CLI, the
simulator and the benchmarks never special-case a protocol. Each protocol module
defines one ``Protocol`` subclass that declares its properties and leakage and
builds a ``ServerHalf`` (a list of HTTP-agnostic ``Endpoint`` handlers over bytes)
and a ``ClientHalf`` (which talks to those endpoints through a ``Transport``).
The same halves run in-process (``LocalTransport``) or over real HTTP
(``blindmatch.client.HttpTransport``), and byte counts come from the transport,
so reported bandwidth is what actually crossed the wire.

What a caller needs to know about a protocol it asks the protocol, never by
guessing attribute names: its option types (``server_options_type``,
``client_options_type``, validated dataclasses from ``options``), its cost
floor (``cost_floor``, counted primitives from ``costfloor``) and, for a
protocol whose server learns verdicts, what it learned about an account
(``ServerHalf.server_verdicts``).
"""

from __future__ import annotations

import enum
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .costfloor import CostFloor
from .errors import BodyTooLargeError, UnknownProtocolError
from .hashes import HashAlgo, HashSet, HashValue
from .options import NoOptions, Options, OptionsIn

__all__ = [
    "REGISTRY",
    "ClientHalf",
    "Endpoint",
    "Leakage",
    "Learner",
    "LocalTransport",
    "Matching",
    "Protocol",
    "Query",
    "Reply",
    "Request",
    "ScanResult",
    "ServerHalf",
    "ServerVerdict",
    "Transport",
    "TransportReply",
    "get_protocol",
    "register",
]

_T = TypeVar("_T")


class Learner(enum.Enum):
    """Which party learns the match verdict."""

    NOBODY = "nobody"
    CLIENT = "client"
    SERVER = "server"
    BOTH = "both"  # the non-private baseline: server computes it and tells the client
    CLIENT_OR_SERVER = "client-or-server"  # chosen per query (mode)


class Matching(enum.Enum):
    EXACT = "exact"
    FUZZY = "fuzzy"


@dataclass(frozen=True)
class Leakage:
    """What each party learns, in plain words; collected in docs/threat-model.md."""

    client: tuple[str, ...]
    server: tuple[str, ...]
    network: tuple[str, ...]
    server_sees_hash: bool
    client_sees_set: bool


@dataclass(frozen=True)
class Request:
    """What an endpoint handler receives: raw body, lower-cased headers, caller id."""

    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    client_id: str = "local"


@dataclass(frozen=True)
class Reply:
    body: bytes
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    media_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Endpoint:
    """One route under ``/v1/<protocol>/<path>``."""

    method: str
    path: str
    handler: Callable[[Request], Reply]
    max_body: int = 64 * 1024
    rate_limited: bool = False
    admin: bool = False
    summary: str = ""
    cost: Callable[[bytes], int] | None = None  # rate-limit tokens per call (e.g. batch size)


@dataclass(frozen=True)
class TransportReply:
    status: int
    body: bytes
    headers: Mapping[str, str]


class Transport(ABC):
    """Carries bytes between a client half and a server half and counts them."""

    def __init__(self) -> None:
        self.bytes_up = 0
        self.bytes_down = 0

    @abstractmethod
    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        """Send one request; ``path`` is relative to ``/v1/<protocol>/``."""

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> TransportReply:
        return self.request("GET", path, b"", headers)

    def post(self, path: str, body: bytes) -> TransportReply:
        return self.request("POST", path, body)

    def reset_counters(self) -> None:
        self.bytes_up = 0
        self.bytes_down = 0


class LocalTransport(Transport):
    """In-process transport: calls the server half's handlers directly.

    Counts only message bodies (no HTTP headers); ``HttpTransport`` counts the
    bodies too, so the two agree and HTTP overhead is reported separately.
    """

    def __init__(self, server: ServerHalf, client_id: str = "local") -> None:
        super().__init__()
        self._routes = {(e.method, e.path): e for e in server.endpoints()}
        self._client_id = client_id

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        ep = self._routes.get((method, path))
        if ep is None:
            raise UnknownProtocolError(f"no endpoint {method} {path}")
        if len(body) > ep.max_body:
            raise BodyTooLargeError(f"{len(body)} bytes > {ep.max_body}")
        self.bytes_up += len(body)
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        rep = ep.handler(Request(body=body, headers=hdrs, client_id=self._client_id))
        self.bytes_down += len(rep.body)
        return TransportReply(rep.status, rep.body, dict(rep.headers))


@dataclass(frozen=True)
class Query:
    """One item to scan: its hash, plus what fuzzy/robust protocols may use."""

    hash: HashValue
    float_values: Sequence[float] | None = None  # PDQ pre-quantisation values
    quality: int | None = None
    account: str | None = None
    associated_data: bytes = b""


@dataclass
class ScanResult:
    """The client's view of one scan. ``matched`` is None when the client cannot know.

    ``count`` is the number of set entries that matched, for a protocol asked to
    count (mpc's ``output="count"``); None otherwise.
    """

    matched: bool | None
    distance: int | None = None
    count: int | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    crypto_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerVerdict:
    """One verdict a server learned about an account.

    ``associated_data`` is the query's associated data when the server learns
    it with the verdict (a threshold protocol's reveal), else None; ``at`` is
    the Unix time the server learned it; ``count`` the number of matching set
    entries when the server learned a count (mpc's count mode), else None.
    """

    matched: bool
    associated_data: bytes | None = None
    at: float | None = None
    count: int | None = None

    def as_json(self) -> dict[str, Any]:
        ad = self.associated_data
        out = {"matched": self.matched, "associated_data": None if ad is None else ad.hex(), "at": self.at}
        if self.count is not None:
            out["count"] = self.count
        return out


class ServerHalf(ABC):
    """A protocol's server: owns keys and prepared artefacts, exposes endpoints."""

    @abstractmethod
    def endpoints(self) -> Sequence[Endpoint]:
        """The routes this protocol serves."""

    @abstractmethod
    def setup_bytes(self) -> int:
        """Bytes a new client must download once before its first query."""

    def close(self) -> None:  # noqa: B027 — optional hook, most servers hold nothing
        """Release resources (worker pools, database handles)."""

    def stats(self) -> dict[str, Any]:
        """Statistics of the last query this server answered (JSON values; benchmarks show
        them beside the timings). Empty by default."""
        return {}

    def settle(self, account: str) -> None:  # noqa: B027 — optional hook
        """Finish verdict work already owed for ``account`` (e.g. queued reveals), then return.

        An operator's "process now"; ``server_verdicts`` afterwards is complete
        for everything received so far. Servers that decide inline need nothing.
        """

    def server_verdicts(self, account: str) -> list[ServerVerdict]:
        """What this server has learned about ``account``'s queries, in arrival order.

        Empty for protocols whose server learns nothing (the default). A server
        that learns every verdict lists one per query; one that learns only
        matches past a threshold lists only those, each with its associated data.
        """
        return []


class ClientHalf(ABC):
    """A protocol's client: hides the hash and interprets the server's answers."""

    @abstractmethod
    def scan(self, query: Query, transport: Transport) -> ScanResult:
        """Run one membership query end to end."""

    def scan_many(self, queries: Sequence[Query], transport: Transport) -> list[ScanResult]:
        """Batch entry point; protocols that can batch override it."""
        return [self.scan(q, transport) for q in queries]


class ServerFactory(typing.Protocol):
    """A server half's class: built from the set, its state folder and parsed options."""

    def __call__(self, hashes: HashSet, state_dir: Path, options: Any, /) -> ServerHalf: ...


class ClientFactory(typing.Protocol):
    """A client half's class: built from the hash algorithm, a cache folder and parsed options."""

    def __call__(self, algo: HashAlgo, cache_dir: Path | None, options: Any, /) -> ClientHalf: ...


class Protocol(ABC):
    """Registry entry: declared properties plus factories for both halves."""

    name: ClassVar[str]
    protocol_id: ClassVar[int]
    learner: ClassVar[Learner]
    matching: ClassVar[Matching]
    leakage: ClassVar[Leakage]
    private: ClassVar[bool] = True
    supported_algos: ClassVar[tuple[str, ...]] = ("pdq", "phash", "dhash", "sha256")
    # >1: the server side is that many cooperating processes (``server.testing.LiveParties``);
    # it cannot run in-process, so tools start the real processes on loopback instead
    server_processes: ClassVar[int] = 1
    server_options_type: ClassVar[type[Options]] = NoOptions
    client_options_type: ClassVar[type[Options]] = NoOptions
    # The halves' classes, built as ``(hashes, state_dir, options)`` and ``(algo, cache_dir,
    # options)`` with parsed options; a protocol that builds a half otherwise leaves its
    # type None and overrides ``open_server`` or ``new_client`` (``register`` checks one is there)
    server_half_type: ClassVar[ServerFactory | None] = None
    client_half_type: ClassVar[ClientFactory | None] = None

    def server_options(self, options: OptionsIn = None) -> Options:
        """Validated server options (``OptionError`` for unknown keys or bad values)."""
        return self.server_options_type.from_options(options)

    def client_options(self, options: OptionsIn = None) -> Options:
        """Validated client options (``OptionError`` for unknown keys or bad values)."""
        return self.client_options_type.from_options(options)

    def cost_floor(
        self, set_size: int, algo: HashAlgo,
        server_options: OptionsIn = None, client_options: OptionsIn = None,
    ) -> CostFloor | None:
        """The protocol's physical bound for one set and one query (None: none claimed).

        Counts of primitive operations and bytes that any implementation of
        this protocol must spend, at these options; the benchmark measures the
        primitives and reports each figure against the floor.
        """
        return None

    def open_server(
        self, hashes: HashSet, state_dir: Path, options: OptionsIn = None
    ) -> ServerHalf:
        """Load or create keys and artefacts under ``state_dir`` and serve ``hashes``.

        ``options`` is parsed by ``server_options`` (a mapping or the typed object).
        """
        make = _declared(self, type(self).server_half_type, "server_half_type")
        return make(hashes, state_dir, self.server_options(options))

    def new_client(
        self, algo: HashAlgo, cache_dir: Path | None = None, options: OptionsIn = None
    ) -> ClientHalf:
        """A client for sets of ``algo`` hashes; ``cache_dir`` keeps one-time downloads.

        ``options`` is parsed by ``client_options`` (a mapping or the typed object).
        """
        make = _declared(self, type(self).client_half_type, "client_half_type")
        return make(algo, cache_dir, self.client_options(options))

    @abstractmethod
    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        """Predicted one-time client download for a set of ``set_size`` hashes."""


def _declared(proto: Protocol, value: _T | None, attr: str) -> _T:
    if value is None:
        raise TypeError(f"{type(proto).__name__} sets no {attr}")
    return value


REGISTRY: dict[str, Protocol] = {}


def register(proto: Protocol) -> Protocol:
    """Add a protocol; names and ids must be unique."""
    for attr in ("name", "protocol_id", "learner", "matching", "leakage"):
        if not hasattr(proto, attr):
            raise TypeError(f"{type(proto).__name__} lacks declared property {attr!r}")
    for half_type, factory in (("server_half_type", "open_server"), ("client_half_type", "new_client")):
        if getattr(proto, half_type) is None and getattr(type(proto), factory) is getattr(Protocol, factory):
            raise TypeError(f"{type(proto).__name__} sets neither {half_type} nor its own {factory}")
    if proto.name in REGISTRY:
        raise ValueError(f"protocol name {proto.name!r} registered twice")
    if any(p.protocol_id == proto.protocol_id for p in REGISTRY.values()):
        raise ValueError(f"protocol id {proto.protocol_id} registered twice")
    REGISTRY[proto.name] = proto
    return proto


def get_protocol(name: str) -> Protocol:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownProtocolError(
            f"unknown protocol {name!r}; registered: {sorted(REGISTRY)}"
        ) from None


def elapsed_ms(t0: float) -> float:
    """Milliseconds since ``t0`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - t0) * 1000.0
