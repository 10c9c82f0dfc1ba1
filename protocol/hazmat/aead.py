"""Key-committing AEAD: AES-256-GCM under an HKDF-derived key, plus a commitment tag.

Why not bare AES-GCM: the Apple PSI construction needs a *random-key-robust*
AEAD — a ciphertext made under one key must fail to open under any other key,
because the server tells matches from non-matches only by whether the outer
ciphertext opens. GCM alone fails this against adversarial keys (the
"invisible salamanders" / partitioning-oracle attacks of Dodis et al. 2018 and
Len–Grubbs–Ristenpart 2021: one GCM ciphertext can be made to open under many
keys). We use the standard fix of deriving, from the input key ``K`` and a
per-message salt ``N``, three values with HKDF-SHA256 (RFC 5869)::

    enc_key (32) || gcm_nonce (12) || commit (32)  =  HKDF(K, salt=N, info=label)

and sending ``commit`` in the clear next to the GCM ciphertext. Opening
recomputes ``commit`` from the candidate key and compares in constant time
before touching GCM. Two different keys that yield the same ``commit`` would
be an HKDF-SHA256 collision (about 2^128 work), so a ciphertext opens under at
most one key (key commitment, "CMT-1" in Bellare–Hoang 2022), which implies
random-key robustness. A wrong key is rejected after one HKDF call (~10 µs),
which is also the fast path for the non-matching pairs of every voucher.

Two framings:

* ``seal`` (key may be reused): a random 16-byte salt ``N`` is sent; every
  message gets its own GCM key and nonce, and its own commitment, so two
  ciphertexts under the same key do not share a visible commitment.
* ``seal_once`` (key used for exactly one message, e.g. a fresh DH value or a
  fresh random key): no salt is sent; saves 16 bytes per ciphertext.

Nothing here is a new primitive: AES-GCM and HKDF are ``cryptography``'s.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import CryptoError, LengthError
from .ristretto import ct_equal

__all__ = [
    "COMMIT_BYTES",
    "KEY_BYTES",
    "OVERHEAD",
    "OVERHEAD_ONCE",
    "SALT_BYTES",
    "TAG_BYTES",
    "open_",
    "open_once",
    "seal",
    "seal_once",
]

KEY_BYTES = 32
SALT_BYTES = 16
COMMIT_BYTES = 32
TAG_BYTES = 16
OVERHEAD_ONCE = COMMIT_BYTES + TAG_BYTES
OVERHEAD = SALT_BYTES + COMMIT_BYTES + TAG_BYTES
_DOMAIN = b"blindmatch-aead-v1|"


def _derive(key: bytes, salt: bytes | None, label: bytes) -> tuple[bytes, bytes, bytes]:
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise LengthError("AEAD key must be at least 16 bytes")
    okm = HKDF(hashes.SHA256(), 32 + 12 + COMMIT_BYTES, salt, _DOMAIN + label).derive(bytes(key))
    return okm[:32], okm[32:44], okm[44:]


def _seal(key: bytes, salt: bytes | None, plaintext: bytes, aad: bytes, label: bytes) -> bytes:
    enc_key, nonce, commit = _derive(key, salt, label)
    return commit + AESGCM(enc_key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, salt: bytes | None, body: bytes, aad: bytes, label: bytes) -> bytes:
    if len(body) < OVERHEAD_ONCE:
        raise CryptoError("decryption failed")
    enc_key, nonce, commit = _derive(key, salt, label)
    if not ct_equal(commit, body[:COMMIT_BYTES]):
        raise CryptoError("decryption failed")
    try:
        return AESGCM(enc_key).decrypt(nonce, body[COMMIT_BYTES:], aad)
    except InvalidTag:
        raise CryptoError("decryption failed") from None


def seal_once(key: bytes, plaintext: bytes, aad: bytes, label: bytes) -> bytes:
    """Encrypt under a key that is never used again: ``commit || gcm(ct) || tag``."""
    return _seal(key, None, plaintext, aad, label)


def open_once(key: bytes, ciphertext: bytes, aad: bytes, label: bytes) -> bytes:
    """Inverse of ``seal_once``; any failure is a detail-free ``CryptoError``."""
    return _open(key, None, ciphertext, aad, label)


def seal(key: bytes, plaintext: bytes, aad: bytes, label: bytes) -> bytes:
    """Encrypt under a reusable key: ``salt || commit || gcm(ct) || tag``."""
    salt = secrets.token_bytes(SALT_BYTES)
    return salt + _seal(key, salt, plaintext, aad, label)


def open_(key: bytes, ciphertext: bytes, aad: bytes, label: bytes) -> bytes:
    """Inverse of ``seal``; any failure is a detail-free ``CryptoError``."""
    if len(ciphertext) < OVERHEAD:
        raise CryptoError("decryption failed")
    return _open(key, ciphertext[:SALT_BYTES], ciphertext[SALT_BYTES:], aad, label)
