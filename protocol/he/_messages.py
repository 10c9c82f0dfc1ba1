"""Wire messages of the ``he`` protocol (protocol id 4), framed by ``protocol/wire.py``.

Every message is a frozen dataclass with ``to_bytes``/``from_bytes``. Decoding
checks every fixed-size field's length and every count against the others, so a
message either parses completely or raises a ``DecodeError``. SEAL blobs inside a
query are *not* parsed here — only their framing; ``hazmat.bfv.check_seal_blob``
looks at their headers and SEAL itself parses them in the isolated worker.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import DecodeError, LengthError
from ..wire import decode_fields, encode_fields

__all__ = [
    "MODE_CLIENT",
    "MODE_SERVER",
    "PROTOCOL_ID",
    "KeysMessage",
    "ParamsMessage",
    "PsiAck",
    "PsiMessage",
    "QueryMessage",
    "ResultMessage",
    "key_digest",
]

PROTOCOL_ID = 4
MSG_QUERY, MSG_RESULT, MSG_PSI, MSG_PSI_ACK, MSG_KEYS = 2, 3, 4, 5, 6
# Params gained ``psi_slots`` (the client's cap on server-learns slots): type 7.
# Type 1, the params message without it, is retired and fails closed.
MSG_PARAMS_V1, MSG_PARAMS = 1, 7
MODE_CLIENT, MODE_SERVER = 1, 2
DOMAIN = b"blindmatch-he-v1"
SID_BYTES = 16
ELEMENT_BYTES = 32
_MAX_BLOB = 1 << 26

_CORE = struct.Struct(">BBHHHBB")
_QHDR = struct.Struct(">BBBB")
_RHDR = struct.Struct(">BIIB")


def key_digest(keys: bytes) -> bytes:
    """Names a key bundle in the server's cache; the server recomputes it, never trusts it."""
    return hashlib.sha256(DOMAIN + b"|keys|" + keys).digest()


@dataclass(frozen=True)
class ParamsMessage:
    """Everything a client needs before its first query (GET params)."""

    param_set: int
    algo_id: int
    radius: int
    bits: int
    baby: int
    modes: int  # bit 0: client-learns, bit 1: server-learns
    lsh_offered: bool
    poly_degree: int
    plain_modulus: int
    primes: tuple[int, ...]
    groups: int  # ⌈set size / N⌉: the number of result ciphertexts of a full scan
    lsh_positions: tuple[tuple[int, ...], ...]
    psi_slots: int = 0  # server-learns: the most PSI slots any query is answered with (0: not offered)

    def to_bytes(self) -> bytes:
        core = _CORE.pack(
            self.param_set, self.algo_id, self.radius, self.bits, self.baby, self.modes,
            int(self.lsh_offered),
        )
        bfv = struct.pack(">IQB", self.poly_degree, self.plain_modulus, len(self.primes))
        bfv += b"".join(struct.pack(">Q", p) for p in self.primes)
        lsh = b""
        if self.lsh_positions:
            k, n = len(self.lsh_positions[0]), len(self.lsh_positions)
            lsh = bytes([k, n]) + bytes(p for row in self.lsh_positions for p in row)
        return encode_fields(
            PROTOCOL_ID, MSG_PARAMS,
            [core, bfv, struct.pack(">I", self.groups), lsh, struct.pack(">I", self.psi_slots)],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ParamsMessage:
        core, bfv, groups, lsh, psi = decode_fields(data, PROTOCOL_ID, MSG_PARAMS, 5, max_field=4096)
        if len(core) != _CORE.size or len(groups) != 4 or len(bfv) < 13 or len(psi) != 4:
            raise LengthError("malformed he params")
        ps, algo, radius, bits, baby, modes, lsh_flag = _CORE.unpack(core)
        n, t, count = struct.unpack_from(">IQB", bfv, 0)
        if len(bfv) != 13 + 8 * count:
            raise LengthError("malformed he params: prime list")
        primes = tuple(struct.unpack_from(">Q", bfv, 13 + 8 * i)[0] for i in range(count))
        positions: tuple[tuple[int, ...], ...] = ()
        if lsh:
            if len(lsh) < 2 or len(lsh) != 2 + lsh[0] * lsh[1] or lsh[0] == 0:
                raise LengthError("malformed he params: LSH table")
            k, tables = lsh[0], lsh[1]
            positions = tuple(tuple(lsh[2 + i * k : 2 + (i + 1) * k]) for i in range(tables))
        if lsh_flag > 1 or (lsh_flag == 1) != bool(positions):
            raise DecodeError("malformed he params: LSH flag")
        return cls(
            ps, algo, radius, bits, baby, modes, bool(lsh_flag), n, t, primes,
            struct.unpack(">I", groups)[0], positions, struct.unpack(">I", psi)[0],
        )


@dataclass(frozen=True)
class KeysMessage:
    """The client's public evaluation keys: public key, relinearisation key, Galois keys."""

    public: bytes
    relin: bytes
    galois: bytes

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, MSG_KEYS, [self.public, self.relin, self.galois])

    @classmethod
    def from_bytes(cls, data: bytes) -> KeysMessage:
        pk, rk, gk = decode_fields(data, PROTOCOL_ID, MSG_KEYS, 3, max_field=_MAX_BLOB)
        return cls(pk, rk, gk)


