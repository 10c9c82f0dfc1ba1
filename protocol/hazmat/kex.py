"""X25519 key agreement and HKDF-SHA256 key derivation, from ``cryptography``.

Protocol code holds ``KexKey`` objects and raw 32-byte public keys; it never sees
the ``cryptography`` key classes. ``exchange`` turns every failure (a malformed
public key, a low-order point giving the all-zero secret) into a detail-free
``CryptoError``.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import CryptoError

__all__ = ["KEX_BYTES", "KexKey", "hkdf_sha256"]

KEX_BYTES = 32


class KexKey:
    """An X25519 private key."""

    __slots__ = ("_key",)

    def __init__(self, key: X25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> KexKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KexKey:
        try:
            return cls(X25519PrivateKey.from_private_bytes(raw))
        except ValueError:
            raise CryptoError("bad X25519 private key") from None

    def private_bytes(self) -> bytes:
        return self._key.private_bytes_raw()

    @property
    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def exchange(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret with ``peer_public`` (32 raw bytes)."""
        try:
            return self._key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:
            raise CryptoError("bad key exchange") from None


def hkdf_sha256(secret: bytes, length: int, info: bytes, salt: bytes | None = None) -> bytes:
    """RFC 5869 HKDF-SHA256 (extract and expand)."""
    return HKDF(hashes.SHA256(), length, salt, info).derive(secret)
