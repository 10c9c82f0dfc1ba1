from __future__ import annotations

import pytest
from blindmatch.protocol import LengthError, UnknownVersionError
from blindmatch.protocol.errors import DecodeError, WrongProtocolError
from blindmatch.protocol.wire import decode_fields, encode_fields
from hypothesis import given
from hypothesis import strategies as st

fields_st = st.lists(st.binary(max_size=64), min_size=0, max_size=6)


@given(fields_st, st.integers(1, 255), st.integers(0, 255))
def test_round_trip(fields: list[bytes], pid: int, mtype: int) -> None:
    assert decode_fields(encode_fields(pid, mtype, fields), pid, mtype, len(fields)) == fields


@given(fields_st, st.data())
def test_mutations_fail_closed(fields: list[bytes], data: st.DataObject) -> None:
    msg = encode_fields(2, 1, fields)
    cut = data.draw(st.integers(0, len(msg) - 1))
    with pytest.raises(DecodeError):
        decode_fields(msg[:cut], 2, 1, len(fields))
    with pytest.raises(LengthError):
        decode_fields(msg + data.draw(st.binary(min_size=1, max_size=8)), 2, 1, len(fields))
    # any single bit flip either fails typed or decodes to something different
    pos = data.draw(st.integers(0, len(msg) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(msg)
    bad[pos] ^= 1 << bit
    try:
        out = decode_fields(bytes(bad), 2, 1, len(fields))
    except DecodeError:
        return
    assert out != fields


def test_unknown_version_and_protocol() -> None:
    msg = encode_fields(2, 1, [b"x"])
    with pytest.raises(UnknownVersionError):
        decode_fields(b"\x02" + msg[1:], 2, 1, 1)
    with pytest.raises(WrongProtocolError):
        decode_fields(msg, 3, 1, 1)
    with pytest.raises(WrongProtocolError):
        decode_fields(msg, 2, 2, 1)
    with pytest.raises(LengthError):
        decode_fields(encode_fields(2, 1, [b"x" * 10]), 2, 1, 1, max_field=9)
    with pytest.raises(TypeError):
        decode_fields("text", 2, 1, 1)  # type: ignore[arg-type]


def test_golden_bytes_v1() -> None:
    """Wire version 1 encoding; changing it needs a new version byte (CONVENTIONS)."""
    assert encode_fields(1, 1, [b"\x01", b"\xab\xcd"]).hex() == "010101020000000101" + "00000002abcd"
