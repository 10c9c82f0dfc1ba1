"""AES-256-GCM for one direction of a long-lived channel: a frame counter is the nonce.

Why counter nonces: each direction has its own key (derived once per connection),
so the frame index is a nonce that never repeats under that key, and a receiver
that counts the same way rejects reordered, replayed, dropped or forged frames:
any of them fails authentication. Key commitment (``aead.seal``) is not needed
here: both ends hold the same freshly derived key, there is no key to guess.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import CryptoError, LengthError

__all__ = ["FRAME_TAG_BYTES", "FrameCipher"]

FRAME_TAG_BYTES = 16


class FrameCipher:
    """Seals (or opens) the frames of one direction, in order; not thread-safe."""

    __slots__ = ("_aead", "_counter")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise LengthError("frame key must be 32 bytes")
        self._aead = AESGCM(key)
        self._counter = 0

    def _nonce(self) -> bytes:
        nonce = self._counter.to_bytes(12, "big")
        self._counter += 1
        return nonce

    def seal(self, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self._nonce(), plaintext, None)

    def open(self, ciphertext: bytes) -> bytes:
        """The next frame's plaintext; ``CryptoError`` if it is not the next authentic frame."""
        try:
            return self._aead.decrypt(self._nonce(), ciphertext, None)
        except InvalidTag:
            raise CryptoError("frame failed authentication") from None
