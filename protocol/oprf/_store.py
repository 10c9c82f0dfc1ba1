"""OPRF server state on disk: signing key, key epochs, filters, signed manifests.

Why epochs: a VOPRF key that answers unlimited queries for ever is a standing
oracle (RFC 9497 §7.2.3 bounds the static-DH advantage by the number of
queries), and a set that changes needs a new filter. Rotation creates a fresh
key, recomputes the blinded set under it and signs a new manifest; the previous
epoch keeps answering for a grace period so clients with a cached filter are
not cut off mid-session, then its key file is deleted.

Layout of ``state_dir``::

    signing.key        Ed25519 private key (32 bytes, 0600): signs manifests
    epochs.json        {"format": 1, "current": N, "epochs": {"N": {"created", "expires"}}}
    epoch-N/oprf.key   VOPRF private key skS (32 bytes, 0600)
    epoch-N/filter.bin the GCS filter message served at GET filter
    epoch-N/manifest.bin the signed manifest served at GET manifest

``epochs.json`` is replaced atomically after the epoch directory is complete,
so a running server that notices the change (it checks the file's stat on each
request) never sees a half-written epoch. Rotations are serialised by an
exclusive ``flock`` on ``state_dir/.lock``.

Set preparation (F(k, h) for every hash) runs on all cores in a thread pool:
libsodium's calls (through ctypes) release the GIL, so threads scale without
spawning processes or sending the epoch key over a pipe.

Mode: an epoch is VOPRF (default; every evaluation carries a DLEQ proof against
the manifest's key) or OPRF (no proof: cheaper, but the client cannot detect a
server that evaluates under another key). The manifest's ``suite`` field is the
RFC 9497 context string, so the mode is signed with everything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .._gcs import build_gcs, fpr_to_m
from ..errors import (
    CorruptStoreError,
    DecodeError,
    EmptySetError,
    SignatureError,
    UnknownEpochError,
    WrongProtocolError,
)
from ..files import atomic_write
from ..hashes import HashAlgo, HashSet
from ..hazmat.voprf import Mode, OPRFServer, VOPRFServer, context_string
from ..keyfile import read_secret, write_secret
from ..wire import decode_fields, encode_fields

__all__ = [
    "DEFAULT_FPR",
    "DEFAULT_GRACE_SECONDS",
    "PROTOCOL_ID",
    "PROTOCOL_LABEL",
    "Epoch",
    "EpochStore",
    "Manifest",
    "filter_message",
    "mode_of",
    "oprf_input",
    "output_to_u64",
    "parse_mode",
    "prf_outputs",
    "rotate_epoch",
    "set_digest",
]

PROTOCOL_ID = 2
PROTOCOL_LABEL = b"blindmatch-oprf-v1"
SUITE = context_string(Mode.VOPRF)
SUITES = {context_string(m): m for m in (Mode.OPRF, Mode.VOPRF)}
DEFAULT_FPR = 2.0**-40
DEFAULT_GRACE_SECONDS = 7 * 24 * 3600.0
MSG_MANIFEST = 3
MSG_FILTER = 4
MSG_MANIFEST_BODY = 5
_STATE_FORMAT = 1
_SIGN_CONTEXT = PROTOCOL_LABEL + b"|manifest|"
_ROOT_CONTEXT = PROTOCOL_LABEL + b"|root|"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_PARALLEL_MIN = 2_000  # below this, a thread pool costs more than it saves


def parse_mode(name: str | Mode) -> Mode:
    """``"voprf"`` or ``"oprf"`` (the epoch's RFC 9497 mode); POPRF is not served."""
    if isinstance(name, Mode):
        mode = name
    else:
        try:
            mode = Mode[str(name).upper()]
        except KeyError:
            raise WrongProtocolError(f"unknown OPRF mode {name!r} (use voprf or oprf)") from None
    if mode not in (Mode.OPRF, Mode.VOPRF):
        raise WrongProtocolError("only the OPRF and VOPRF modes are served")
    return mode


def mode_of(suite: bytes) -> Mode:
    """The mode a manifest's suite (an RFC 9497 context string) names."""
    mode = SUITES.get(suite)
    if mode is None:
        raise WrongProtocolError("manifest names an unknown OPRF suite")
    return mode


def _server_for(mode: Mode, sk: bytes) -> OPRFServer:
    return VOPRFServer(sk) if mode is Mode.VOPRF else OPRFServer(sk)


def oprf_input(algo: HashAlgo, raw: bytes) -> bytes:
    """The RFC 9497 PrivateInput for a hash: versioned and algorithm-separated."""
    return PROTOCOL_LABEL + b"|" + algo.name.encode() + b"|" + raw


def output_to_u64(output: bytes) -> int:
    """The filter key of an OPRF output: its first 8 bytes (already uniform)."""
    return int.from_bytes(output[:8], "big")


def set_digest(hashes: HashSet) -> tuple[bytes, bytes]:
    """(sorted unique raw hashes, SHA-256 over them) — the set's root digest,
    identical to ``SetDir.digest`` for a set directory."""
    nb = hashes.algo.nbytes
    rows = np.ascontiguousarray(hashes.words.astype(">u8")).view(f"V{nb}").reshape(-1)
    blob = np.unique(rows).tobytes()
    return blob, hashlib.sha256(blob).digest()


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Manifest:
    """What the server commits to for one epoch; signed with its Ed25519 key."""

    algo: str
    set_size: int
    set_digest: bytes
    filter_digest: bytes
    filter_bytes: int
    fpr_inverse: int
    epoch: int
    created: int
    public_key: bytes
    signing_key: bytes
    protocol: bytes = PROTOCOL_LABEL
    suite: bytes = SUITE

    def payload(self) -> bytes:
        return encode_fields(
            PROTOCOL_ID,
            MSG_MANIFEST_BODY,
            [
                self.protocol,
                self.suite,
                self.algo.encode(),
                _U64.pack(self.set_size),
                self.set_digest,
                self.filter_digest,
                _U64.pack(self.filter_bytes),
                _U64.pack(self.fpr_inverse),
                _U32.pack(self.epoch),
                _U64.pack(self.created),
                self.public_key,
                self.signing_key,
            ],
        )

    @classmethod
    def from_payload(cls, data: bytes) -> Manifest:
        f = decode_fields(data, PROTOCOL_ID, MSG_MANIFEST_BODY, 12, max_field=64)
        sizes = (None, None, None, 8, 32, 32, 8, 8, 4, 8, 32, 32)
        for field, size in zip(f, sizes, strict=True):
            if size is not None and len(field) != size:
                raise DecodeError("manifest field has the wrong length")
        try:
            algo = f[2].decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError("manifest algorithm is not ASCII") from None
        return cls(
            algo=algo,
            set_size=_U64.unpack(f[3])[0],
            set_digest=f[4],
            filter_digest=f[5],
            filter_bytes=_U64.unpack(f[6])[0],
            fpr_inverse=_U64.unpack(f[7])[0],
            epoch=_U32.unpack(f[8])[0],
            created=_U64.unpack(f[9])[0],
            public_key=f[10],
            signing_key=f[11],
            protocol=f[0],
            suite=f[1],
        )

    def root_digest(self) -> str:
        """Printable digest of everything this manifest commits to (publish it out of band)."""
        return hashlib.sha256(_ROOT_CONTEXT + self.payload()).hexdigest()

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        """The signed manifest message served at ``GET manifest``."""
        payload = self.payload()
        sig = key.sign(_SIGN_CONTEXT + payload)
        return encode_fields(PROTOCOL_ID, MSG_MANIFEST, [payload, sig])

    @classmethod
    def verify(cls, data: bytes) -> Manifest:
        """Parse a signed manifest and check its signature against the key it names.

        The caller must still compare ``signing_key`` with a pinned key; this only
        proves the payload was signed by the holder of ``signing_key``.
        """
        payload, sig = decode_fields(data, PROTOCOL_ID, MSG_MANIFEST, 2, max_field=4096)
        m = cls.from_payload(payload)
        if len(sig) != 64:
            raise SignatureError("manifest signature rejected")
        try:
            Ed25519PublicKey.from_public_bytes(m.signing_key).verify(sig, _SIGN_CONTEXT + payload)
        except (InvalidSignature, ValueError):
            raise SignatureError("manifest signature rejected") from None
        return m


def filter_message(fields: list[bytes]) -> bytes:
    return encode_fields(PROTOCOL_ID, MSG_FILTER, fields)


# --------------------------------------------------------------------------- preparation


def _prf_chunk(server: OPRFServer, algo: HashAlgo, blob: bytes) -> bytes:
    """Filter keys (8-byte big-endian) of F(k, h) for each hash in ``blob``."""
    nb = algo.nbytes
    inputs = [oprf_input(algo, blob[i : i + nb]) for i in range(0, len(blob), nb)]
    return b"".join(out[:8] for out in server.evaluate_many(inputs))


def prf_outputs(
    server: OPRFServer, algo: HashAlgo, blob: bytes, workers: int | None = None
) -> np.ndarray:
    """Filter keys for every hash of a sorted unique blob, on ``workers`` threads."""
    nb = algo.nbytes
    n = len(blob) // nb
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or n < _PARALLEL_MIN:
        raw = _prf_chunk(server, algo, blob)
    else:
        per = max(256, -(-n // (workers * 8)))
        chunks = [blob[i * nb : (i + per) * nb] for i in range(0, n, per)]
        with ThreadPoolExecutor(workers, thread_name_prefix="oprf-prep") as pool:
            raw = b"".join(pool.map(lambda c: _prf_chunk(server, algo, c), chunks))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


# --------------------------------------------------------------------------- epochs


@dataclass(frozen=True)
class Epoch:
    """One served key epoch. ``expires`` is None for the current epoch."""

    number: int
    server: OPRFServer
    manifest: Manifest
    manifest_bytes: bytes
    filter_bytes: bytes
    created: float
    expires: float | None

    @property
    def root(self) -> str:
        return self.manifest.root_digest()

    def live(self, now: float) -> bool:
        return self.expires is None or now < self.expires


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _signing_key(state_dir: Path, create: bool = False) -> Ed25519PrivateKey:
    path = state_dir / "signing.key"
    if not path.exists() and create and not (state_dir / "epochs.json").exists():
        key = Ed25519PrivateKey.generate()
        write_secret(path, key.private_bytes_raw())
        return key
    return Ed25519PrivateKey.from_private_bytes(read_secret(path, 32))


def _read_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "epochs.json"
    if not path.exists():
        return {"format": _STATE_FORMAT, "current": 0, "epochs": {}}
    try:
        st: dict[str, Any] = json.loads(path.read_text())
        if st.get("format") != _STATE_FORMAT or not isinstance(st.get("epochs"), dict):
            raise ValueError("format")
        int(st["current"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CorruptStoreError(f"{path}: unreadable epoch state") from None
    return st


def rotate_epoch(
    state_dir: Path,
    hashes: HashSet,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    fpr: float | None = None,
    workers: int | None = None,
    now: float | None = None,
    mode: Mode | str | None = None,
) -> Epoch:
    """Create a new key epoch for ``hashes`` and make it current.

    The previous current epoch is answered for ``grace_seconds`` more, then
    dropped; epochs already past their grace are deleted now (key files
    included). ``fpr`` and ``mode`` default to the previous epoch's, else
    2^-40 and VOPRF. This is what ``blindmatch db rotate`` calls.
    """
    state_dir = Path(state_dir)
    if len(hashes) == 0:
        raise EmptySetError("cannot rotate to an empty set")
    with _locked(state_dir):
        key = _signing_key(state_dir, create=True)
        st = _read_state(state_dir)
        now = time.time() if now is None else now
        prev = int(st["current"])
        if prev and (fpr is None or mode is None):
            pm = _load_manifest(state_dir, prev)
            fpr = 1.0 / pm.fpr_inverse if fpr is None else fpr
            mode = mode_of(pm.suite) if mode is None else mode
        m_inv = fpr_to_m(fpr if fpr is not None else DEFAULT_FPR)
        the_mode = parse_mode(mode if mode is not None else Mode.VOPRF)
        number = max([int(k) for k in st["epochs"]] + [0]) + 1
        server = _server_for(the_mode, VOPRFServer.generate().private_bytes())
        blob, digest = set_digest(hashes)
        n = len(blob) // hashes.algo.nbytes
        keys = prf_outputs(server, hashes.algo, blob, workers)
        gcs = build_gcs(keys, n * m_inv)
        fbytes = filter_message(gcs.fields())
        manifest = Manifest(
            algo=hashes.algo.name,
            set_size=n,
            set_digest=digest,
            filter_digest=hashlib.sha256(fbytes).digest(),
            filter_bytes=len(fbytes),
            fpr_inverse=m_inv,
            epoch=number,
            created=int(now),
            public_key=server.public_key,
            signing_key=key.public_key().public_bytes_raw(),
            suite=context_string(the_mode),
        )
        edir = state_dir / f"epoch-{number}"
        edir.mkdir(mode=0o700, exist_ok=True)
        write_secret(edir / "oprf.key", server.private_bytes())
        atomic_write(edir / "filter.bin", fbytes)
        mbytes = manifest.sign(key)
        atomic_write(edir / "manifest.bin", mbytes)
        epochs: dict[str, dict[str, Any]] = dict(st["epochs"])
        if prev and str(prev) in epochs:
            epochs[str(prev)] = {**epochs[str(prev)], "expires": now + float(grace_seconds)}
        epochs[str(number)] = {"created": now, "expires": None}
        for k, meta in list(epochs.items()):
            if meta.get("expires") is not None and meta["expires"] <= now:
                del epochs[k]
                shutil.rmtree(state_dir / f"epoch-{k}", ignore_errors=True)
        state = {"format": _STATE_FORMAT, "current": number, "epochs": epochs}
        atomic_write(state_dir / "epochs.json", json.dumps(state, indent=2).encode())
        return Epoch(number, server, manifest, mbytes, fbytes, now, None)


def _load_manifest(state_dir: Path, number: int) -> Manifest:
    path = state_dir / f"epoch-{number}" / "manifest.bin"
    try:
        return Manifest.verify(path.read_bytes())
    except FileNotFoundError:
        raise CorruptStoreError(f"{path}: missing") from None
    except (DecodeError, SignatureError):
        raise CorruptStoreError(f"{path}: damaged or not signed by this server") from None


def _load_epoch(state_dir: Path, number: int, meta: dict[str, Any], signing_pub: bytes) -> Epoch:
    edir = state_dir / f"epoch-{number}"
    manifest = _load_manifest(state_dir, number)
    if not hmac.compare_digest(manifest.signing_key, signing_pub) or manifest.epoch != number:
        raise CorruptStoreError(f"{edir / 'manifest.bin'}: not this server's manifest")
    try:
        fbytes = (edir / "filter.bin").read_bytes()
    except FileNotFoundError:
        raise CorruptStoreError(f"{edir / 'filter.bin'}: missing") from None
    if hashlib.sha256(fbytes).digest() != manifest.filter_digest:
        raise CorruptStoreError(f"{edir / 'filter.bin'}: digest does not match the manifest")
    try:
        mode = mode_of(manifest.suite)
    except WrongProtocolError:
        raise CorruptStoreError(f"{edir / 'manifest.bin'}: unknown suite") from None
    server = _server_for(mode, read_secret(edir / "oprf.key", 32))
    if server.public_key != manifest.public_key:
        raise CorruptStoreError(f"{edir / 'oprf.key'}: key does not match the manifest")
    mbytes = (edir / "manifest.bin").read_bytes()
    created, expires = float(meta["created"]), meta.get("expires")
    return Epoch(number, server, manifest, mbytes, fbytes, created, expires)


class EpochStore:
    """The live epochs of one state directory; reloads when ``epochs.json`` changes."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        # one immutable snapshot (epochs, current), swapped atomically by reload()
        self._snap: tuple[dict[int, Epoch], int] = ({}, 0)
        self.reload()

    @classmethod
    def open(
        cls,
        state_dir: Path,
        hashes: HashSet,
        fpr: float | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        workers: int | None = None,
        mode: Mode | str | None = None,
    ) -> EpochStore:
        """Open the store, creating or rotating an epoch if the set, fpr or mode changed."""
        state_dir = Path(state_dir)
        st = _read_state(state_dir)
        cur = int(st["current"])
        need = cur == 0
        if cur:
            m = _load_manifest(state_dir, cur)
            _, digest = set_digest(hashes)
            want_m = fpr_to_m(fpr) if fpr is not None else m.fpr_inverse
            want_mode = parse_mode(mode) if mode is not None else mode_of(m.suite)
            need = (
                m.set_digest != digest
                or m.algo != hashes.algo.name
                or m.fpr_inverse != want_m
                or mode_of(m.suite) is not want_mode
            )
        if need:
            rotate_epoch(state_dir, hashes, grace_seconds, fpr, workers, mode=mode)
        return cls(state_dir)

    def _stat(self) -> tuple[int, int, int]:
        s = (self.state_dir / "epochs.json").stat()
        return (s.st_mtime_ns, s.st_size, s.st_ino)

    def reload(self) -> None:
        with self._lock:
            st = _read_state(self.state_dir)
            stamp = self._stat()
            signing_pub = _signing_key(self.state_dir).public_key().public_bytes_raw()
            now = time.time()
            epochs: dict[int, Epoch] = {}
            for k, meta in st["epochs"].items():
                number = int(k)
                if meta.get("expires") is not None and meta["expires"] <= now:
                    continue
                old = self._snap[0].get(number)
                if old is not None and old.expires == meta.get("expires"):
                    epochs[number] = old
                else:
                    epochs[number] = _load_epoch(self.state_dir, number, meta, signing_pub)
            if int(st["current"]) not in epochs:
                raise CorruptStoreError(f"{self.state_dir / 'epochs.json'}: current epoch missing")
            self._snap = (epochs, int(st["current"]))
            self._stamp = stamp

    def _maybe_reload(self) -> None:
        try:
            stamp = self._stat()
        except FileNotFoundError:
            return
        if stamp != self._stamp:
            self.reload()

    def current(self) -> Epoch:
        self._maybe_reload()
        epochs, current = self._snap
        return epochs[current]

    def get(self, number: int, now: float | None = None) -> Epoch:
        """The epoch ``number`` if it is current or within its grace period."""
        self._maybe_reload()
        ep = self._snap[0].get(number)
        if ep is None or not ep.live(time.time() if now is None else now):
            raise UnknownEpochError(f"key epoch {number} is not served")
        return ep

    def epochs(self) -> list[Epoch]:
        self._maybe_reload()
        return sorted(self._snap[0].values(), key=lambda e: e.number)
