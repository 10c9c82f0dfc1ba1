"""End-to-end boxes between the client and each party (party 0 relays the others' unread).

Per query the client draws a fresh X25519 key ``eph``; with party i's static key it
derives, by HKDF, one key for the share box it sends and one for the result box it
receives. Each key seals exactly one message (``seal_once``): fresh key material
per query, and party 0 cannot read, alter or replay boxes meant for parties 1 and 2.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import CryptoError
from ..hazmat.aead import open_once, seal_once

__all__ = ["BoxKeys", "box_keys"]


class BoxKeys:
    def __init__(self, request: bytes, reply: bytes, aad: bytes) -> None:
        self._request, self._reply, self._aad = request, reply, aad

    def seal_request(self, data: bytes) -> bytes:
        return seal_once(self._request, data, self._aad, b"mpc-shares")

    def open_request(self, box: bytes) -> bytes:
        return open_once(self._request, box, self._aad, b"mpc-shares")

    def seal_reply(self, data: bytes) -> bytes:
        return seal_once(self._reply, data, self._aad, b"mpc-result")

    def open_reply(self, box: bytes) -> bytes:
        return open_once(self._reply, box, self._aad, b"mpc-result")


def box_keys(own: X25519PrivateKey, peer_pub: bytes, eph_pub: bytes, party: int, mode: int) -> BoxKeys:
    """Keys for party ``party``'s boxes; ``own`` is the client's eph key or the party's static key."""
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(peer_pub))
    except ValueError:
        raise CryptoError("bad key exchange") from None
    aad = b"blindmatch-mpc-v1/box" + eph_pub + bytes([party, mode])
    okm = HKDF(hashes.SHA256(), 64, None, aad).derive(shared)
    return BoxKeys(okm[:32], okm[32:], aad)
