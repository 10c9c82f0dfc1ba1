"""``Scanner``: the client-side matcher a messaging app embeds.

Images (paths or encoded bytes) or ready hashes go in; one ``Verdict`` per
input comes out, in input order. In between: decode and hash (PDQ by default,
optionally the 8 rotations/flips), drop hashes too flat to match, and run the
chosen protocol's client half in batches through its ``scan_many``.

Why these rules:

* **One bad input never sinks the others.** A corrupt file, a refused image or
  a batch the server refused becomes that item's ``Verdict.error`` (a typed
  ``BlindmatchError``); only ``strict=True`` turns the first one into an
  exception. Configuration mistakes (unknown protocol or algorithm, options
  the protocol rejects) still raise at construction: no input could succeed.
* **Generic over the registry.** Nothing here names a protocol. Protocol
  options, including trust pins, pass through untouched to
  ``Protocol.new_client``, which owns their names and their checks.
* **Any transport.** A URL gets an ``HttpTransport`` with a timeout (a dead or
  silent server is a ``ServerUnreachableError``, not a hang) that the scanner
  closes; a ``Transport`` given by the caller (in-process ``LocalTransport``,
  a metering wrapper) stays the caller's to close.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from blindmatch.protocol import (
    BadHashError,
    BlindmatchError,
    HashAlgo,
    HashValue,
    InputError,
    Options,
    Protocol,
    Query,
    ScanResult,
    Transport,
    get_algo,
    get_protocol,
)

from .hashers import PDQ_MIN_QUALITY, HashedImage, hash_bytes, hash_dihedral, hash_file
from .images import decode_image, load_image
from .transport import HttpTransport

__all__ = ["Progress", "ScanData", "ScanInput", "ScanItem", "Scanner", "Verdict"]

ScanData = str | os.PathLike[str] | bytes | HashedImage | HashValue
"""A file path, encoded image bytes, or a hash computed elsewhere."""

Progress = Callable[[int, int | None], None]
"""Called after each verdict with (inputs done, inputs in total or None if unknown)."""


@dataclass(frozen=True)
class ScanItem:
    """One input with its own name and associated data.

    ``data`` is a file path, encoded image bytes, or a hash already computed.
    ``associated_data`` travels with the query where the protocol carries any
    (revealed to the server only on a match above its threshold); it defaults
    to the scanner's, else to ``name``.
    """

    data: ScanData
    name: str | None = None
    associated_data: bytes | None = None


ScanInput = ScanItem | ScanData


@dataclass(frozen=True)
class Verdict:
    """The outcome for one input.

    ``matched`` is True/False when the client can know, None when only the
    server learns the answer or the input failed. ``error`` is set (and
    ``matched`` None) when the input could not be hashed or scanned;
    ``skipped`` says why a hash was not sent (too flat to match: not matched).
    ``results`` holds the protocol's raw ``ScanResult`` per query sent (eight
    with ``dihedral``).
    """

    index: int
    name: str
    matched: bool | None
    distance: int | None = None
    error: BlindmatchError | None = None
    skipped: str | None = None
    hashed: HashedImage | None = field(default=None, repr=False)
    results: tuple[ScanResult, ...] = field(default=(), repr=False)
    hash_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def crypto_ms(self) -> float:
        return sum(r.crypto_ms for r in self.results)

    @property
    def bytes_up(self) -> int:
        return sum(r.bytes_up for r in self.results)

    @property
    def bytes_down(self) -> int:
        return sum(r.bytes_down for r in self.results)


def _combine(results: tuple[ScanResult, ...]) -> tuple[bool | None, int | None]:
    """One verdict from the queries of one input: matched if any orientation matched.

    The distance is the smallest the protocol reported among the matching
    queries (among all of them when none matched).
    """
    if any(r.matched is None for r in results):
        return None, None
    hits = [r for r in results if r.matched]
    dists = [r.distance for r in (hits or results) if r.distance is not None]
    return bool(hits), (min(dists) if dists else None)


@dataclass
class _Pending:
    index: int
    item: ScanItem
    name: str
    hashes: tuple[HashedImage, ...] = ()
    hash_ms: float = 0.0
    error: BlindmatchError | None = None
    skipped: str | None = None


class Scanner:
    """Hash images and ask a blindmatch server whether they are in its set.

    ``with Scanner("http://127.0.0.1:8000", "oprf") as s: s.scan(paths)``.
    ``server`` is a base URL or any ``Transport`` for ``protocol``;
    ``options`` (a mapping or the protocol's ``Options`` dataclass) go to the
    protocol's client unchanged (multi-probe, mode, pinned keys and digests);
    ``cache_dir`` keeps one-time downloads and per-account secrets between runs
    (None: in memory for this scanner only).
    """

    def __init__(
        self,
        server: str | Transport,
        protocol: str | Protocol = "plain",
        *,
        algo: str | HashAlgo = "pdq",
        options: Mapping[str, Any] | Options | None = None,
        account: str | None = None,
        associated_data: bytes | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        min_quality: int = PDQ_MIN_QUALITY,
        dihedral: bool = False,
        batch_size: int = 32,
        timeout: float = 60.0,
        strict: bool = False,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.protocol = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
        self.algo = algo if isinstance(algo, HashAlgo) else get_algo(algo)
        if self.algo.name not in self.protocol.supported_algos:
            raise BadHashError(f"protocol {self.protocol.name} does not support {self.algo.name} hashes")
        if dihedral and self.algo.name == "sha256":
            raise InputError("dihedral needs a perceptual hash; sha256 is over the file bytes")
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        self.account = account
        self.associated_data = associated_data
        self.min_quality = min_quality
        self.dihedral = dihedral
        self.batch_size = batch_size
        self.strict = strict
        cache = Path(cache_dir) if cache_dir is not None else None
        self.client = self.protocol.new_client(self.algo, cache, options)
        if isinstance(server, Transport):
            self.transport, self._owns_transport = server, False
        else:
            self.transport = HttpTransport(
                server, self.protocol.name, client=http_client, client_id=account, timeout=timeout
            )
            self._owns_transport = True
        self._closed = False

    # ---- public entry points

    def scan(
        self, inputs: Iterable[ScanInput], *, progress: Progress | None = None, strict: bool | None = None
    ) -> list[Verdict]:
        """Every input's verdict, in input order."""
        return list(self.iter_scan(inputs, progress=progress, strict=strict))

    def scan_one(self, data: ScanInput, *, strict: bool | None = None) -> Verdict:
        """One input, one round of the protocol."""
        return self._scan_batch([(0, data)], self.strict if strict is None else strict)[0]

    def iter_scan(
        self, inputs: Iterable[ScanInput], *, progress: Progress | None = None, strict: bool | None = None
    ) -> Iterator[Verdict]:
        """Verdicts as each batch completes; stop iterating to stop scanning."""
        total = len(inputs) if isinstance(inputs, Sized) else None
        strict = self.strict if strict is None else strict
        numbered = enumerate(inputs)
        done = 0
        while batch := list(islice(numbered, self.batch_size)):
            for verdict in self._scan_batch(batch, strict):
                done += 1
                if progress is not None:
                    progress(done, total)
                yield verdict

    def close(self) -> None:
        """Close the HTTP transport this scanner opened (a given transport stays open)."""
        self._closed = True
        if self._owns_transport and isinstance(self.transport, HttpTransport):
            self.transport.close()

    def __enter__(self) -> Scanner:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- stages

    def _scan_batch(self, batch: list[tuple[int, ScanInput]], strict: bool) -> list[Verdict]:
        if self._closed:
            raise InputError("this scanner is closed")
        pending = [self._prepare(i, x, strict) for i, x in batch]
        sending = [p for p in pending if p.error is None and p.skipped is None]
        queries = [self._query(p, h) for p in sending for h in p.hashes]
        results: list[ScanResult] = []
        if queries:
            try:
                results = self.client.scan_many(queries, self.transport)
            except BlindmatchError as e:
                if strict:
                    raise
                for p in sending:
                    p.error = e
            if results and len(results) != len(queries):
                raise RuntimeError(f"{self.protocol.name}: {len(results)} results for {len(queries)} queries")
        out: list[Verdict] = []
        it = iter(results)
        for p in pending:
            if p.error is not None or p.skipped is not None:
                matched = False if p.skipped is not None else None
                hashed = p.hashes[0] if p.hashes else None
                out.append(Verdict(p.index, p.name, matched, None, p.error, p.skipped, hashed, (), p.hash_ms))
                continue
            mine = tuple(islice(it, len(p.hashes)))
            matched, distance = _combine(mine)
            out.append(Verdict(p.index, p.name, matched, distance, None, None, p.hashes[0], mine, p.hash_ms))
        return out

    def _prepare(self, index: int, data: ScanInput, strict: bool) -> _Pending:
        item = data if isinstance(data, ScanItem) else ScanItem(data)
        p = _Pending(index, item, item.name or _default_name(item.data, index))
        t0 = time.perf_counter()
        try:
            p.hashes = self._hash(item.data, p.name)
        except BlindmatchError as e:
            if strict:
                raise
            p.error = e
        p.hash_ms = (time.perf_counter() - t0) * 1000.0
        if p.hashes and not p.hashes[0].matchable(self.min_quality):
            p.skipped = f"quality {p.hashes[0].quality} < {self.min_quality}"
        return p

    def _hash(self, data: ScanData, name: str) -> tuple[HashedImage, ...]:
        """The hashes to query for one input: one, or eight orientations with ``dihedral``."""
        if isinstance(data, HashValue):
            data = HashedImage(data)
        if isinstance(data, HashedImage):
            if data.algo != self.algo:
                raise BadHashError(f"{name}: a {data.algo.name} hash; this scanner uses {self.algo.name}")
            return (data,)  # a hash is queried as given: orientations need the image
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            if not self.dihedral:
                return (hash_bytes(raw, self.algo.name, name),)
            return hash_dihedral(decode_image(raw, name), self.algo.name)
        if isinstance(data, str | os.PathLike):
            if not self.dihedral:
                return (hash_file(Path(data), self.algo.name),)
            return hash_dihedral(load_image(Path(data)), self.algo.name)
        raise TypeError(f"cannot scan a {type(data).__name__}: give a path, image bytes or a hash")

    def _query(self, p: _Pending, h: HashedImage) -> Query:
        ad = p.item.associated_data
        if ad is None:
            ad = self.associated_data if self.associated_data is not None else p.name.encode()
        return Query(h.hash, h.float_values, h.quality, self.account, ad)


def _default_name(data: object, index: int) -> str:
    if isinstance(data, str | os.PathLike):
        return os.fspath(data)
    return f"<input {index}>"
