"""``oprf``: private membership by RFC 9497 VOPRF over ristretto255, client learns.

The server holds a VOPRF key ``k`` per epoch and publishes, once, a compact
Golomb-compressed set of ``F(k, h)`` over its hashes, with an Ed25519-signed
manifest that commits to the key, the filter digest and the set size. To test a
hash the client blinds it (``r·H(h)``), the server multiplies by ``k`` and proves
with one batched DLEQ proof that it used the manifest's key, and the client
unblinds, finalises and looks the output up in the filter.

Security properties (see docs/protocols/oprf.md):

* The server sees only uniformly random group elements: nothing about the hash,
  nor whether it matched (the client does not report back). The number of
  elements per request is fixed by ``probe_bits`` alone.
* The client learns membership only for hashes it had evaluated online, one
  evaluation per probe, rate-limited per element; the filter alone is useless
  without the key. It also learns the set size (manifest).
* A server cannot answer under a key other than the signed one (VerifyError),
  cannot swap the filter (DigestMismatchError) and cannot forge a manifest
  (SignatureError against the pinned or first-use signing key). It *can* sign a
  different manifest for one user; the printable root digest is what users
  compare out of band to detect that.

Robust multi-probe (``options={"probe_bits": k}``, ``protocol.multiprobe``): the
client also probes the 2^k hashes obtained by flipping its k least-stable PDQ
bits (float values closest to the median), all in one batch of exactly 2^k
elements. Options are typed: ``OprfServerOptions`` and ``OprfClientOptions``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._gcs import GCSFilter, GCSReader, build_gcs, fpr_to_m
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
    register,
)
from ..costfloor import CostFloor, Floor, Term
from ..errors import (
    BadHashError,
    BatchTooLargeError,
    BlindmatchError,
    DecodeError,
    DigestMismatchError,
    LengthError,
    RollbackError,
    SignatureError,
    VerifyError,
    WrongProtocolError,
)
from ..files import atomic_write
from ..hashes import HashAlgo, HashSet
from ..hazmat import ristretto as R
from ..hazmat.voprf import Blinded, Mode, OPRFClient, Proof, VOPRFClient
from ..multiprobe import probe_count, probe_hashes
from ..options import OptionsIn
from ..wire import decode_fields, encode_fields
from ._options import DEFAULT_MAX_BATCH, OprfClientOptions, OprfServerOptions, pin_bytes
from ._store import (
    DEFAULT_FPR,
    MSG_FILTER,
    PROTOCOL_ID,
    PROTOCOL_LABEL,
    SUITES,
    EpochStore,
    Manifest,
    mode_of,
    oprf_input,
    output_to_u64,
    rotate_epoch,
)

__all__ = [
    "DEFAULT_FPR",
    "OPRF",
    "EvaluateRequest",
    "EvaluateResponse",
    "GCSReader",
    "Manifest",
    "OprfClient",
    "OprfClientOptions",
    "OprfServer",
    "OprfServerOptions",
    "build_gcs",
    "describe_state",
    "fpr_to_m",
    "rotate_epoch",
]

MSG_EVAL_REQUEST = 1
MSG_EVAL_RESPONSE = 2
_NE = R.ELEMENT_BYTES
_U32 = struct.Struct(">I")
_MAX_FILTER_FIELD = 1 << 28


# --------------------------------------------------------------------------- messages


def _split_elements(data: bytes, full: bool = True) -> list[bytes]:
    if not data or len(data) % _NE:
        raise LengthError("element list must be a non-empty multiple of 32 bytes")
    return [R.decode_element(data[i : i + _NE], full) for i in range(0, len(data), _NE)]


@dataclass(frozen=True)
class EvaluateRequest:
    """``POST evaluate`` body: key epoch (u32) and ``m`` blinded elements (32·m bytes).

    Framed size: 16 + 32·m bytes.
    """

    epoch: int
    elements: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return encode_fields(
            PROTOCOL_ID, MSG_EVAL_REQUEST, [_U32.pack(self.epoch), b"".join(self.elements)]
        )

    @classmethod
    def from_bytes(cls, data: bytes, max_batch: int = DEFAULT_MAX_BATCH) -> EvaluateRequest:
        """Strict parse; every element must be canonical and not the identity.

        The full point check is left to the scalar multiplication that follows
        (it decodes with the same rule and fails with ``DeserializeError``).
        """
        ep, elems = decode_fields(data, PROTOCOL_ID, MSG_EVAL_REQUEST, 2)
        if len(ep) != 4:
            raise LengthError("epoch must be 4 bytes")
        if len(elems) // _NE > max_batch:
            raise BatchTooLargeError(f"batch of {len(elems) // _NE} elements exceeds {max_batch}")
        return cls(_U32.unpack(ep)[0], tuple(_split_elements(elems, full=False)))


@dataclass(frozen=True)
class EvaluateResponse:
    """Reply: epoch (u32), ``m`` evaluated elements, one 64-byte batched DLEQ proof.

    Framed size: 84 + 32·m bytes (VOPRF); an OPRF-mode epoch sends an empty proof
    field: 20 + 32·m bytes.
    """

    epoch: int
    elements: tuple[bytes, ...]
    proof: Proof | None

    def to_bytes(self) -> bytes:
        return encode_fields(
            PROTOCOL_ID,
            MSG_EVAL_RESPONSE,
            [
                _U32.pack(self.epoch),
                b"".join(self.elements),
                self.proof.to_bytes() if self.proof is not None else b"",
            ],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EvaluateResponse:
        """Strict parse; as for requests, the full point check is the unblinding's
        scalar multiplication (and, in VOPRF, the proof check's) that follows."""
        ep, elems, proof = decode_fields(data, PROTOCOL_ID, MSG_EVAL_RESPONSE, 3)
        if len(ep) != 4:
            raise LengthError("epoch must be 4 bytes")
        return cls(
            _U32.unpack(ep)[0],
            tuple(_split_elements(elems, full=False)),
            Proof.from_bytes(proof) if proof else None,
        )


def parse_filter(data: bytes) -> GCSFilter:
    """The ``GET filter`` body: params (U, n, m as u64) and the three GCS bit streams."""
    return GCSFilter.from_fields(
        decode_fields(data, PROTOCOL_ID, MSG_FILTER, 4, max_field=_MAX_FILTER_FIELD)
    )


# --------------------------------------------------------------------------- server


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class OprfServer(ServerHalf):
    """Serves the current manifest and filter and evaluates blinded batches."""

    def __init__(self, store: EpochStore, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        # One evaluation at a time per process. libsodium's calls release the GIL, so
        # concurrent requests in the server's thread pool would otherwise interleave
        # thousands of GIL hand-offs: measured at 8 concurrent batches of 256 (VOPRF),
        # 214 µs of server CPU per element against 165 µs one at a time. Scale with
        # more worker processes instead (``blindmatch serve --workers``).
        self._compute = threading.Lock()

    def _static(self, req: Request, body: bytes, etag: str) -> Reply:
        if _etag_matches(req.headers.get("if-none-match"), etag):
            return Reply(b"", status=304, headers={"etag": etag, "cache-control": "no-cache"})
        return Reply(
            body,
            headers={"etag": etag, "content-length": str(len(body)), "cache-control": "no-cache"},
        )

    def _manifest(self, req: Request) -> Reply:
        ep = self.store.current()
        return self._static(req, ep.manifest_bytes, f'"{ep.root}"')

    def _filter(self, req: Request) -> Reply:
        ep = self.store.current()
        return self._static(req, ep.filter_bytes, f'"{ep.manifest.filter_digest.hex()}"')

    def _evaluate(self, req: Request) -> Reply:
        r = EvaluateRequest.from_bytes(req.body, self.max_batch)
        ep = self.store.get(r.epoch)
        with self._compute:
            evaluated, proof = ep.server.blind_evaluate_batch(r.elements)
        return Reply(EvaluateResponse(r.epoch, tuple(evaluated), proof).to_bytes())

    def endpoints(self) -> Sequence[Endpoint]:
        cap = 16 + _NE * (self.max_batch + 1) + 64
        return [
            Endpoint("GET", "manifest", self._manifest, max_body=1024,
                     summary="Signed manifest of the current key epoch (ETag = root digest)"),
            Endpoint("GET", "filter", self._filter, max_body=1024,
                     summary="Golomb-compressed set of PRF outputs (ETag = SHA-256)"),
            Endpoint("POST", "evaluate", self._evaluate, max_body=cap, rate_limited=True,
                     cost=lambda body: max(1, (len(body) - 16) // _NE),
                     summary="BlindEvaluate of a batch, with one batched DLEQ proof (VOPRF mode)"),
        ]

    def setup_bytes(self) -> int:
        ep = self.store.current()
        return len(ep.manifest_bytes) + len(ep.filter_bytes)


# --------------------------------------------------------------------------- client


@dataclass
class _Session:
    manifest: Manifest
    raw: bytes
    reader: GCSReader
    client: OPRFClient
    checked: float


@dataclass
class _Item:
    query: int
    flips: int
    state: Blinded


@dataclass
class _Tally:
    matched: bool = False
    distance: int | None = None
    probes: int = 0


class OprfClient(ClientHalf):
    """Blinds, verifies (signature, filter digest, every proof), unblinds, looks up."""

    def __init__(self, algo: HashAlgo, cache_dir: Path | None, options: OprfClientOptions) -> None:
        self.algo = algo
        self.probe_bits = options.probe_bits
        self.max_batch = options.max_batch
        self.manifest_ttl = options.manifest_ttl
        self.allow_unverified = options.allow_unverified
        self.pinned_key = pin_bytes("pinned_signing_key", options.pinned_signing_key)
        self.pinned_set = pin_bytes("pinned_set_digest", options.pinned_set_digest)
        root = pin_bytes("pinned_root_digest", options.pinned_root_digest)
        self.pinned_root = root.hex() if root is not None else None
        self.cache = Path(cache_dir) / "oprf" if cache_dir is not None else None
        self._session: _Session | None = None
        self._tofu_key: bytes | None = None
        self._seen_epoch: dict[str, int] = {}

    # ---- trust and caching

    def _origin(self, transport: Transport) -> str:
        origin = getattr(transport, "base_url", None) or type(transport).__name__
        return hashlib.sha256(str(origin).encode()).hexdigest()[:16]

    def _check_signer(self, m: Manifest, transport: Transport) -> None:
        if self.pinned_key is not None:
            if not R.ct_equal(m.signing_key, self.pinned_key):
                raise SignatureError("manifest signed by a key other than the pinned one")
            return
        if self.cache is None:
            if self._tofu_key is None:
                self._tofu_key = m.signing_key
            elif not R.ct_equal(self._tofu_key, m.signing_key):
                raise SignatureError("manifest signing key changed since first use")
            return
        pin = self.cache / "pins" / f"{self._origin(transport)}.pub"
        if pin.exists():
            if not R.ct_equal(pin.read_bytes(), m.signing_key):
                raise SignatureError(f"manifest signing key changed since first use (pin: {pin})")
        else:
            atomic_write(pin, m.signing_key)

    def _check_manifest(self, m: Manifest, transport: Transport) -> None:
        if m.protocol != PROTOCOL_LABEL or m.suite not in SUITES:
            raise WrongProtocolError("manifest is for another protocol version or suite")
        if mode_of(m.suite) is not Mode.VOPRF and not self.allow_unverified:
            raise WrongProtocolError(
                "server runs unverifiable OPRF mode (no DLEQ proofs); "
                "the client refuses it unless allow_unverified is set"
            )
        if m.algo != self.algo.name:
            raise BadHashError(f"server holds {m.algo} hashes, client hashes with {self.algo.name}")
        if self.pinned_root is not None and m.root_digest() != self.pinned_root:
            raise SignatureError("manifest root digest differs from the pinned one")
        if self.pinned_set is not None and not R.ct_equal(m.set_digest, self.pinned_set):
            raise SignatureError("manifest commits to a different hash set than the pinned digest")
        self._check_signer(m, transport)
        if m.set_size == 0 or m.fpr_inverse < 4:
            raise DecodeError("manifest parameters out of range")
        self._check_epoch(m, transport)

    def _check_epoch(self, m: Manifest, transport: Transport) -> None:
        """Refuse a manifest older than the newest epoch seen at this origin (a replayed key)."""
        origin = self._origin(transport)
        path = self.cache / "epochs" / origin if self.cache is not None else None
        seen = self._seen_epoch.get(origin, 0)
        if path is not None and path.exists():
            try:
                seen = max(seen, int(path.read_text()))
            except ValueError:
                raise RollbackError(f"{path}: unreadable epoch record; remove it to reset") from None
        if m.epoch < seen:
            raise RollbackError(f"manifest epoch {m.epoch} is older than epoch {seen} already seen")
        self._seen_epoch[origin] = m.epoch
        if path is not None and m.epoch > seen:
            atomic_write(path, str(m.epoch).encode())

    def _load_filter(self, m: Manifest, transport: Transport) -> GCSFilter:
        digest = m.filter_digest
        path = self.cache / "filters" / f"{digest.hex()}.bin" if self.cache else None
        data: bytes | None = None
        if path is not None and path.exists():
            data = path.read_bytes()
            if not R.ct_equal(hashlib.sha256(data).digest(), digest):
                data = None  # damaged cache entry: download again
        if data is None:
            rep = transport.get("filter")
            data = rep.body
            if not R.ct_equal(hashlib.sha256(data).digest(), digest):
                raise DigestMismatchError("filter does not match the signed manifest")
            if path is not None:
                atomic_write(path, data)
        f = parse_filter(data)
        if f.universe != m.set_size * m.fpr_inverse or f.count > m.set_size:
            raise DecodeError("filter parameters disagree with the manifest")
        return f

    def _ensure(self, transport: Transport, force: bool = False) -> _Session:
        s = self._session
        if s is not None and not force and time.monotonic() - s.checked < self.manifest_ttl:
            return s
        last = self.cache / "manifests" / f"{self._origin(transport)}.bin" if self.cache else None
        cached = s.raw if s is not None else None
        if cached is None and last is not None and last.exists():
            cached = last.read_bytes()
        headers = {}
        if cached is not None:
            try:
                headers["if-none-match"] = f'"{Manifest.verify(cached).root_digest()}"'
            except BlindmatchError:
                cached = None
        rep = transport.get("manifest", headers)
        raw = cached if rep.status == 304 and cached is not None else rep.body
        m = Manifest.verify(raw)
        self._check_manifest(m, transport)
        if s is not None and s.raw == raw:
            s.checked = time.monotonic()
            return s
        for attempt in range(2):
            try:
                f = self._load_filter(m, transport)
                break
            except DigestMismatchError:
                if attempt:
                    raise
                # the server may have rotated between the two GETs: fetch the manifest again
                raw = transport.get("manifest").body
                m = Manifest.verify(raw)
                self._check_manifest(m, transport)
        reader = GCSReader(f)
        if last is not None:
            atomic_write(last, raw)
        client = VOPRFClient(m.public_key) if mode_of(m.suite) is Mode.VOPRF else OPRFClient()
        self._session = _Session(m, raw, reader, client, time.monotonic())
        return self._session

    # ---- queries

    def _blind_items(self, session: _Session, queries: Sequence[Query]) -> list[_Item]:
        owners: list[tuple[int, int]] = []
        inputs: list[bytes] = []
        for qi, q in enumerate(queries):
            if q.hash.algo != self.algo:
                raise BadHashError(f"query is {q.hash.algo.name}, client is {self.algo.name}")
            for h, flips in probe_hashes(q.hash, q.float_values, self.probe_bits):
                owners.append((qi, flips))
                inputs.append(oprf_input(self.algo, h.raw))
        states = session.client.blind_many(inputs)
        return [_Item(qi, flips, st) for (qi, flips), st in zip(owners, states, strict=True)]

    def _evaluate_chunk(
        self, transport: Transport, session: _Session, items: list[_Item]
    ) -> tuple[_Session, list[bytes], float]:
        """POST one batch; on an expired epoch refresh the manifest and re-blind once."""
        cpu = 0.0
        for attempt in range(2):
            t0 = time.perf_counter()
            req = EvaluateRequest(session.manifest.epoch, tuple(i.state.blinded_element for i in items))
            body = req.to_bytes()
            cpu += time.perf_counter() - t0
            try:
                rep = transport.post("evaluate", body)
            except BlindmatchError as e:
                if attempt or e.code != "unknown_epoch":
                    raise
                session = self._ensure(transport, force=True)
                t0 = time.perf_counter()
                fresh = session.client.blind_many([i.state.input for i in items])
                for it, st in zip(items, fresh, strict=True):
                    it.state = st
                cpu += time.perf_counter() - t0
                continue
            t0 = time.perf_counter()
            resp = EvaluateResponse.from_bytes(rep.body)
            if resp.epoch != req.epoch or len(resp.elements) != len(items):
                raise DecodeError("evaluation does not answer the request")
            states = [i.state for i in items]
            outputs = _finalize(session.client, states, resp)
            cpu += time.perf_counter() - t0
            return session, outputs, cpu
        raise AssertionError("unreachable")  # pragma: no cover

    def scan_many(self, queries: Sequence[Query], transport: Transport) -> list[ScanResult]:
        if not queries:
            return []
        up0, down0 = transport.bytes_up, transport.bytes_down
        session = self._ensure(transport)
        t0 = time.perf_counter()
        items = self._blind_items(session, queries)
        cpu = time.perf_counter() - t0
        tallies = [_Tally() for _ in queries]
        per = probe_count(self.probe_bits)
        step = max(per, self.max_batch // per * per)
        answered: list[tuple[GCSReader, list[_Item], list[bytes]]] = []
        for s in range(0, len(items), step):
            chunk = items[s : s + step]
            session, outputs, c = self._evaluate_chunk(transport, session, chunk)
            cpu += c
            answered.append((session.reader, chunk, outputs))
        # Look-ups only after the last request: the timing of what the server
        # sees can then not depend on any verdict.
        t1 = time.perf_counter()
        for reader, chunk, outputs in answered:
            for it, out in zip(chunk, outputs, strict=True):
                tally = tallies[it.query]
                tally.probes += 1
                if reader.contains(output_to_u64(out)):
                    tally.matched = True
                    if tally.distance is None or it.flips < tally.distance:
                        tally.distance = it.flips
        cpu += time.perf_counter() - t1
        n = len(queries)
        up = (transport.bytes_up - up0) // n
        down = (transport.bytes_down - down0) // n
        return [
            ScanResult(
                matched=t.matched,
                distance=t.distance,
                bytes_up=up,
                bytes_down=down,
                crypto_ms=cpu * 1000.0 / n,
                extra={"probes": t.probes, "elements": per, "epoch": session.manifest.epoch},
            )
            for t in tallies
        ]

    def scan(self, query: Query, transport: Transport) -> ScanResult:
        return self.scan_many([query], transport)[0]

    @property
    def manifest(self) -> Manifest | None:
        return self._session.manifest if self._session else None


def _finalize(client: OPRFClient, states: list[Blinded], resp: EvaluateResponse) -> list[bytes]:
    """Unblind a response; a VOPRF session needs its proof, an OPRF one must have none."""
    if isinstance(client, VOPRFClient):
        if resp.proof is None:
            raise VerifyError("VOPRF response carries no proof")
        return client.finalize_batch(states, resp.elements, resp.proof)
    if resp.proof is not None:
        raise DecodeError("OPRF-mode response carries a proof")
    return client.finalize_batch(states, resp.elements)


# --------------------------------------------------------------------------- protocol


class Oprf(Protocol):
    name = "oprf"
    protocol_id = PROTOCOL_ID
    learner = Learner.CLIENT
    matching = Matching.EXACT
    leakage = Leakage(
        client=(
            "membership of each hash it has evaluated online (2^k per query with probe_bits=k)",
            "the set size and the false-positive rate (signed manifest)",
            "which key epoch is current and when it was created",
        ),
        server=(
            "that a client queried, when, and how many blinded elements (2^k per query)",
            "nothing about the hash or the verdict: blinded elements are uniformly random",
        ),
        network=(
            "request/response sizes (fixed by k) and timing; the one-time filter download",
            "without TLS also the blinded elements, which are random to anyone without the key",
        ),
        server_sees_hash=False,
        client_sees_set=False,
    )
    server_options_type = OprfServerOptions
    client_options_type = OprfClientOptions
    client_half_type = OprfClient

    def open_server(
        self, hashes: HashSet, state_dir: Path, options: OptionsIn = None
    ) -> ServerHalf:
        o = OprfServerOptions.from_options(options)
        store = EpochStore.open(
            Path(state_dir), hashes, fpr=o.fpr, grace_seconds=o.grace_seconds, workers=o.workers, mode=o.mode
        )
        return OprfServer(store, o.max_batch)

    def cost_floor(
        self, set_size: int, algo: HashAlgo,
        server_options: OptionsIn = None, client_options: OptionsIn = None,
    ) -> CostFloor:
        """RFC 9497 operation counts (docs/protocols/oprf.md); libsodium has no
        multi-scalar multiplication, so each term is one call. ``e`` = 2^probe_bits
        elements per query. OPRF mode: no proof, blind inverses batched; VOPRF adds
        the batched DLEQ proof on both sides."""
        so = OprfServerOptions.from_options(server_options)
        e = probe_count(OprfClientOptions.from_options(client_options).probe_bits)
        fpr = so.effective_fpr
        h2g, sm = "r255.hash_to_group", "r255.scalar_mult"
        base, add, h2s = "r255.base_mult", "r255.add", "r255.hash_to_scalar"
        floor = CostFloor(
            setup_s=Floor(
                (Term(set_size, h2g), Term(set_size, sm)),
                "n × (hash-to-group + scalar mult) ÷ cores",
                parallel=True,
            ),
            download_bytes=Floor.constant(set_size * math.log2(1 / fpr) / 8, "n × log2(1/fpr) bits"),
            client_cpu_s=Floor((Term(e, h2g), Term(2 * e, sm)), f"{e} × (hash-to-group + 2 scalar mults)"),
            server_cpu_s=Floor((Term(e, sm),), f"{e} scalar mult(s) per query"),
            bytes_per_query=Floor.constant(
                64.0 * e, f"{e} × (32 B blinded element up + 32 B evaluated down)"
            ),
            params={"fpr": fpr, "mode": so.mode, "elements_per_query": e},
        )
        if so.mode == "oprf":
            return floor
        client = Floor(
            (Term(e, h2g), Term(4 * e + 3, sm), Term(e + 1, h2s), Term(1, base), Term(2 * e, add)),
            f"{e} hash-to-group + {4 * e + 3} scalar mults + 1 base mult + {2 * e} adds + {e + 1} "
            "hash-to-scalars (blind, unblind; proof check: composites M and Z, t2 = s·G + c·pkS, "
            "t3 = s·M + c·Z, challenge)",
        )
        server = Floor(
            (Term(2 * e + 2, sm), Term(e + 1, h2s), Term(1, base), Term(e - 1, add)),
            f"{2 * e + 2} scalar mults + 1 base mult + {e - 1} adds + {e + 1} hash-to-scalars "
            "(evaluation; proof: composite M, Z = k·M, t2 = r·G, t3 = r·M, challenge)",
        )
        return dataclasses.replace(floor, client_cpu_s=client, server_cpu_s=server)

    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        bits = float(np.log2(fpr_to_m(DEFAULT_FPR))) + 1.4715
        manifest = 320 + len(algo.name)
        return manifest + 44 + int(set_size * bits / 8 + 1)


OPRF = register(Oprf())


# --------------------------------------------------------------------------- ops / bench


def describe_state(state_dir: Path) -> dict[str, Any]:
    """Epochs, root digests and expiry of an OPRF state dir (for ``db info``); no secrets."""
    if not (Path(state_dir) / "epochs.json").exists():
        return {"current": None, "epochs": []}
    store = EpochStore(Path(state_dir))
    cur = store.current().number
    return {
        "current": cur,
        "epochs": [
            {
                "epoch": e.number,
                "root_digest": e.root,
                "mode": mode_of(e.manifest.suite).name.lower(),
                "public_key": e.manifest.public_key.hex(),
                "signing_key": e.manifest.signing_key.hex(),
                "set_size": e.manifest.set_size,
                "set_digest": e.manifest.set_digest.hex(),
                "filter_bytes": e.manifest.filter_bytes,
                "fpr": 1.0 / e.manifest.fpr_inverse,
                "created": e.created,
                "expires": e.expires,
            }
            for e in store.epochs()
        ],
    }
