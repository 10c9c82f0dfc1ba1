"""Reliability harness: find every wire decoder and endpoint, record real samples, mutate them.

Why generic: protocols land as separate modules, each with its own message
classes. Nothing here names a protocol. Decoders are found by walking the
``blindmatch.protocol`` and ``blindmatch.client`` packages (and each registered
protocol's own module) for classes with a ``from_bytes`` classmethod and a
``to_bytes`` method. Valid samples come from running each registered protocol's
real client half against its real server half over a recording
``LocalTransport`` on a small set, so every endpoint gets real request and
response bytes without the harness knowing any constructor. Mutations of those
samples (truncation, extension, bit flips, wrong version/protocol/type bytes,
lying length prefixes, the identity and RFC 9496 non-canonical encodings and
non-canonical scalars in 32-byte slots, random bytes) are then fed to decoders,
server endpoint handlers and client halves. The rule checked everywhere: bad
bytes give a ``BlindmatchError`` (or decode to a *different* valid value), never
any other exception, and never a 5xx reply.

Used by tests/test_decoders_hypothesis.py, fuzz/ and ``python -m
blindmatch.reliability``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import pkgutil
import random
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rbcl
from blindmatch.protocol import (
    REGISTRY,
    BlindmatchError,
    ClientHalf,
    Endpoint,
    HashSet,
    LocalTransport,
    Protocol,
    Query,
    Request,
    ServerHalf,
    TransportReply,
    get_algo,
)

from blindmatch.corpus import random_set

__all__ = [
    "BAD_SCALARS",
    "IDENTITY",
    "LIVE_ENV",
    "RISTRETTO_BAD_ENCODINGS",
    "SERVER_OPTIONS",
    "BatteryResult",
    "Decoder",
    "Exchange",
    "Mutation",
    "Outcome",
    "PointMap",
    "Recording",
    "RecordingTransport",
    "battery_client",
    "battery_decoder",
    "battery_endpoint",
    "check_client",
    "check_decoder",
    "check_endpoint",
    "client_targets",
    "discover_decoders",
    "frame_layout",
    "load_prepared",
    "mutations",
    "nested_frames",
    "point_map",
    "point_mutations",
    "prepare_set_dir",
    "record_all",
    "record_protocol",
    "reencode",
    "samples_for",
]

IDENTITY = bytes(32)

# RFC 9496 Appendix A.2 "Invalid encodings" (also libsodium test/default/core_ristretto255.c):
# non-canonical field encodings, negative field elements, non-square x^2, negative xy, s = -1.
RISTRETTO_BAD_ENCODINGS: tuple[bytes, ...] = tuple(bytes.fromhex(h) for h in (
    "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
    "c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562",
    "c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78",
    "47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24",
    "f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72",
    "87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309",
    "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
    "4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f",
    "de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b",
    "bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042",
    "2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08",
    "f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22",
    "8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731",
    "2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b",
    "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
    "a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220",
    "d483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e",
    "8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32",
    "32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b",
    "227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165",
    "5c37cc491da847cfeb9281d407efc41e15144c876e0170b499a96a22ed31e01e",
    "445425117cb8c90edcbc7c1cc0e74f747f2c1efa5630a967c64f287792a48a4b",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
))
_ORDER = 2**252 + 27742317777372353535851937790883648493
# Scalars that are not reduced mod the group order (a strict decoder rejects them).
BAD_SCALARS: tuple[bytes, ...] = tuple(
    v.to_bytes(32, "little") for v in (_ORDER, _ORDER + 1, 2**255 - 19, 2**256 - 1)
)

# Server options per protocol, mirroring what server/app.py passes (protocols may reject
# options they do not know); a low tpsi threshold so reveals happen on a small sample.
SERVER_OPTIONS: dict[str, dict[str, Any]] = {
    "tpsi": {"threshold": 2, "synthetic_rate": 0.05},
    "he": {"worker_memory_mb": 4096},
    "oprf": {},
}
# Client options each protocol needs against ``SERVER_OPTIONS`` (tpsi's client floors
# refuse t = 2 by default; the harness runs it on purpose so reveals happen quickly).
CLIENT_OPTIONS: dict[str, dict[str, Any]] = {"tpsi": {"min_threshold": 2}}


def client_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``options`` on top of what protocol ``name`` needs against the harness servers."""
    return {**CLIENT_OPTIONS.get(name, {}), **(options or {})}


# Client option variants tried in turn; a variant with an option the protocol does not declare
# is skipped, one it rejects is recorded as an error.
CLIENT_VARIANTS: tuple[dict[str, Any], ...] = (
    {},
    {"probe_bits": 2},
    {"mode": "server-learns", "allow_server_learns": True},
)


# ---------------------------------------------------------------- decoders

