"""Client ↔ party 0 messages of ``mpc``, framed by ``protocol/wire.py`` (version byte first).

::

    MpcQuery    mode (1) || eph X25519 pub (32) || box_0 || box_1 || box_2
    MpcReply    box_0 || box_1 || box_2           (client-learns: each party's masked component)
    MpcAck      accepted (1)                      (server-learns: the client learns nothing)
    MpcManifest body || Ed25519 signature by party 0          (format 2, message type 6)
      body =    head, then per party i: Ed25519 pub (32), X25519 pub (32), peer address,
                entry signature (64) = Sig_i("blindmatch-mpc-v2/party-entry" || head || i
                                              || Ed25519 pub_i || X25519 pub_i)
      head =    algo id, radius (u16), set size (u64), set digest (32), chunk (u32), masks (1)

Box i is sealed (key-committing AES-GCM, ``hazmat.aead.seal_once``) under a key
from X25519(eph, party i's static key), so party 0 relays boxes 1 and 2 without
reading them. Box plaintexts have fixed sizes (2 components × bits × 2 bytes up,
masks × 2 bytes down), so sizes reveal nothing about the hash or the verdict.

Why every party signs its own entry: the client seals box i to the X25519 key the
manifest names for party i. In format 1 only party 0 signed, so a hostile party 0
could name keys it holds for parties 1 and 2, open all three boxes and add the
shares up to the client's hash. Now party i vouches for its own box key (and for
the head: set, radius, circuit), party 0 relays those signatures (it gets them in
the channel handshake), and a client that pins all three signing keys refuses a
substituted entry before it sends anything. A client that pins none can only check
that the entries are self-consistent and the keys distinct: it trusts party 0 to
name the others. The peer address is party 0's directory information: the client
never connects to it, and it is signed by party 0 only. Format-1 manifests fail
closed with ``UnknownVersionError``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import DecodeError, LengthError, SignatureError, UnknownVersionError
from ..wire import decode_fields, encode_fields

__all__ = [
    "MODE_CLIENT",
    "MODE_SERVER",
    "PROTOCOL_ID",
    "MpcAck",
    "MpcManifest",
    "MpcQuery",
    "MpcReply",
    "PartyInfo",
    "entry_message",
    "manifest_head",
]

PROTOCOL_ID = 5
_MSG_QUERY, _MSG_REPLY, _MSG_ACK = 1, 2, 3
_MSG_MANIFEST_V1 = 4  # format 1: party 0's signature only (refused)
_MSG_MANIFEST, _MSG_MANIFEST_BODY = 6, 7
_ENTRY_DOMAIN = b"blindmatch-mpc-v2/party-entry"
MODE_CLIENT, MODE_SERVER = 0, 1
_MAX_BOX = 64 * 1024


@dataclass(frozen=True)
class MpcQuery:
    mode: int
    eph_pub: bytes
    boxes: tuple[bytes, bytes, bytes]

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, _MSG_QUERY, [bytes([self.mode]), self.eph_pub, *self.boxes])

    @classmethod
    def from_bytes(cls, data: bytes) -> MpcQuery:
        mode, eph, b0, b1, b2 = decode_fields(data, PROTOCOL_ID, _MSG_QUERY, 5, max_field=_MAX_BOX)
        if len(mode) != 1 or mode[0] not in (MODE_CLIENT, MODE_SERVER):
            raise DecodeError("unknown learner mode")
        if len(eph) != 32:
            raise LengthError("ephemeral key must be 32 bytes")
        return cls(mode[0], eph, (b0, b1, b2))


@dataclass(frozen=True)
class MpcReply:
    boxes: tuple[bytes, bytes, bytes]

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, _MSG_REPLY, list(self.boxes))

    @classmethod
    def from_bytes(cls, data: bytes) -> MpcReply:
        b0, b1, b2 = decode_fields(data, PROTOCOL_ID, _MSG_REPLY, 3, max_field=_MAX_BOX)
        return cls((b0, b1, b2))


@dataclass(frozen=True)
class MpcAck:
    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, _MSG_ACK, [b"\x01"])

    @classmethod
    def from_bytes(cls, data: bytes) -> MpcAck:
        (flag,) = decode_fields(data, PROTOCOL_ID, _MSG_ACK, 1, max_field=1)
        if flag != b"\x01":
            raise DecodeError("malformed acknowledgement")
        return cls()


@dataclass(frozen=True)
class PartyInfo:
    signing_pub: bytes
    kex_pub: bytes
    address: str
    entry_sig: bytes = b""  # party i's own signature over entry_message(head, i, ...)


_HEAD = struct.Struct(">BHQ32sIB")


def manifest_head(
    algo_id: int, radius: int, set_size: int, set_digest: bytes, chunk: int, masks: int
) -> bytes:
    """What all three parties vouch for about the computation (each signs it in its entry)."""
    return _HEAD.pack(algo_id, radius, set_size, set_digest, chunk, masks)


def entry_message(head: bytes, index: int, signing_pub: bytes, kex_pub: bytes) -> bytes:
    """The bytes party ``index`` signs: its own keys under this head, domain-separated."""
    return _ENTRY_DOMAIN + head + bytes([index]) + signing_pub + kex_pub


def _verify(pub: bytes, sig: bytes, msg: bytes, what: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
    except (InvalidSignature, ValueError):
        raise SignatureError(f"{what} rejected") from None


@dataclass(frozen=True)
class MpcManifest:
    """What party 0 relays: the set, the circuit's parameters, and each party's self-signed entry."""

    algo_id: int
    radius: int
    set_size: int
    set_digest: bytes
    chunk: int
    masks: int
    parties: tuple[PartyInfo, PartyInfo, PartyInfo]
    signature: bytes = b""

    def head(self) -> bytes:
        return manifest_head(
            self.algo_id, self.radius, self.set_size, self.set_digest, self.chunk, self.masks
        )

    def entry_message(self, i: int) -> bytes:
        p = self.parties[i]
        return entry_message(self.head(), i, p.signing_pub, p.kex_pub)

    def body(self) -> bytes:
        fields = [self.head()]
        for p in self.parties:
            fields += [p.signing_pub, p.kex_pub, p.address.encode(), p.entry_sig]
        return encode_fields(PROTOCOL_ID, _MSG_MANIFEST_BODY, fields)

    def signed(self, key: Ed25519PrivateKey) -> MpcManifest:
        return MpcManifest(
            self.algo_id,
            self.radius,
            self.set_size,
            self.set_digest,
            self.chunk,
            self.masks,
            self.parties,
            key.sign(self.body()),
        )

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, _MSG_MANIFEST, [self.body(), self.signature])

    def digest(self) -> bytes:
        """SHA-256 of the whole signed manifest (deterministic: Ed25519 signatures are)."""
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> MpcManifest:
        if len(data) >= 3 and data[1] == PROTOCOL_ID and data[2] == _MSG_MANIFEST_V1:
            raise UnknownVersionError(
                "mpc manifest format 1 (party keys vouched for by party 0 alone) is refused; "
                "upgrade the parties"
            )
        body, sig = decode_fields(data, PROTOCOL_ID, _MSG_MANIFEST, 2, max_field=4096)
        f = decode_fields(body, PROTOCOL_ID, _MSG_MANIFEST_BODY, 13, max_field=1024)
        if len(f[0]) != _HEAD.size or len(sig) != 64:
            raise LengthError("malformed manifest")
        algo_id, radius, size, digest, chunk, masks = _HEAD.unpack(f[0])
        parties = []
        for i in range(3):
            spub, kpub, addr, esig = f[1 + 4 * i : 5 + 4 * i]
            if len(spub) != 32 or len(kpub) != 32:
                raise LengthError("manifest party keys must be 32 bytes")
            if len(esig) != 64:
                raise LengthError("manifest entry signatures must be 64 bytes")
            parties.append(PartyInfo(spub, kpub, addr.decode("utf-8", errors="replace"), esig))
        m = cls(algo_id, radius, size, digest, chunk, masks, (parties[0], parties[1], parties[2]), sig)
        if m.body() != body:
            raise DecodeError("non-canonical manifest")
        return m

    def verify(self) -> None:
        """Party 0's signature over the body, each party's over its own entry, distinct keys.

        This proves each entry was signed by the key it names; whether those are the
        right parties' keys is for the caller to check against pins.
        """
        _verify(self.parties[0].signing_pub, self.signature, self.body(), "manifest signature")
        for i, p in enumerate(self.parties):
            _verify(p.signing_pub, p.entry_sig, self.entry_message(i), f"party {i}'s entry signature")
        if len({p.signing_pub for p in self.parties}) != 3 or len({p.kex_pub for p in self.parties}) != 3:
            raise SignatureError("the manifest names one key for two parties")
