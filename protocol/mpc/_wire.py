"""Client ↔ party 0 messages of ``mpc``, framed by ``protocol/wire.py`` (version byte first).

::

    MpcQuery    mode (1) || eph X25519 pub (32) || box_0 || box_1 || box_2
    MpcReply    box_0 || box_1 || box_2           (client-learns: each party's output component)
    MpcAck      accepted (1)                      (server-learns: the client learns nothing)
    MpcManifest body || Ed25519 signature by party 0
      body =    algo id, radius (u16), set size (u64), set digest (32), chunk (u32),
                masks (1), then per party: Ed25519 pub (32), X25519 pub (32), peer address

The mode byte: bit 0 is the learner (0 the client, 1 party 0), bit 1 the output
(0 "any": masked OR, 1 "count": the number of entries within r). Bytes 0 and 1 are
the encodings from before count mode existed; any value above 3 is refused with
``UnknownModeError`` by party 0 and, for the copy in the START frame, by parties 1
and 2. The byte is also in every box's associated data, so party 0 cannot change it
for the others.

Box i is sealed (key-committing AES-GCM, ``hazmat.aead.seal_once``) under a key
from X25519(eph, party i's static key), so party 0 relays boxes 1 and 2 without
reading them. Box plaintexts have fixed sizes (2 components × bits × 2 bytes up,
masks × 2 bytes down, or one element in count mode), so sizes reveal nothing about
the hash, the verdict or the count.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import DecodeError, LengthError, SignatureError, UnknownModeError
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
    "QueryMode",
]

PROTOCOL_ID = 5
_MSG_QUERY, _MSG_REPLY, _MSG_ACK, _MSG_MANIFEST, _MSG_MANIFEST_BODY = 1, 2, 3, 4, 5
MODE_CLIENT, MODE_SERVER = 0, 1
_MODE_COUNT = 2
_MAX_BOX = 64 * 1024


@dataclass(frozen=True)
class QueryMode:
    """Who learns (the client or party 0) and what (any match, or the number of matches)."""

    server_learns: bool = False
    count: bool = False

    def to_byte(self) -> int:
        return (MODE_SERVER if self.server_learns else MODE_CLIENT) | (_MODE_COUNT if self.count else 0)

    @classmethod
    def from_byte(cls, mode: int) -> QueryMode:
        if not 0 <= mode <= (MODE_SERVER | _MODE_COUNT):
            raise UnknownModeError(f"unknown mpc query mode {mode}")
        return cls(bool(mode & MODE_SERVER), bool(mode & _MODE_COUNT))


@dataclass(frozen=True)
class MpcQuery:
    mode: int  # QueryMode.to_byte()
    eph_pub: bytes
    boxes: tuple[bytes, bytes, bytes]

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, _MSG_QUERY, [bytes([self.mode]), self.eph_pub, *self.boxes])

    @classmethod
    def from_bytes(cls, data: bytes) -> MpcQuery:
        mode, eph, b0, b1, b2 = decode_fields(data, PROTOCOL_ID, _MSG_QUERY, 5, max_field=_MAX_BOX)
        if len(mode) != 1:
            raise LengthError("mode must be 1 byte")
        QueryMode.from_byte(mode[0])
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


_HEAD = struct.Struct(">BHQ32sIB")


@dataclass(frozen=True)
class MpcManifest:
    """What party 0 vouches for: the set, the circuit's parameters and the three parties' keys."""

    algo_id: int
    radius: int
    set_size: int
    set_digest: bytes
    chunk: int
    masks: int
    parties: tuple[PartyInfo, PartyInfo, PartyInfo]
    signature: bytes = b""

    def body(self) -> bytes:
        head = _HEAD.pack(self.algo_id, self.radius, self.set_size, self.set_digest, self.chunk, self.masks)
        fields = [head]
        for p in self.parties:
            fields += [p.signing_pub, p.kex_pub, p.address.encode()]
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

    @classmethod
    def from_bytes(cls, data: bytes) -> MpcManifest:
        body, sig = decode_fields(data, PROTOCOL_ID, _MSG_MANIFEST, 2, max_field=4096)
        f = decode_fields(body, PROTOCOL_ID, _MSG_MANIFEST_BODY, 10, max_field=1024)
        if len(f[0]) != _HEAD.size or len(sig) != 64:
            raise LengthError("malformed manifest")
        algo_id, radius, size, digest, chunk, masks = _HEAD.unpack(f[0])
        parties = []
        for i in range(3):
            spub, kpub, addr = f[1 + 3 * i : 4 + 3 * i]
            if len(spub) != 32 or len(kpub) != 32:
                raise LengthError("manifest party keys must be 32 bytes")
            parties.append(PartyInfo(spub, kpub, addr.decode("utf-8", errors="replace")))
        m = cls(algo_id, radius, size, digest, chunk, masks, (parties[0], parties[1], parties[2]), sig)
        if m.body() != body:
            raise DecodeError("non-canonical manifest")
        return m

    def verify(self) -> None:
        """The signature is party 0's, over this exact body (pinning the key is the caller's job)."""
        try:
            Ed25519PublicKey.from_public_bytes(self.parties[0].signing_pub).verify(
                self.signature, self.body()
            )
        except (InvalidSignature, ValueError):
            raise SignatureError("manifest signature rejected") from None