@dataclass
class Decoder:
    """One decoder of untrusted bytes: ``fn(data, **fill)``, re-encoded by ``obj.to_bytes()``.

    Found by shape, not by name of protocol: a ``from_bytes`` classmethod (the
    CONVENTIONS message pattern), any other classmethod or module function named
    ``from_*`` / ``parse*`` / ``decode*`` / ``verify`` whose first argument is
    annotated ``bytes``. Extra integer parameters (caps such as ``max_batch``, ring
    degrees) are filled from traffic by ``samples_for``; any other required parameter
    makes the decoder indirect (exercised only through its endpoint).
    """

    name: str
    fn: Callable[..., Any]
    extra_params: tuple[str, ...]  # required parameters that cannot be filled
    fill: tuple[tuple[str, int], ...] = ()  # learned from recorded traffic by ``samples_for``
    fixed: tuple[tuple[str, Any], ...] = ()  # e.g. a HashAlgo argument: PDQ
    text: bool = False  # takes ``str`` (JSON and the like): bytes are decoded as UTF-8 first

    @property
    def direct(self) -> bool:
        return not self.extra_params

    def decode(self, data: bytes) -> Any:
        arg: bytes | str = data.decode("utf-8", "replace") if self.text else data
        return self.fn(arg, **dict(self.fill), **dict(self.fixed))


INT_FILL = 256
# Candidate values for integer context parameters (batch caps, ring degrees, group counts):
# ``samples_for`` keeps the combination under which the most recorded bodies round-trip.
INT_CANDIDATES = (256, 1024, 4096, 8192, 16384, 32768, 1 << 20)


def _walk(pkg_name: str) -> list[Any]:
    mods: list[Any] = []
    try:
        pkg = importlib.import_module(pkg_name)
    except ImportError:
        return mods
    mods.append(pkg)
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), pkg_name + "."):
        try:
            mods.append(importlib.import_module(info.name))
        except Exception:  # noqa: S112 — an optional module that cannot import is not a decoder
            continue
    return mods


_DECODER_NAMES = ("from_", "parse", "decode", "verify")


def _bytes_first(fn: Any, skip: int) -> list[inspect.Parameter] | None:
    """Parameters after the data argument if ``fn``'s first real argument is ``bytes``."""
    try:
        params = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None
    if not params or params[0].annotation not in (bytes, "bytes", str, "str"):
        return None
    return params[1:]


