"""AES-128-CTR as a PRG expanding to uniform elements of a Mersenne-prime field.

Why AES-CTR: every holder of a key must expand the same pseudo-random vector
(correlated randomness between parties, client-side share components), at numpy
speed; AES-CTR from ``cryptography`` is a standard PRG for that, keyed from
``secrets`` or an HKDF output. Stream ``label`` sets the upper 64 bits of the
counter block, so streams under one key never overlap below 2^64 blocks.

Elements of GF(2^bits − 1): each 16-bit little-endian keystream word is masked to
``bits`` bits; the one masked value equal to p (≡ 0) is replaced, in order, by the
next spare words of the same stream, so the output is uniform on [0, p) and
identical for every holder of the key.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import LengthError

__all__ = ["mersenne_elements"]


def mersenne_elements(key: bytes, label: int, n: int, bits: int) -> npt.NDArray[np.uint16]:
    """``n`` uniform elements of GF(2^bits − 1) (uint16) from AES-CTR(key) at stream ``label``."""
    if len(key) not in (16, 24, 32):
        raise LengthError("PRG key must be 16, 24 or 32 bytes")
    if not 2 <= bits <= 16:
        raise ValueError("field bits must be in 2..16")
    p = np.uint16((1 << bits) - 1)
    extra = n // 2048 + 64
    enc = Cipher(algorithms.AES(key), modes.CTR(struct.pack(">QQ", label, 0))).encryptor()
    raw = np.frombuffer(enc.update(bytes(2 * (n + extra))), dtype="<u2").copy()
    raw &= p
    out = raw[:n]
    bad = np.flatnonzero(out == p)
    spare = raw[n:]
    while bad.size:
        spare = spare[spare != p]
        take = min(bad.size, spare.size)
        out[bad[:take]] = spare[:take]
        bad = bad[take:]
        # astronomically rare: extend the stream deterministically
        spare = np.frombuffer(enc.update(bytes(2 * (bad.size + 64))), dtype="<u2") & p
    return out
