"""A secret-shared set: no single party holds the hash list in the clear.

The list holder (the dealer) splits every set bit s_kb into replicated components
s = c0 + c1 + c2 over GF(8191), as the client does with its hash, and writes one
file per party: party i gets (c_i, c_{i+1}) of every bit. One party's file is two
uniform vectors, independent of the set; any two parties' files add up to the set.

The files are bound together by a commitment: D = SHA-256(domain, algo, bits, n,
H(c0), H(c1), H(c2)), where H(c_j) is the SHA-256 of component j. Every file
carries the three component digests; a party recomputes the digests of the two
components it holds and refuses its file if they differ (``CorruptStoreError``),
and D takes the place of the clear set's digest in the manifest and in the
channel handshake's configuration digest. Parties holding files of different
dealings (or a file whose component was changed) therefore never pair. What a
party cannot check: that the dealing encodes the list a curator signed (it never
sees the list), nor the third component it does not hold (its other holder does).

File layout (little-endian)::

    magic "BMSS" (4) || version 1 (1) || party (1) || algo id (1) || bits (u16) || n (u64)
    || H(c0) || H(c1) || H(c2) (3 × 32) || c_i (n × bits × u16) || c_{i+1} (n × bits × u16)

Per query (``SharedColumns``), party i's cross term Σ_b x_b s_kb is the replicated
inner product of Araki et al.: the local part Σ_b xa_b (sa_kb + sb_kb) + xb_b sa_kb,
one integer matrix-vector product (every sum is below 512 · 8190² < 2^36, exact in
int64), reduced mod p and re-randomised by a zero-sharing, then one element per entry
is sent to the previous party.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import CorruptStoreError
from ..files import atomic_writer
from ._field import P, Vec, prg

__all__ = ["SharedColumns", "SharedSetFile", "deal_shared_set", "share_file_name"]

_MAGIC = b"BMSS"
_VERSION = 1
_HEAD = struct.Struct("<4sBBBHQ")
_DIGESTS = 3 * 32
_DOMAIN = b"blindmatch-mpc-v1/shared-set"
_ROWS = 1 << 13  # rows per block of the inner product and of the load-time preparation


def share_file_name(party: int) -> str:
    return f"set-share-{party}.bin"


def set_bits(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """(n, bits) 0/1 matrix, most significant bit first (the order of ``HashValue.bits``)."""
    return np.unpackbits(words.astype(">u8").view(np.uint8).reshape(words.shape[0], -1), axis=1)


def commitment(algo_id: int, bits: int, n: int, digests: bytes) -> bytes:
    """D: what the three parties' files must agree on (replaces the clear set's digest)."""
    return hashlib.sha256(_DOMAIN + struct.pack("<BHQ", algo_id, bits, n) + digests).digest()


def _component_digest(comp: npt.NDArray[np.uint16]) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(comp, dtype="<u2").tobytes()).digest()


def deal_shared_set(words: npt.NDArray[np.uint64], algo_id: int, out_dir: Path) -> bytes:
    """Write ``set-share-{0,1,2}.bin`` (mode 0600) into ``out_dir``; returns the commitment D.

    Components c0 and c1 are two AES-CTR streams (``hazmat.prg``) under a fresh
    ``secrets`` key, uniform on GF(p); c2 = s − c0 − c1.
    """
    s = set_bits(words)
    n, bits = s.shape
    seed = secrets.token_bytes(16)
    c0 = prg(seed, 0, n * bits).reshape(n, bits)
    c1 = prg(seed, 1, n * bits).reshape(n, bits)
    c2 = np.empty_like(c0)
    for r in range(0, n, _ROWS):
        rows = slice(r, r + _ROWS)
        c2[rows] = (s[rows].astype(np.int32) - c0[rows] - c1[rows]) % P
    comps = (c0, c1, c2)
    digests = b"".join(_component_digest(c) for c in comps)
    for i in range(3):
        head = _HEAD.pack(_MAGIC, _VERSION, i, algo_id, bits, n) + digests
        with atomic_writer(out_dir / share_file_name(i), mode=0o600) as fh:
            fh.write(head)
            fh.write(np.ascontiguousarray(comps[i], dtype="<u2").tobytes())
            fh.write(np.ascontiguousarray(comps[(i + 1) % 3], dtype="<u2").tobytes())
    return commitment(algo_id, bits, n, digests)


@dataclass(frozen=True)
class SharedSetFile:
    """Party ``party``'s two components of every set bit, checked against the file's digests."""

    party: int
    algo_id: int
    commitment: bytes
    a: npt.NDArray[np.uint16]  # (n, bits): component party
    b: npt.NDArray[np.uint16]  # (n, bits): component party + 1

    @classmethod
    def load(cls, path: Path, party: int, algo_id: int, bits: int) -> SharedSetFile:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptStoreError(f"{path}: missing (deal it with `blindmatch mpc share-set`)") from None
        if len(data) < _HEAD.size + _DIGESTS:
            raise CorruptStoreError(f"{path}: truncated header")
        magic, version, owner, algo, width, n = _HEAD.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise CorruptStoreError(f"{path}: not a shared-set file of version {_VERSION}")
        if owner != party or algo != algo_id or width != bits or n == 0:
            raise CorruptStoreError(
                f"{path}: dealt for party {owner}, algo {algo}, {width} bits, {n} entries; "
                f"this is party {party} of a {bits}-bit algo {algo_id} set"
            )
        body = _HEAD.size + _DIGESTS
        if len(data) != body + 4 * n * width:
            raise CorruptStoreError(f"{path}: {len(data)} bytes, expected {body + 4 * n * width}")
        digests = data[_HEAD.size : body]
        comps = np.frombuffer(data, dtype="<u2", offset=body).reshape(2, n, width)
        for k, comp in enumerate(comps):
            j = (party + k) % 3
            if not hmac.compare_digest(_component_digest(comp), digests[32 * j : 32 * (j + 1)]):
                raise CorruptStoreError(f"{path}: component {j} does not match its digest")
            if int(comp.max()) >= P:
                raise CorruptStoreError(f"{path}: component {j} holds a value outside the field")
        return cls(party, algo, commitment(algo, width, n, digests), comps[0], comps[1])


@dataclass(frozen=True)
class SharedColumns:
    """Party i's view of the shared set, prepared for the per-query inner products.

    ``mat`` = [a + b | a] (n × 2·bits, canonical), so the local cross term is
    ``mat @ [xa; xb]``; ``weight_a`` / ``weight_b`` are party i's components of |s_k|.
    """

    mat: npt.NDArray[np.uint16]
    weight_a: Vec
    weight_b: Vec
    radius: int

    @classmethod
    def build(cls, share: SharedSetFile, radius: int) -> SharedColumns:
        n, bits = share.a.shape
        mat = np.empty((n, 2 * bits), dtype=np.uint16)
        for s in range(0, n, _ROWS):  # blockwise: no full-size temporaries at 10^6 entries
            a, b = share.a[s : s + _ROWS].astype(np.uint32), share.b[s : s + _ROWS]
            mat[s : s + _ROWS, :bits] = (a + b) % P
            mat[s : s + _ROWS, bits:] = share.a[s : s + _ROWS]
        wa = (share.a.sum(axis=1, dtype=np.uint64) % P).astype(np.uint32)
        wb = (share.b.sum(axis=1, dtype=np.uint64) % P).astype(np.uint32)
        return cls(mat, wa, wb, radius)

    def __len__(self) -> int:
        return int(self.mat.shape[0])

    def slice(self, start: int, stop: int) -> SharedColumns:
        sl = slice(start, stop)
        return SharedColumns(self.mat[sl], self.weight_a[sl], self.weight_b[sl], self.radius)

    def cross_terms(self, xa: Vec, xb: Vec) -> Vec:
        """Party i's additive share of Σ_b x_b s_kb for every entry (canonical, before re-randomising).

        ``einsum`` on uint16 × int64 is numpy's own single-threaded loop: exact integer
        sums, no full-size temporary, and no BLAS thread pool (a multi-threaded BLAS
        spinning next to the other two parties' processes doubled the CPU per query).
        """
        x = np.concatenate([xa, xb]).astype(np.int64)
        out = np.empty(len(self), dtype=np.uint32)
        for s in range(0, len(self), _ROWS):
            block = np.einsum("ij,j->i", self.mat[s : s + _ROWS], x)
            out[s : s + _ROWS] = block % P
        return out
