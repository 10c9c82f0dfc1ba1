"""Binary framing shared by every protocol message.

Layout (CONVENTIONS "Wire formats", modelled on Fernet's version byte and RFC 9497
framing)::

    byte 0      format version (currently 1)
    byte 1      protocol id    (plain=1, oprf=2, tpsi=3, he=4)
    byte 2      message type   (per protocol)
    byte 3      field count
    then per field: u32 big-endian length || bytes

Decoding is strict: unknown version, wrong protocol or type, wrong field count,
a field longer than its cap, truncation and trailing bytes all raise typed
``DecodeError`` subclasses, so a malformed message can never half-parse.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .errors import LengthError, UnknownVersionError, WrongProtocolError

__all__ = ["WIRE_VERSION", "decode_fields", "encode_fields", "split_prefixed"]

WIRE_VERSION = 1
_HEADER = struct.Struct(">BBBB")
_LEN = struct.Struct(">I")


def encode_fields(protocol_id: int, msg_type: int, fields: Sequence[bytes]) -> bytes:
    """Frame ``fields`` under the current version."""
    if len(fields) > 255:
        raise LengthError("too many fields")
    out = bytearray(_HEADER.pack(WIRE_VERSION, protocol_id, msg_type, len(fields)))
    for f in fields:
        if not isinstance(f, bytes | bytearray | memoryview):
            raise TypeError("wire fields must be bytes")
        out += _LEN.pack(len(f))
        out += f
    return bytes(out)


def decode_fields(
    data: bytes,
    protocol_id: int,
    msg_type: int,
    n_fields: int,
    max_field: int = 1 << 26,
) -> list[bytes]:
    """Parse a framed message, failing closed on anything unexpected."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("message must be bytes")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise LengthError("message shorter than its header")
    version, pid, mtype, count = _HEADER.unpack_from(data, 0)
    if version != WIRE_VERSION:
        raise UnknownVersionError(f"unknown wire version {version}")
    if pid != protocol_id:
        raise WrongProtocolError(f"protocol id {pid}, expected {protocol_id}")
    if mtype != msg_type:
        raise WrongProtocolError(f"message type {mtype}, expected {msg_type}")
    if count != n_fields:
        raise LengthError(f"{count} fields, expected {n_fields}")
    return split_prefixed(data, count, "field", start=_HEADER.size, max_item=max_field)


def split_prefixed(
    data: bytes, count: int, what: str, start: int = 0, max_item: int | None = None
) -> list[bytes]:
    """Exactly ``count`` items of ``u32 length || bytes`` from ``start`` to the end of ``data``.

    Truncation, an item over ``max_item`` and trailing bytes raise ``LengthError``
    (naming ``what``), so a list never half-parses.
    """
    pos, items = start, []
    for _ in range(count):
        if pos + _LEN.size > len(data):
            raise LengthError(f"truncated {what} length")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if max_item is not None and n > max_item:
            raise LengthError(f"{what} exceeds its size cap")
        if pos + n > len(data):
            raise LengthError(f"truncated {what}")
        items.append(data[pos : pos + n])
        pos += n
    if pos != len(data):
        raise LengthError(f"trailing bytes after the last {what}")
    return items