def _decoder(name: str, fn: Any, rest: list[inspect.Parameter], text: bool) -> Decoder:
    required = [p for p in rest if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    named = [p for p in required if p.kind is not p.POSITIONAL_ONLY]
    ints = tuple((p.name, INT_FILL) for p in named if p.annotation in (int, "int"))
    fixed = tuple((p.name, get_algo("pdq")) for p in named if p.annotation in ("HashAlgo",))
    done = {n for n, _ in ints} | {n for n, _ in fixed}
    extra = tuple(p.name for p in required if p.name not in done)
    if len(ints) > 2:  # e.g. wire.decode_fields(data, protocol_id, msg_type, n_fields): no guessing
        extra, ints = extra + tuple(n for n, _ in ints), ()
    return Decoder(name, fn, extra, ints, fixed, text)


def _is_text(fn: Any, skip: int) -> bool:
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return bool(params) and params[0].annotation in (str, "str")


def _decoders_in(mod: Any) -> Iterator[Decoder]:
    modname = getattr(mod, "__name__", "")
    for attr, obj in list(vars(mod).items()):
        if isinstance(obj, type) and str(getattr(obj, "__module__", "")).startswith("blindmatch"):
            if obj.__module__ != modname:
                continue  # re-exported; found in its own module
            for cm_name, cm in vars(obj).items():
                if not isinstance(cm, classmethod) or not cm_name.startswith(_DECODER_NAMES):
                    continue
                if cm_name == "from_bytes" and not callable(getattr(obj, "to_bytes", None)):
                    continue
                rest = _bytes_first(cm.__func__, 1)
                if rest is None:
                    continue
                label = f"{modname}.{obj.__qualname__}" + ("" if cm_name == "from_bytes" else f".{cm_name}")
                yield _decoder(label, getattr(obj, cm_name), rest, _is_text(cm.__func__, 1))
        elif inspect.isfunction(obj) and obj.__module__ == modname and attr.startswith(_DECODER_NAMES[1:]):
            rest = _bytes_first(obj, 0)
            if rest is not None:
                yield _decoder(f"{modname}.{attr}", obj, rest, _is_text(obj, 0))


def discover_decoders() -> list[Decoder]:
    """Every decoder of untrusted bytes in protocol/, client/ and each registered protocol."""
    modules: list[Any] = []
    modules += _walk("blindmatch.protocol")
    modules += _walk("blindmatch.client")
    for proto in REGISTRY.values():
        mod = sys.modules.get(type(proto).__module__)
        if mod is not None:
            modules.append(mod)
    found: dict[str, Decoder] = {}
    for mod in modules:
        for d in _decoders_in(mod):
            found.setdefault(d.name, d)
    return [found[k] for k in sorted(found)]


# ---------------------------------------------------------------- recording

@dataclass(frozen=True)
class Exchange:
    """One request/response pair seen on a transport."""

    protocol: str
    method: str
    path: str
    request: bytes
    status: int
    response: bytes
    seconds: float = 0.0  # server handler time, so costly endpoints can be fuzzed sparingly


class RecordingTransport(LocalTransport):
    """A ``LocalTransport`` that records every exchange and may rewrite responses.

    ``respond(method, path, body) -> bytes | None`` lets a test replace the real
    server's answer (used to feed mutated responses to a real client half).
    """

    def __init__(
        self,
        server: ServerHalf,
        protocol: str = "",
        client_id: str = "local",
        respond: Callable[[str, str, bytes], bytes | None] | None = None,
    ) -> None:
        super().__init__(server, client_id)
        self.protocol = protocol
        self.log: list[Exchange] = []
        self._respond = respond

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        t0 = time.perf_counter()
        rep = super().request(method, path, body, headers)
        dt = time.perf_counter() - t0
        if self._respond is not None:
            new = self._respond(method, path, rep.body)
            if new is not None:
                self.bytes_down += len(new) - len(rep.body)
                rep = TransportReply(rep.status, new, rep.headers)
        self.log.append(Exchange(self.protocol, method, path, bytes(body), rep.status, rep.body, dt))
        return rep


def _floats_for(h: Any, rng: np.random.Generator) -> list[float]:
    """PDQ-like float values consistent with the hash bits (for multi-probe clients)."""
    bits = h.bits().astype(np.float64)
    mags = np.abs(rng.standard_normal(bits.size)) + 0.01
    return [float(x) for x in (2 * bits - 1) * mags]


def queries(hs: HashSet, n_member: int, n_other: int, seed: int = 1, account: str = "acct") -> list[Query]:
    """Members (exact set entries) and far-away non-members, with floats and AD."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_member + n_other):
        v = hs.value(int(rng.integers(0, len(hs))))
        if i >= n_member:
            v = v.flip(int(p) for p in rng.choice(hs.algo.bits, hs.algo.bits // 2, replace=False))
        fl = _floats_for(v, rng) if hs.algo.name == "pdq" else None
        out.append(Query(v, fl, 90, account, f"ad-{seed}-{i}".encode()))
    return out


@dataclass
class Recording:
    """A protocol opened on a small set plus the exchanges its real client made."""

    protocol: Protocol
    server: ServerHalf
    hashes: HashSet
    state_dir: Path
    exchanges: list[Exchange] = field(default_factory=list)
    client_options: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    eps: list[Endpoint] = field(default_factory=list)
    _pmap: PointMap | None = None

    @property
    def name(self) -> str:
        return self.protocol.name

    def endpoints(self) -> list[Endpoint]:
        return list(self.eps)

    @property
    def in_process(self) -> bool:
        """Whether its handlers can run here. A multi-process protocol (mpc) answers only
        from its real party processes; the half opened in-process is an unconfigured stub
        that refuses every call with 503, so batteries and fuzzing drive it over HTTP
        instead (tests/test_limits.py, tests/test_api_schemathesis.py)."""
        return self.protocol.server_processes == 1

    def requests(self, method: str, path: str) -> list[bytes]:
        return _uniq(e.request for e in self.exchanges if (e.method, e.path) == (method, path))

    def seconds(self, method: str, path: str) -> float:
        """Slowest recorded handler time for an endpoint."""
        return max((e.seconds for e in self.exchanges if (e.method, e.path) == (method, path)), default=0.0)

    def responses(self, method: str, path: str) -> list[bytes]:
        return _uniq(
            e.response for e in self.exchanges
            if (e.method, e.path) == (method, path) and e.status < 300
        )

    def new_client(self, options: Mapping[str, Any], cache_dir: Path | None = None) -> ClientHalf:
        return self.protocol.new_client(
            self.hashes.algo, cache_dir, client_options(self.protocol.name, options)
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.close()

    def points(self) -> PointMap:
        """Where this protocol's recorded messages carry ristretto255 points (cached)."""
        if self._pmap is None:
            decs = discover_decoders()
            self._pmap = point_map(decs, samples_for(decs, [self], per=16))
        return self._pmap


def _uniq(items: Iterator[bytes] | Sequence[bytes]) -> list[bytes]:
    seen: dict[bytes, None] = {}
    for b in items:
        seen.setdefault(b, None)
    return list(seen)


def record_protocol(
    proto: Protocol, state_dir: Path, set_size: int = 64, rounds: int = 2, algo: str | None = None,
    hashes: HashSet | None = None, server_dir: Path | None = None,
) -> Recording:
    """Open ``proto`` on a random set (or ``hashes``, with its state in ``server_dir``, e.g. a
    set directory's ``state/<name>`` so a LiveServer later accepts the same messages) and run
    its real client over a recording transport."""
    algo = algo or ("pdq" if "pdq" in proto.supported_algos else proto.supported_algos[0])
    hs = hashes if hashes is not None else random_set(set_size, algo)
    state_dir.mkdir(parents=True, exist_ok=True)
    srv = proto.open_server(hs, server_dir or state_dir / "server", dict(SERVER_OPTIONS.get(proto.name, {})))
    rec = Recording(proto, srv, hs, state_dir, eps=list(srv.endpoints()))
    for vi, copts in enumerate(CLIENT_VARIANTS):
        if not set(copts) <= proto.client_options_type.names():
            continue  # an option this protocol does not declare
        try:
            client = proto.new_client(hs.algo, state_dir / f"cache{vi}", client_options(proto.name, copts))
        except (BlindmatchError, TypeError, ValueError) as e:
            rec.errors.append(f"client variant {copts}: {type(e).__name__}: {e}")
            continue
        tr = RecordingTransport(srv, proto.name, client_id=f"rec{vi}")
        ok = False
        # the first variant does single and batched scans of members and non-members; the
        # others one member scan each (enough for new message shapes; HE queries are costly)
        for r in range(rounds if vi == 0 else 1):
            qs = queries(hs, 2, 1, seed=10 * vi + r, account=f"acct{vi}")
            try:
                t0 = time.monotonic()
                client.scan(qs[0], tr)
                slow = time.monotonic() - t0 > 2.0
                if vi == 0:
                    client.scan_many(qs[1:], tr)
                ok = True
                if slow:
                    break  # a protocol whose query takes seconds (HE): one round is enough
            except BlindmatchError as e:
                rec.errors.append(f"client variant {copts}: {type(e).__name__}: {e}")
                break
        if ok:
            rec.client_options.append(dict(copts))
        rec.exchanges += tr.log
    # GET endpoints the client did not call (admin listings, for example) still give samples.
    called = {(e.method, e.path) for e in rec.exchanges}
    probe = RecordingTransport(srv, proto.name, client_id="probe")
    for ep in srv.endpoints():
        if ep.method == "GET" and (ep.method, ep.path) not in called:
            with contextlib.suppress(BlindmatchError):
                probe.get(ep.path)
    rec.exchanges += probe.log
    return rec


# ---------------------------------------------------------------- framing and samples

def frame_layout(data: bytes) -> list[tuple[int, int]] | None:
    """(offset, length) of each field if ``data`` is a wire frame (any version/id), else None."""
    if len(data) < 4:
        return None
    count = data[3]
    pos, out = 4, []
    for _ in range(count):
        if pos + 4 > len(data):
            return None
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + n > len(data):
            return None
        out.append((pos, n))
        pos += n
    return out if pos == len(data) else None


def _frame_list(blob: bytes) -> list[tuple[int, int]] | None:
    """(offset, length) of each item if ``blob`` is a list of u32-length-prefixed frames."""
    pos, out = 0, []
    while pos < len(blob):
        if pos + 4 > len(blob):
            return None
        (n,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if pos + n > len(blob) or frame_layout(blob[pos : pos + n]) is None:
            return None
        out.append((pos, n))
        pos += n
    return out or None


def nested_frames(data: bytes, depth: int = 3, base: int = 0) -> list[tuple[int, bytes]]:
    """``(offset, frame)`` for ``data`` and every frame inside it: a field that is itself a
    wire frame, or a field holding a u32-length-prefixed list of frames (batches)."""
    out = [(base, data)]
    lay = frame_layout(data)
    if lay is None or depth == 0 or data[:1] != b"\x01":
        return out
    for off, n in lay:
        sub = data[off : off + n]
        if frame_layout(sub) is not None and sub[:1] == b"\x01":
            out += nested_frames(sub, depth - 1, base + off)
            continue
        items = _frame_list(sub) if n >= 8 else None
        for ioff, ilen in items or []:
            out += nested_frames(sub[ioff : ioff + ilen], depth - 1, base + off + ioff)
    return out


def nested_bodies(data: bytes, depth: int = 3) -> list[bytes]:
    return [b for _, b in nested_frames(data, depth)]


def _walk_bytes(
    obj: Any, path: tuple[Any, ...] = (), depth: int = 4
) -> Iterator[tuple[tuple[Any, ...], bytes]]:
    """(attribute path, value) for every 32-byte ``bytes`` reachable inside a decoded message."""
    if isinstance(obj, bytes | bytearray):
        if len(obj) == 32:
            yield path, bytes(obj)
        elif len(obj) % 32 == 0 and 32 < len(obj) <= 32 * 4096:  # packed element arrays
            for k in range(min(16, len(obj) // 32)):
                yield (*path, f"#{k}"), bytes(obj[32 * k : 32 * k + 32])
        return
    if depth == 0 or isinstance(obj, str | int | float | bool) or obj is None:
        return
    if isinstance(obj, tuple | list):
        for i, x in enumerate(obj[:64]):
            yield from _walk_bytes(x, (*path, i), depth - 1)
        return
    attrs = getattr(obj, "__dict__", None)
    if attrs is None and hasattr(obj, "__dataclass_fields__"):
        attrs = {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    for k, v in (attrs or {}).items():
        if not k.startswith("_"):
            yield from _walk_bytes(v, (*path, k), depth - 1)


def _learn_fill(d: Decoder, bodies: Sequence[bytes]) -> None:
    """Pick integer context values (e.g. ``poly_degree``) under which recorded bodies decode."""
    import itertools

    names = [n for n, _ in d.fill]
    cands = [b for b in bodies if len(b) >= 4][:400]
    best, best_n = d.fill, 0
    for combo in itertools.product(INT_CANDIDATES, repeat=len(names)):
        fill = tuple(zip(names, combo, strict=True))
        n = 0
        for b in cands:
            try:
                obj = d.fn(b.decode("utf-8", "replace") if d.text else b, **dict(fill), **dict(d.fixed))
                back = reencode(obj)
            except Exception:  # noqa: S112
                continue
            n += back is None or back == b
        if n > best_n:
            best, best_n = fill, n
    d.fill = best


def point_paths(dec: Decoder, samples: Sequence[bytes], min_samples: int = 4) -> set[tuple[Any, ...]]:
    """Attribute paths of a decoded message that hold a valid ristretto255 point in every sample.

    A random 32-byte string is a valid encoding with probability about 1/8, so a path
    counts only when at least ``min_samples`` *distinct* values were seen and all decode.
    """
    seen: dict[tuple[Any, ...], set[bytes]] = {}
    bad: set[tuple[Any, ...]] = set()
    for smp in samples:
        try:
            obj = dec.decode(smp)
        except Exception:  # noqa: S112
            continue
        for path, v in _walk_bytes(obj):
            if v == IDENTITY or not rbcl.crypto_core_ristretto255_is_valid_point(v):
                bad.add(path)
            else:
                seen.setdefault(path, set()).add(v)
    return {p for p, vals in seen.items() if len(vals) >= min_samples and p not in bad}


def point_offsets(dec: Decoder, frame: bytes, paths: set[tuple[Any, ...]]) -> list[int]:
    """Byte offsets in ``frame`` of the values at ``paths`` (only unambiguous ones)."""
    if not paths:
        return []
    try:
        obj = dec.decode(frame)
    except Exception:
        return []
    offs = []
    for path, v in _walk_bytes(obj):
        if path in paths and frame.count(v) == 1:
            offs.append(frame.index(v))
    return sorted(offs)


@dataclass
class PointMap:
    """Which decoders carry ristretto255 points where; built from recorded samples."""

    decoders: list[Decoder]
    paths: dict[str, set[tuple[Any, ...]]]

    def offsets(self, body: bytes) -> list[int]:
        """Absolute offsets of point values anywhere in ``body`` (nested frames included)."""
        out: set[int] = set()
        for base, frame in nested_frames(body):
            for d in self.decoders:
                p = self.paths.get(d.name)
                if p:
                    out.update(base + o for o in point_offsets(d, frame, p))
        return sorted(out)


def point_map(decoders: Sequence[Decoder], samples: Mapping[str, Sequence[bytes]]) -> PointMap:
    decs = [d for d in decoders if d.direct]
    return PointMap(decs, {d.name: point_paths(d, samples.get(d.name, [])) for d in decs})


def samples_for(
    decoders: Sequence[Decoder], recordings: Sequence[Recording], per: int = 12
) -> dict[str, list[bytes]]:
    """Recorded bodies (and nested frames) that a decoder parses and re-encodes exactly."""
    bodies: list[bytes] = []
    for rec in recordings:
        for e in rec.exchanges:
            for b in (e.request, e.response):
                if b:
                    bodies += nested_bodies(b)
    bodies = _uniq(bodies)
    out: dict[str, list[bytes]] = {}
    for d in decoders:
        if not d.direct:
            continue
        if len(d.fill) > 1 or (d.fill and d.fill[0][1] == INT_FILL):
            _learn_fill(d, bodies)
        got: list[bytes] = []
        for b in bodies:
            try:
                obj = d.decode(b)
                back = reencode(obj)
            except Exception:  # noqa: S112 — not this decoder's message
                continue
            # a tuple-returning decoder cannot be re-encoded; None means "not mine" (parse_inner)
            ok = obj is not None and (back is None or back == b)
            if ok:
                got.append(b)
        # keep variety: distinct lengths first, then the rest
        by_len: dict[int, bytes] = {}
        for b in got:
            by_len.setdefault(len(b), b)
        chosen = list(by_len.values()) + [b for b in got if b not in by_len.values()]
        out[d.name] = chosen[:per]
    return out


# ---------------------------------------------------------------- mutations

@dataclass(frozen=True)
class Mutation:
    """A named, replayable byte transformation (applied to live bytes of the same shape)."""

    kind: str
    args: tuple[int, ...] = ()
    payload: bytes = b""
    strict: bool = False  # True: the result must be rejected (identity/non-canonical in a point field)

    def apply(self, data: bytes) -> bytes:
        k, a = self.kind, self.args
        if k == "truncate":
            return data[: min(a[0], max(0, len(data) - 1))]
        if k == "extend":
            return data + self.payload
        if k == "flip":
            if not data:
                return b"\x01"
            b = bytearray(data)
            b[a[0] % len(b)] ^= 1 << a[1]
            return bytes(b)
        if k == "set_byte":
            if len(data) <= a[0]:
                return data + bytes([a[1]])
            b = bytearray(data)
            b[a[0]] = a[1] if b[a[0]] != a[1] else (a[1] + 1) % 256
            return bytes(b)
        if k in ("field_len", "chunk"):
            lay = frame_layout(data)
            if lay is None or a[0] >= len(lay):
                return data[:-1] if k == "chunk" else data + b"\x00"
            off, n = lay[a[0]]
            if k == "field_len":
                new = {0: 0, 1: n + 1, 2: max(0, n - 1), 3: 0xFFFFFFFF}[a[1]]
                return data[: off - 4] + struct.pack(">I", new) + data[off:]
            c = a[1] * 32
            if c + 32 > n:
                return data[:-1]
            rep = self.payload if self.payload != b"topbit" else _topbit(data[off + c : off + c + 32])
            return data[: off + c] + rep + data[off + c + 32 :]
        if k == "at":
            o = a[0]
            if o + 32 > len(data):
                return data[:-1]
            rep = self.payload if self.payload != b"topbit" else _topbit(data[o : o + 32])
            return data[:o] + rep + data[o + 32 :]
        if k == "random":
            return self.payload
        if k == "header_random":
            return data[:4] + self.payload
        raise ValueError(f"unknown mutation {k}")

    def __str__(self) -> str:
        p = self.payload[:8].hex() + ("…" if len(self.payload) > 8 else "")
        return f"{self.kind}{self.args}{'[' + p + ']' if self.payload else ''}"


def _topbit(chunk: bytes) -> bytes:
    """Set bit 255: the same field element for a decoder that masks it, non-canonical for ristretto."""
    b = bytearray(chunk)
    b[31] |= 0x80
    return bytes(b)


def point_mutations(offsets: Sequence[int]) -> list[Mutation]:
    """Identity, bit-255-set and every RFC 9496 bad encoding at each point offset (strict)."""
    return [
        Mutation("at", (o,), bad, True)
        for o in offsets
        for bad in (IDENTITY, b"topbit", *RISTRETTO_BAD_ENCODINGS)
    ]


def mutations(
    sample: bytes, rng: random.Random, n_random: int = 64, points: Sequence[int] = (),
    max_flips: int = 512,
) -> list[Mutation]:
    """Structured mutations of ``sample`` plus ``n_random`` random ones.

    ``points`` are byte offsets known to hold ristretto255 points (``PointMap``); bad
    encodings there are *strict*: the reader must reject them.
    """
    n = len(sample)
    out: list[Mutation] = []
    cuts = range(n) if n <= 512 else sorted({0, 1, 2, 3, 4, 5, 8, n - 1, n - 2, *rng.sample(range(n), 120)})
    out += [Mutation("truncate", (c,)) for c in cuts]
    out += [Mutation("extend", (), p) for p in (b"\x00", b"\x01", b"\xff" * 4, bytes(32), sample[:64])]
    bits = [(i, j) for i in range(n) for j in range(8)] if n * 8 <= max_flips else [
        (rng.randrange(n), rng.randrange(8)) for _ in range(max_flips)
    ]
    out += [Mutation("flip", b) for b in bits]
    out += [Mutation("set_byte", (0, v)) for v in (0, 2, 0x7F, 0xFF)]  # wrong version
    out += [Mutation("set_byte", (1, v)) for v in (0, 5, 0xFF)]  # wrong protocol id
    out += [Mutation("set_byte", (2, v)) for v in (0, 0x7F, 0xFF)]  # wrong message type
    out += [Mutation("set_byte", (3, v)) for v in (0, 0xFF)]  # wrong field count
    lay = frame_layout(sample) or []
    for i, (_off, flen) in enumerate(lay):
        out += [Mutation("field_len", (i, k)) for k in range(4)]
        if flen and flen % 32 == 0:
            chunks = range(flen // 32) if flen <= 32 * 8 else sorted(rng.sample(range(flen // 32), 8))
            for c in chunks:
                out.append(Mutation("chunk", (i, c), IDENTITY))
                out.append(Mutation("chunk", (i, c), b"topbit"))
                out += [Mutation("chunk", (i, c), bad) for bad in RISTRETTO_BAD_ENCODINGS[::3]]
                out += [Mutation("chunk", (i, c), s) for s in BAD_SCALARS]
    out += point_mutations(points)
    for _ in range(n_random):
        ln = rng.choice([0, 1, 3, 4, 5, 8, 16, 33, 64, 100, min(max(1, n), 4096), min(2 * max(1, n), 8192)])
        out.append(Mutation("random", (), rng.randbytes(ln)))
        out.append(Mutation("header_random", (), rng.randbytes(min(ln, max(0, n - 4)))))
    return out


# ---------------------------------------------------------------- checks

@dataclass(frozen=True)
class Outcome:
    """What one bad input did. ``ok`` is False for a crash, 5xx or accepted strict mutation."""

    kind: str  # typed_error | decoded_other | decoded_same | reply | reply_5xx | result | crash | accepted
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind in ("typed_error", "decoded_other", "reply", "result")


def _crash(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb))
    return f"{type(e).__name__}: {e} at {where}"


def reencode(obj: Any) -> bytes | None:
    """``obj.to_bytes()``, or None when ``from_bytes`` returned something else (a tuple, say)."""
    to_bytes = getattr(obj, "to_bytes", None)
    if to_bytes is None or isinstance(obj, int):
        return None
    out = to_bytes()
    return out if isinstance(out, bytes) else None


def check_decoder(dec: Decoder, data: bytes, original: bytes | None = None, strict: bool = False) -> Outcome:
    """Decode ``data``; anything but a typed error or a different, exactly re-encodable value fails."""
    t0 = time.perf_counter()
    try:
        back = reencode(dec.decode(data))
    except BlindmatchError as e:
        return Outcome("typed_error", type(e).__name__, time.perf_counter() - t0)
    except Exception as e:
        return Outcome("crash", _crash(e), time.perf_counter() - t0)
    dt = time.perf_counter() - t0
    if strict:
        return Outcome("accepted", "identity/non-canonical point accepted", dt)
    if back is not None and original is not None and back == original and data != original:
        return Outcome("decoded_same", "mutated bytes decode to the original value (malleable)", dt)
    return Outcome("decoded_other", "", dt)


def check_endpoint(ep: Endpoint, body: bytes, client_id: str = "fuzz", strict: bool = False) -> Outcome:
    """Call a server handler directly with ``body`` (as the HTTP route would)."""
    t0 = time.perf_counter()
    try:
        rep = ep.handler(Request(body=body, headers={}, client_id=client_id))
    except BlindmatchError as e:
        dt = time.perf_counter() - t0
        if e.http_status >= 500 and not _is_storage(e):
            return Outcome("reply_5xx", f"{type(e).__name__} -> {e.http_status}", dt)
        return Outcome("typed_error", type(e).__name__, dt)
    except Exception as e:
        return Outcome("crash", _crash(e), time.perf_counter() - t0)
    dt = time.perf_counter() - t0
    if rep.status >= 500:
        return Outcome("reply_5xx", f"status {rep.status}", dt)
    if strict and rep.status < 300:
        return Outcome("accepted", "identity/non-canonical point accepted with 2xx", dt)
    return Outcome("reply", str(rep.status), dt)


def _is_storage(e: BlindmatchError) -> bool:
    return e.code == "storage_unavailable"


def check_client(
    rec: Recording, options: Mapping[str, Any], target: tuple[str, str], mutate: Callable[[bytes], bytes],
    query: Query | None = None, strict: bool = False,
) -> Outcome:
    """Run a fresh real client; every ``target`` response is replaced by ``mutate(real)``.

    Every response, not just the first: a client that retries after a digest mismatch
    (as it should) must still end with a typed error against a persistently hostile server.
    """
    fired = [False]

    def respond(method: str, path: str, body: bytes) -> bytes | None:
        if (method, path) == target:
            fired[0] = True
            return mutate(body)
        return None

    q = query or queries(rec.hashes, 1, 0, seed=99, account="fuzz")[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        try:
            client = rec.new_client(options, Path(cache))
            client.scan(q, RecordingTransport(rec.server, rec.name, client_id="fuzz-client", respond=respond))
        except BlindmatchError as e:
            return Outcome("typed_error", type(e).__name__, time.perf_counter() - t0)
        except Exception as e:
            return Outcome("crash", _crash(e), time.perf_counter() - t0)
    dt = time.perf_counter() - t0
    if strict and fired[0]:
        return Outcome("accepted", "client accepted an identity/non-canonical point", dt)
    return Outcome("result", "" if fired[0] else "target endpoint not called", dt)


# Settings a LiveServer needs so it opens protocol state the way ``SERVER_OPTIONS`` did.
LIVE_ENV: dict[str, str] = {
    "BLINDMATCH_TPSI_THRESHOLD": str(SERVER_OPTIONS["tpsi"]["threshold"]),
    "BLINDMATCH_TPSI_SYNTHETIC_RATE": str(SERVER_OPTIONS["tpsi"]["synthetic_rate"]),
    "BLINDMATCH_HE_WORKER_MEMORY_MB": str(SERVER_OPTIONS["he"]["worker_memory_mb"]),
}


def prepare_set_dir(
    base: Path, set_size: int = 64, names: Sequence[str] | None = None, algo: str = "pdq"
) -> tuple[Path, dict[str, Recording]]:
    """Build a set directory of ``algo`` hashes and record every protocol against *its* state
    dirs, then close.

    A LiveServer started on the returned directory (with ``LIVE_ENV``) loads the same keys,
    tables and epochs, so the recorded request bodies are valid requests to it. The
    exchanges are also saved to ``base/recordings.json`` so other processes (fuzz targets)
    can ``load_prepared(base)`` without re-running costly clients (HE queries take seconds).
    """
    from blindmatch.server import SetDir

    hs = random_set(set_size, algo)
    sd = SetDir.build(base / "set", hs.algo, hs.values(), ["harness"])
    recs = {}
    for name in names or sorted(REGISTRY):
        proto = REGISTRY[name]
        if hs.algo.name not in proto.supported_algos:
            continue
        rec = record_protocol(proto, base / "rec" / name, hashes=sd.hashes, server_dir=sd.state_dir(name))
        rec.close()
        recs[name] = rec
    dump = {
        name: {
            "client_options": r.client_options,
            "errors": r.errors,
            "exchanges": [
                {"method": e.method, "path": e.path, "request": e.request.hex(), "status": e.status,
                 "response": e.response.hex(), "seconds": e.seconds}
                for e in r.exchanges
            ],
        }
        for name, r in recs.items()
    }
    (base / "recordings.json").write_text(json.dumps(dump))
    return sd.path, recs


def load_prepared(base: Path, names: Sequence[str] | None = None) -> tuple[Path, dict[str, Recording]]:
    """Reopen the servers of a ``prepare_set_dir`` directory in this process, with its exchanges."""
    from blindmatch.server import SetDir

    sd = SetDir.open(base / "set")
    dump = json.loads((base / "recordings.json").read_text())
    recs = {}
    for name in names or sorted(dump):
        if name not in REGISTRY or name not in dump:
            continue
        proto = REGISTRY[name]
        srv = proto.open_server(sd.hashes, sd.state_dir(name), dict(SERVER_OPTIONS.get(name, {})))
        rec = Recording(proto, srv, sd.hashes, base / "rec" / name, eps=list(srv.endpoints()))
        rec.client_options = dump[name]["client_options"]
        rec.errors = dump[name]["errors"]
        rec.exchanges = [
            Exchange(name, x["method"], x["path"], bytes.fromhex(x["request"]), x["status"],
                     bytes.fromhex(x["response"]), x.get("seconds", 0.0))
            for x in dump[name]["exchanges"]
        ]
        recs[name] = rec
    return sd.path, recs


def record_all(base: Path, names: Sequence[str] | None = None) -> dict[str, Recording]:
    """Record every registered protocol (or ``names``) under ``base``."""
    out = {}
    for name in names or sorted(REGISTRY):
        out[name] = record_protocol(REGISTRY[name], base / name)
    return out


# ---------------------------------------------------------------- batteries

@dataclass
class BatteryResult:
    """Counts of outcomes for one target (a decoder, an endpoint or a client response slot)."""

    target: str
    tried: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    max_seconds: float = 0.0
    note: str = ""

    def add(self, m: object, o: Outcome) -> None:
        self.tried += 1
        self.kinds[o.kind] = self.kinds.get(o.kind, 0) + 1
        self.max_seconds = max(self.max_seconds, o.seconds)
        if not o.ok and len(self.failures) < 20:
            self.failures.append(f"{m}: {o.kind}: {o.detail}")

    @property
    def bad(self) -> int:
        good = ("typed_error", "decoded_other", "reply", "result")
        return sum(v for k, v in self.kinds.items() if k not in good)


class _Stop:
    """When a battery stops: after ``max_tries`` inputs (tests: a fixed count) or ``budget_s``
    seconds (the reliability command: a time budget), whichever comes first."""

    def __init__(self, budget_s: float | None, max_tries: int | None) -> None:
        self.deadline = math.inf if budget_s is None else time.monotonic() + budget_s
        self.max_tries = max_tries

    def reached(self, res: BatteryResult) -> bool:
        if self.max_tries is not None and res.tried >= self.max_tries:
            res.note = f"stopped after {self.max_tries} inputs"
            return True
        if time.monotonic() > self.deadline:
            res.note = "time budget reached"
            return True
        return False


def _ordered(muts: list[Mutation], rng: random.Random) -> list[Mutation]:
    """Strict and header mutations first (cheap, most telling), the rest shuffled."""
    first = [m for m in muts if m.strict or m.kind in ("set_byte", "field_len")]
    rest = [m for m in muts if not (m.strict or m.kind in ("set_byte", "field_len"))]
    rng.shuffle(rest)
    return first + rest


def battery_decoder(
    dec: Decoder, samples: Sequence[bytes], rng: random.Random, budget_s: float | None = 5.0,
    n_random: int = 64, max_tries: int | None = None,
) -> BatteryResult:
    """Every mutation of every sample (until the budget or count), plus random bytes."""
    res = BatteryResult(dec.name)
    stop = _Stop(budget_s, max_tries)
    if not dec.direct:
        res.note = f"from_bytes needs {dec.extra_params}; covered through endpoints"
        return res
    for s in samples or [b""]:
        for m in _ordered(mutations(s, rng, n_random), rng):
            res.add(m, check_decoder(dec, m.apply(s), s))
            if stop.reached(res):
                return res
    return res


def battery_endpoint(
    rec: Recording, ep: Endpoint, rng: random.Random, budget_s: float | None = 5.0, n_random: int = 64,
    max_tries: int | None = None,
) -> BatteryResult:
    """Mutated recorded request bodies into a real server handler (as over HTTP, minus HTTP)."""
    res = BatteryResult(f"{rec.name} {ep.method} {ep.path}")
    samples = rec.requests(ep.method, ep.path) or [b""]
    pmap = rec.points()
    stop = _Stop(budget_s, max_tries)
    for s in samples[:4]:
        for m in _ordered(mutations(s, rng, n_random, pmap.offsets(s)), rng):
            body = m.apply(s)
            if len(body) > ep.max_body:
                continue  # the HTTP layer answers 413 before the handler (tests/test_limits.py)
            res.add(m, check_endpoint(ep, body, strict=m.strict))
            if stop.reached(res):
                return res
    return res


def battery_client(
    rec: Recording, target: tuple[str, str], rng: random.Random, budget_s: float | None = 5.0,
    n_random: int = 16, max_tries: int | None = None,
) -> BatteryResult:
    """Mutated live server responses into fresh real client halves.

    Point substitutions are located in each *live* response (responses differ per
    query), so every ristretto255 point the client reads gets the identity and the
    RFC 9496 bad encodings, and the client must reject them.
    """
    res = BatteryResult(f"{rec.name} client <- {target[0]} {target[1]}")
    samples = rec.responses(*target)
    if not samples or not rec.client_options:
        res.note = "no recorded response"
        return res
    pmap = rec.points()
    stop = _Stop(budget_s, max_tries)
    jobs: list[tuple[object, Callable[[bytes], bytes], bool]] = []
    n_pts = len(pmap.offsets(samples[0]))
    bads = (IDENTITY, b"topbit", *RISTRETTO_BAD_ENCODINGS)
    for j in range(n_pts):
        for bad in bads:
            def at_live(live: bytes, j: int = j, bad: bytes = bad) -> bytes:
                offs = pmap.offsets(live)
                return Mutation("at", (offs[j % len(offs)],), bad, True).apply(live) if offs else live[:-1]
            jobs.append((f"point#{j}={bad[:4].hex()}", at_live, True))
    rest = _ordered(mutations(samples[0], rng, n_random, (), max_flips=128), rng)
    jobs += [(m, m.apply, False) for m in rest]
    for i, (label, fn, strict) in enumerate(jobs):
        opts = rec.client_options[i % len(rec.client_options)]
        res.add(label, check_client(rec, opts, target, fn, strict=strict))
        if stop.reached(res):
            break
    return res


def client_targets(rec: Recording) -> list[tuple[str, str]]:
    """(method, path) pairs the real client called and got a 2xx for."""
    seen: dict[tuple[str, str], None] = {}
    for e in rec.exchanges:
        if e.status < 300 and not e.path.startswith("admin"):
            seen.setdefault((e.method, e.path), None)
    return list(seen)
