"""Arithmetic in GF(p) for p = 2^13 − 1, vectorised over uint32 numpy arrays.

Why this prime: it is a Mersenne prime, so reduction is two rounds of
``(x & p) + (x >> 13)`` (shift, mask, add: SIMD-friendly numpy passes, about ten
times cheaper than ``%``), elements fit in uint16 on the wire, and a replicated
multiplication ``a·(b + c) + d·e + α`` of canonical elements stays below 2^28, far
inside uint32. The field only has to hold the distances (w = 2d − r ≤ 481 < p/2);
the small size is paid for with repetitions where soundness matters (the bit check
and the output masks use several independent draws; see ``_circuit``).

Random field elements come from AES-128-CTR keystreams (``cryptography``) keyed
with secrets: 16 keystream bits are masked to 13 and the value p (≡ 0) is rejected
by a deterministic rule, so every holder of a key expands the same uniform vector.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "ELEMENT_BYTES",
    "P",
    "Vec",
    "canon",
    "from_wire",
    "prg",
    "reduce",
    "to_wire",
]

P = 8191
ELEMENT_BYTES = 2
_P32 = np.uint32(P)
_SHIFT = np.uint32(13)
_P16 = np.uint16(P)

Vec = npt.NDArray[np.uint32]


def reduce(x: Vec, tmp: Vec | None = None) -> Vec:
    """In place: any x < 2^31 to a value below p + 5 (congruent mod p)."""
    t = np.empty_like(x) if tmp is None else tmp[: x.size]
    np.bitwise_and(x, _P32, out=t)
    np.right_shift(x, _SHIFT, out=x)
    x += t
    np.bitwise_and(x, _P32, out=t)
    np.right_shift(x, _SHIFT, out=x)
    x += t
    return x


def canon(x: Vec) -> Vec:
    """In place: a reduced value (< 2p) to its canonical representative in [0, p)."""
    np.subtract(x, _P32, out=x, where=x >= _P32)
    return x


def to_wire(x: Vec) -> bytes:
    """Canonical elements as little-endian uint16."""
    return x.astype("<u2").tobytes()


def from_wire(data: bytes, n: int) -> Vec:
    """Inverse of ``to_wire``; rejects a wrong length or non-canonical values."""
    if len(data) != n * ELEMENT_BYTES:
        raise ValueError(f"{len(data)} bytes for {n} elements")
    v = np.frombuffer(data, dtype="<u2").astype(np.uint32)
    if v.size and int(v.max()) >= P:
        raise ValueError("element out of range")
    return v


def prg(key: bytes, label: int, n: int) -> npt.NDArray[np.uint16]:
    """``n`` uniform elements of GF(p) (uint16) from AES-128-CTR(key) at stream ``label``."""
    extra = n // 2048 + 64
    enc = Cipher(algorithms.AES(key), modes.CTR(struct.pack(">QQ", label, 0))).encryptor()
    raw = np.frombuffer(enc.update(bytes(2 * (n + extra))), dtype="<u2").copy()
    raw &= _P16
    out = raw[:n]
    bad = np.flatnonzero(out == _P16)
    spare = raw[n:]
    while bad.size:
        spare = spare[spare != _P16]
        take = min(bad.size, spare.size)
        out[bad[:take]] = spare[:take]
        bad = bad[take:]
        # astronomically rare: extend the stream deterministically
        spare = np.frombuffer(enc.update(bytes(2 * (bad.size + 64))), dtype="<u2") & _P16
    return out
