"""ristretto255 (RFC 9496) through libsodium, with RFC 9380 hash-to-group.

Why wrap: libsodium accepts the identity encoding as a "valid point" and signals
an identity result with a RuntimeError. Protocols need one rule: every element
read from the wire is canonical and not the identity (RFC 9497 §2.1
DeserializeElement), and every failure is a typed error.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import sys

import rbcl
from cryptography.hazmat.primitives import hashes

from ..errors import DeserializeError, InverseError, LengthError

__all__ = [
    "ELEMENT_BYTES",
    "IDENTITY",
    "SCALAR_BYTES",
    "add",
    "base_mult",
    "ct_equal",
    "decode_element",
    "decode_scalar",
    "expand_message_xmd",
    "hash_to_group",
    "hash_to_scalar",
    "random_scalar",
    "scalar_add",
    "scalar_inverse",
    "scalar_mul",
    "scalar_mult",
    "scalar_sub",
    "sha512",
    "sub",
]


def _remove_rbcl_temp_copy() -> None:
    """rbcl writes its bundled libsodium (2.8 MB) to a new temporary file on every
    import and never deletes it; a long-lived host with many worker processes fills
    /tmp. Once loaded the file is not needed on POSIX, so remove it here."""
    mod = sys.modules.get("rbcl._sodium")
    path = getattr(mod, "lib_path", None)
    if os.name == "posix" and isinstance(path, str) and os.path.basename(path).startswith("tmp"):
        with contextlib.suppress(OSError):
            os.unlink(path)


_remove_rbcl_temp_copy()

ELEMENT_BYTES = 32
SCALAR_BYTES = 32
IDENTITY = bytes(32)
_ORDER = 2**252 + 27742317777372353535851937790883648493


def sha512(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA512())
    h.update(data)
    return h.finalize()


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality for secrets and MACs."""
    return hmac.compare_digest(a, b)


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 with SHA-512 (b_in_bytes=64, s_in_bytes=128)."""
    b_in, s_in = 64, 128
    ell = -(-len_in_bytes // b_in)
    if ell > 255 or len_in_bytes > 65535 or len(dst) > 255:
        raise LengthError("expand_message_xmd: requested length or DST too long")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(s_in) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = sha512(msg_prime)
    bi = sha512(b0 + b"\x01" + dst_prime)
    out = bytearray(bi)
    for i in range(2, ell + 1):
        bi = sha512(bytes(x ^ y for x, y in zip(b0, bi, strict=True)) + bytes([i]) + dst_prime)
        out += bi
    return bytes(out[:len_in_bytes])


def hash_to_group(msg: bytes, dst: bytes) -> bytes:
    """RFC 9380 hash_to_ristretto255: expand to 64 bytes, then libsodium's one-way map."""
    return bytes(rbcl.crypto_core_ristretto255_from_hash(expand_message_xmd(msg, dst, 64)))


def hash_to_scalar(msg: bytes, dst: bytes) -> bytes:
    """RFC 9497 HashToScalar for ristretto255: 64 uniform bytes reduced mod the order."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(expand_message_xmd(msg, dst, 64)))


def random_scalar() -> bytes:
    """Uniform non-zero scalar from libsodium's CSPRNG."""
    while True:
        s = bytes(rbcl.crypto_core_ristretto255_scalar_random())
        if s != bytes(32):
            return s


def decode_element(data: bytes, full: bool = True) -> bytes:
    """RFC 9497 DeserializeElement: canonical encoding, not the identity.

    ``full=False`` skips libsodium's point validation (a square root) for an
    element that is about to be scalar-multiplied anyway: ``scalar_mult`` decodes
    with the same canonical check and raises ``DeserializeError`` on failure.
    """
    if not isinstance(data, bytes | bytearray):
        raise TypeError("element must be bytes")
    if len(data) != ELEMENT_BYTES:
        raise DeserializeError("element must be 32 bytes")
    data = bytes(data)
    # RFC 9496 §4.3.1: s >= p fails; this libsodium build ignores bit 255, so check it here.
    if data == IDENTITY or data[31] & 0x80:
        raise DeserializeError("invalid group element")
    if full and not rbcl.crypto_core_ristretto255_is_valid_point(data):
        raise DeserializeError("invalid group element")
    return data


def decode_scalar(data: bytes) -> bytes:
    """Canonical scalar (< group order), 32 bytes little-endian."""
    if len(data) != SCALAR_BYTES:
        raise DeserializeError("scalar must be 32 bytes")
    if int.from_bytes(data, "little") >= _ORDER:
        raise DeserializeError("non-canonical scalar")
    return bytes(data)


def scalar_mult(scalar: bytes, element: bytes) -> bytes:
    """scalar·element; a non-canonical element or an identity result is a DeserializeError."""
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, element))
    except RuntimeError:
        raise DeserializeError("invalid group element (or an identity product)") from None


def base_mult(scalar: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar))
    except RuntimeError:
        raise DeserializeError("scalar multiplication produced the identity") from None


def add(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_add(a, b))


def sub(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_sub(a, b))


def scalar_inverse(s: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_core_ristretto255_scalar_invert(s))
    except ValueError:
        raise InverseError("scalar has no inverse") from None


def scalar_mul(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_mul(a, b))


def scalar_add(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_add(a, b))


def scalar_sub(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_sub(a, b))


def random_bytes(n: int) -> bytes:
    return secrets.token_bytes(n)