@dataclass(frozen=True)
class QueryMessage:
    """POST query: the encrypted, replicated hash bits and (the name of) the keys."""

    param_set: int
    algo_id: int
    mode: int
    digest: bytes
    keys: bytes  # a KeysMessage, or b"" to use the server's cached copy
    ciphertext: bytes
    bucket_ids: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        hdr = _QHDR.pack(self.param_set, self.algo_id, self.mode, int(bool(self.bucket_ids)))
        ids = b"".join(struct.pack(">I", i) for i in self.bucket_ids)
        return encode_fields(
            PROTOCOL_ID, MSG_QUERY, [hdr, self.digest, self.keys, self.ciphertext, ids]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> QueryMessage:
        hdr, digest, keys, ct, ids = decode_fields(
            data, PROTOCOL_ID, MSG_QUERY, 5, max_field=_MAX_BLOB
        )
        if len(hdr) != _QHDR.size or len(digest) != 32 or len(ids) % 4 or len(ids) > 4 * 64:
            raise LengthError("malformed he query")
        ps, algo, mode, bucketed = _QHDR.unpack(hdr)
        if mode not in (MODE_CLIENT, MODE_SERVER) or bucketed > 1 or bool(bucketed) != bool(ids):
            raise DecodeError("malformed he query header")
        if not ct:
            raise LengthError("he query without a ciphertext")
        bucket_ids = tuple(struct.unpack_from(">I", ids, i)[0] for i in range(0, len(ids), 4))
        return cls(ps, algo, mode, digest, keys, ct, bucket_ids)


@dataclass(frozen=True)
class ResultMessage:
    """The flooded result ciphertexts as raw RNS coefficients (+ PSI elements in server-learns)."""

    mode: int
    groups: int
    used_slots: int
    primes: int
    sid: bytes
    raw: bytes  # groups × 2 polys × primes × N little-endian uint64
    elements: bytes  # used_slots × 32 (server-learns) or b""

    def to_bytes(self) -> bytes:
        hdr = _RHDR.pack(self.mode, self.groups, self.used_slots, self.primes)
        return encode_fields(
            PROTOCOL_ID, MSG_RESULT, [hdr, self.sid, self.raw, self.elements]
        )

    @classmethod
    def from_bytes(cls, data: bytes, poly_degree: int, max_groups: int) -> ResultMessage:
        hdr, sid, raw, elements = decode_fields(data, PROTOCOL_ID, MSG_RESULT, 4, max_field=1 << 30)
        if len(hdr) != _RHDR.size:
            raise LengthError("malformed he result header")
        mode, groups, used, primes = _RHDR.unpack(hdr)
        if mode not in (MODE_CLIENT, MODE_SERVER) or not 1 <= groups <= max_groups or primes == 0:
            raise DecodeError("malformed he result header")
        if len(raw) != groups * 2 * primes * poly_degree * 8:
            raise LengthError("he result ciphertexts have the wrong length")
        if mode == MODE_CLIENT and (sid or elements or used):
            raise DecodeError("client-learns result carries server-learns fields")
        if mode == MODE_SERVER:
            if len(sid) != SID_BYTES or not 0 < used <= groups * poly_degree:
                raise DecodeError("malformed server-learns result")
            if len(elements) != used * ELEMENT_BYTES:
                raise LengthError("server-learns result: wrong number of PSI elements")
        return cls(mode, groups, used, primes, sid, raw, elements)

    def ciphertexts(self, poly_degree: int) -> npt.NDArray[np.uint64]:
        arr = np.frombuffer(self.raw, dtype="<u8").astype(np.uint64)
        return arr.reshape(self.groups, 2, self.primes, poly_degree)


@dataclass(frozen=True)
class PsiMessage:
    """Client → server, server-learns: H(sid,j,v_j)^a and (H(sid,j,m_j)^b)^a, each shuffled."""

    sid: bytes
    blinded: bytes
    doubled: bytes

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, MSG_PSI, [self.sid, self.blinded, self.doubled])

    @classmethod
    def from_bytes(cls, data: bytes, max_slots: int) -> PsiMessage:
        sid, a, c = decode_fields(
            data, PROTOCOL_ID, MSG_PSI, 3, max_field=max_slots * ELEMENT_BYTES
        )
        if len(sid) != SID_BYTES or len(a) != len(c) or not a or len(a) % ELEMENT_BYTES:
            raise LengthError("malformed he PSI message")
        return cls(sid, a, c)

    def count(self) -> int:
        return len(self.blinded) // ELEMENT_BYTES


@dataclass(frozen=True)
class PsiAck:
    """Server → client: received. Deliberately carries nothing about the verdict."""

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, MSG_PSI_ACK, [b""])

    @classmethod
    def from_bytes(cls, data: bytes) -> PsiAck:
        (body,) = decode_fields(data, PROTOCOL_ID, MSG_PSI_ACK, 1, max_field=0)
        if body:
            raise LengthError("he PSI ack carries data")
        return cls()
