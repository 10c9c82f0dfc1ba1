"""tPSI wire messages: the signed manifest, the table, vouchers and upload batches.

Every message is framed by ``wire.encode_fields`` (version byte, protocol id 3,
message type, length-prefixed fields) and decoded strictly: exact field
counts, exact lengths, canonical non-identity points. Sizes are fixed by the
manifest's parameters so that a real voucher, a synthetic voucher and a
non-matching voucher are byte-for-byte the same length.

Versions: manifest format 2 adds the signed key-rotation record (``prev_key``,
``rotation_sig``); upload message type 7 (signed by the account's client key)
replaces the unsigned type 5, which the server now refuses. Golden bytes of
both are in ``tests/test_tpsi_codec.py``.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import (
    BatchTooLargeError,
    DecodeError,
    InputError,
    LengthError,
    SignatureError,
    WrongProtocolError,
)
from ..hazmat import aead
from ..hazmat.ristretto import decode_element
from ..wire import decode_fields, encode_fields, split_prefixed

__all__ = [
    "DOMAIN",
    "PROTOCOL_ID",
    "Manifest",
    "TableMsg",
    "UploadBatch",
    "UploadReply",
    "Voucher",
    "account_bytes",
    "rotation_message",
]

PROTOCOL_ID = 3
DOMAIN = b"blindmatch-tpsi-v1"
MANIFEST_FORMAT = 2

MSG_MANIFEST = 1
MSG_MANIFEST_TBS = 2
MSG_TABLE = 3
MSG_VOUCHER = 4
MSG_UPLOAD_UNSIGNED = 5  # format before upload signatures; refused
MSG_UPLOAD_REPLY = 6
MSG_UPLOAD = 7
MSG_UPLOAD_TBS = 8

VID_BYTES = 16
PAIR_CT_BYTES = aead.OVERHEAD_ONCE + 32  # seal_once(rkey)
PAIR_BYTES = 32 + PAIR_CT_BYTES
MAX_PAIRS = 4
MAX_ACCOUNT_BYTES = 128
_SIG_DOMAIN = DOMAIN + b"|manifest|"
_ROTATE_DOMAIN = DOMAIN + b"|rotate|"
_UPLOAD_DOMAIN = DOMAIN + b"|upload|"
_DIGEST_DOMAIN = DOMAIN + b"|manifest-digest|"

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _u(st: struct.Struct, b: bytes, what: str) -> int:
    if len(b) != st.size:
        raise LengthError(f"{what}: expected {st.size} bytes")
    return int(st.unpack(b)[0])


def account_bytes(account: str) -> bytes:
    """Validate an account id: 1..128 bytes of UTF-8, no control characters."""
    if not isinstance(account, str):
        raise TypeError("account must be a str")
    raw = account.encode("utf-8")
    if not 1 <= len(raw) <= MAX_ACCOUNT_BYTES or any(ord(c) < 32 or ord(c) == 127 for c in account):
        raise InputError("account id must be 1-128 bytes of printable UTF-8")
    return raw


def _account_from(raw: bytes) -> str:
    try:
        acc = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("account id is not UTF-8") from None
    try:
        account_bytes(acc)
    except InputError as e:
        raise DecodeError(e.detail) from None
    return acc


@dataclass(frozen=True)
class Manifest:
    """What the server commits to, signed with its Ed25519 key.

    ``set_digest`` is the SHA-256 root digest of the hash set (publishable out
    of band); ``table_digest`` is SHA-256 of the table message bytes.
    """

    epoch: int
    algo_id: int
    set_size: int
    n_slots: int
    n_hash: int
    cuckoo_seed: bytes
    table_digest: bytes
    big_l: bytes
    threshold: int
    synthetic_ppm: int
    dhf_dim: int
    ad_max: int
    set_digest: bytes
    created: int
    public_key: bytes
    prev_key: bytes = b""
    rotation_sig: bytes = b""
    signature: bytes = b""

    def _fields(self) -> list[bytes]:
        return [
            _U8.pack(MANIFEST_FORMAT),
            _U32.pack(self.epoch),
            _U8.pack(self.algo_id),
            _U32.pack(self.set_size),
            _U32.pack(self.n_slots),
            _U8.pack(self.n_hash),
            self.cuckoo_seed,
            self.table_digest,
            self.big_l,
            _U16.pack(self.threshold),
            _U32.pack(self.synthetic_ppm),
            _U16.pack(self.dhf_dim),
            _U16.pack(self.ad_max),
            self.set_digest,
            _U64.pack(self.created),
            self.public_key,
            self.prev_key,
            self.rotation_sig,
        ]

    def tbs(self) -> bytes:
        """The bytes the signature covers (domain-separated)."""
        return _SIG_DOMAIN + encode_fields(PROTOCOL_ID, MSG_MANIFEST_TBS, self._fields())

    def signed(self, key: Ed25519PrivateKey) -> Manifest:
        sig = key.sign(self.tbs())
        return Manifest(**{**self.__dict__, "signature": sig})

    def verify(self, pinned_key: bytes | None = None) -> None:
        """Check the signature, and that the key is the pinned one if given."""
        if pinned_key is not None and pinned_key != self.public_key:
            raise SignatureError("manifest signed by an unexpected key")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(self.signature, self.tbs())
        except (InvalidSignature, ValueError):
            raise SignatureError("manifest signature rejected") from None

    def rotated_from(self, old_key: bytes) -> bool:
        """Does this manifest carry a valid rotation record signed by ``old_key``?"""
        if not hmac.compare_digest(self.prev_key, old_key) or len(self.rotation_sig) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(old_key).verify(
                self.rotation_sig, rotation_message(self.public_key)
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def digest(self) -> bytes:
        """SHA-256 of the whole signed manifest: print it, publish it, pin it (``manifest_digest``)."""
        h = hashes.Hash(hashes.SHA256())
        h.update(_DIGEST_DOMAIN + self.to_bytes())
        return h.finalize()

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, MSG_MANIFEST, [*self._fields(), self.signature])

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        f = decode_fields(data, PROTOCOL_ID, MSG_MANIFEST, 19, max_field=256)
        if _u(_U8, f[0], "format") != MANIFEST_FORMAT:
            raise DecodeError("unknown manifest format")
        for i, n in ((6, 16), (7, 32), (8, 32), (13, 32), (15, 32), (18, 64)):
            if len(f[i]) != n:
                raise LengthError(f"manifest field {i}: expected {n} bytes")
        if (len(f[16]), len(f[17])) not in ((0, 0), (32, 64)):
            raise LengthError("manifest rotation record: expected 0/0 or 32/64 bytes")
        m = cls(
            epoch=_u(_U32, f[1], "epoch"),
            algo_id=_u(_U8, f[2], "algo"),
            set_size=_u(_U32, f[3], "set size"),
            n_slots=_u(_U32, f[4], "slots"),
            n_hash=_u(_U8, f[5], "hash count"),
            cuckoo_seed=f[6],
            table_digest=f[7],
            big_l=decode_element(f[8]),
            threshold=_u(_U16, f[9], "threshold"),
            synthetic_ppm=_u(_U32, f[10], "synthetic rate"),
            dhf_dim=_u(_U16, f[11], "dhf dim"),
            ad_max=_u(_U16, f[12], "ad max"),
            set_digest=f[13],
            created=_u(_U64, f[14], "created"),
            public_key=f[15],
            prev_key=f[16],
            rotation_sig=f[17],
            signature=f[18],
        )
        if not (1 <= m.n_hash <= MAX_PAIRS and m.n_slots >= 1 and m.threshold >= 2):
            raise DecodeError("manifest parameters out of range")
        if m.synthetic_ppm > 1_000_000 or m.dhf_dim < 1:
            raise DecodeError("manifest parameters out of range")
        return m

    # Sizes implied by the parameters (identical for real, synthetic, non-matching).
    @property
    def ad_ct_bytes(self) -> int:
        return aead.OVERHEAD + 2 + self.ad_max

    @property
    def inner_bytes(self) -> int:
        return 32 + 32 + 4 * self.dhf_dim + self.ad_ct_bytes

    @property
    def rct_bytes(self) -> int:
        return aead.OVERHEAD_ONCE + self.inner_bytes

    @property
    def voucher_bytes(self) -> int:
        return 4 + 4 * 4 + VID_BYTES + 4 + self.n_hash * PAIR_BYTES + self.rct_bytes


def rotation_message(new_key: bytes) -> bytes:
    """What the outgoing signing key signs to hand over to ``new_key``."""
    return _ROTATE_DOMAIN + new_key


@dataclass(frozen=True)
class TableMsg:
    """The published cuckoo table: ``n_slots`` ristretto255 points, 32 bytes each."""

    epoch: int
    slots: bytes

    def to_bytes(self) -> bytes:
        return encode_fields(PROTOCOL_ID, MSG_TABLE, [_U32.pack(self.epoch), self.slots])

    @classmethod
    def from_bytes(cls, data: bytes) -> TableMsg:
        f = decode_fields(data, PROTOCOL_ID, MSG_TABLE, 2, max_field=(1 << 32) - 1)
        if len(f[1]) % 32:
            raise LengthError("table length is not a multiple of 32")
        return cls(_u(_U32, f[0], "epoch"), f[1])

    def slot(self, i: int) -> bytes:
        """Slot ``i`` as a validated element (checked on use, not all at load)."""
        return decode_element(self.slots[32 * i : 32 * i + 32])

    @property
    def n_slots(self) -> int:
        return len(self.slots) // 32


@dataclass(frozen=True)
class Voucher:
    """One image's voucher: ``n_hash`` (Q, ct) pairs in random order and the inner ciphertext."""

    vid: bytes
    epoch: int
    pairs: tuple[tuple[bytes, bytes], ...]
    rct: bytes

    def to_bytes(self) -> bytes:
        blob = b"".join(q + ct for q, ct in self.pairs)
        return encode_fields(
            PROTOCOL_ID, MSG_VOUCHER, [self.vid, _U32.pack(self.epoch), blob, self.rct]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Voucher:
        vid, ep, blob, rct = decode_fields(data, PROTOCOL_ID, MSG_VOUCHER, 4, max_field=1 << 20)
        if len(vid) != VID_BYTES:
            raise LengthError("voucher id must be 16 bytes")
        if not blob or len(blob) % PAIR_BYTES or len(blob) // PAIR_BYTES > MAX_PAIRS:
            raise LengthError("malformed voucher pairs")
        pairs = tuple(
            (decode_element(blob[i : i + 32]), blob[i + 32 : i + PAIR_BYTES])
            for i in range(0, len(blob), PAIR_BYTES)
        )
        if len(rct) < aead.OVERHEAD_ONCE:
            raise LengthError("inner ciphertext too short")
        return cls(vid, _u(_U32, ep, "epoch"), pairs, rct)


@dataclass(frozen=True)
class UploadBatch:
    """``POST vouchers`` body: the account id, vouchers, and the account's client signature.

    The signature (Ed25519, by the key the account is bound to on the server)
    covers the account id and every voucher byte, so a third party cannot add
    vouchers to someone else's account, and a relay cannot move a batch to
    another account.
    """

    account: str
    vouchers: tuple[bytes, ...]
    client_key: bytes = b""
    signature: bytes = b""

    def _tbs(self) -> bytes:
        return _UPLOAD_DOMAIN + encode_fields(PROTOCOL_ID, MSG_UPLOAD_TBS, self._body())

    def _body(self) -> list[bytes]:
        blob = b"".join(_U32.pack(len(v)) + v for v in self.vouchers)
        return [account_bytes(self.account), _U32.pack(len(self.vouchers)), blob]

    def signed(self, key: Ed25519PrivateKey) -> UploadBatch:
        pub = key.public_key().public_bytes_raw()
        unsigned = UploadBatch(self.account, self.vouchers, pub)
        return UploadBatch(self.account, self.vouchers, pub, key.sign(unsigned._tbs()))

    def to_bytes(self) -> bytes:
        if len(self.client_key) != 32 or len(self.signature) != 64:
            raise InputError("upload batches must be signed (UploadBatch.signed)")
        return encode_fields(
            PROTOCOL_ID, MSG_UPLOAD, [*self._body(), self.client_key, self.signature]
        )

    @staticmethod
    def count(data: bytes) -> int:
        """Number of vouchers claimed by a body (for rate-limit cost); 1 if unparseable."""
        try:
            f = decode_fields(data, PROTOCOL_ID, MSG_UPLOAD, 5, max_field=1 << 26)
            return max(1, _u(_U32, f[1], "count"))
        except DecodeError:
            return 1

    @classmethod
    def from_bytes(cls, data: bytes, max_batch: int) -> UploadBatch:
        """Parse and verify the signature; ``vouchers`` holds the raw voucher bytes."""
        if len(data) >= 3 and data[1] == PROTOCOL_ID and data[2] == MSG_UPLOAD_UNSIGNED:
            raise WrongProtocolError("unsigned upload batches are refused; sign with the client key")
        acc_raw, cnt, blob, pub, sig = decode_fields(
            data, PROTOCOL_ID, MSG_UPLOAD, 5, max_field=1 << 26
        )
        account = _account_from(acc_raw)
        n = _u(_U32, cnt, "count")
        if n > max_batch:
            raise BatchTooLargeError(f"{n} vouchers in one batch > {max_batch}")
        if n == 0:
            raise LengthError("empty voucher batch")
        if len(pub) != 32 or len(sig) != 64:
            raise LengthError("upload key or signature has the wrong length")
        batch = cls(account, tuple(split_prefixed(blob, n, "voucher")), pub, sig)
        try:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, batch._tbs())
        except (InvalidSignature, ValueError):
            raise SignatureError("upload signature rejected") from None
        return batch

    def parsed(self) -> list[Voucher]:
        return [Voucher.from_bytes(v) for v in self.vouchers]


@dataclass(frozen=True)
class UploadReply:
    """Acknowledgement: ids durably stored (new + already present). Carries no match bit."""

    accepted: int
    duplicates: int
    acked: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return encode_fields(
            PROTOCOL_ID,
            MSG_UPLOAD_REPLY,
            [_U32.pack(self.accepted), _U32.pack(self.duplicates), b"".join(self.acked)],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> UploadReply:
        a, d, ids = decode_fields(data, PROTOCOL_ID, MSG_UPLOAD_REPLY, 3, max_field=1 << 24)
        if len(ids) % VID_BYTES:
            raise LengthError("ack list length")
        acked = tuple(ids[i : i + VID_BYTES] for i in range(0, len(ids), VID_BYTES))
        return cls(_u(_U32, a, "accepted"), _u(_U32, d, "duplicates"), acked)
