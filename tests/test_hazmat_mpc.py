"""The hazmat wrappers mpc builds on: PRG to field elements, X25519 + HKDF, channel frames."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from blindmatch.protocol.errors import CryptoError, LengthError
from blindmatch.protocol.hazmat.channel import FrameCipher
from blindmatch.protocol.hazmat.kex import KexKey, hkdf_sha256
from blindmatch.protocol.hazmat.prg import mersenne_elements


def test_prg_is_deterministic_per_key_and_label_and_never_yields_p() -> None:
    key = secrets.token_bytes(16)
    a = mersenne_elements(key, 1, 50_000, 13)
    assert np.array_equal(a, mersenne_elements(key, 1, 50_000, 13))
    assert not np.array_equal(a, mersenne_elements(key, 2, 50_000, 13))
    assert int(a.max()) < 8191 and a.dtype == np.uint16
    small = mersenne_elements(key, 0, 20_000, 2)  # p = 3: the rejected value 3 is frequent here
    assert set(np.unique(small).tolist()) == {0, 1, 2}
    with pytest.raises(LengthError):
        mersenne_elements(b"short", 0, 4, 13)


def test_x25519_agreement_and_bad_public_keys() -> None:
    a, b = KexKey.generate(), KexKey.generate()
    assert a.exchange(b.public_bytes) == b.exchange(a.public_bytes)
    assert KexKey.from_private_bytes(a.private_bytes()).public_bytes == a.public_bytes
    with pytest.raises(CryptoError):
        a.exchange(bytes(32))  # low-order point: all-zero shared secret
    with pytest.raises(CryptoError):
        a.exchange(b"\x01" * 31)
    assert hkdf_sha256(b"s" * 32, 16, b"x") != hkdf_sha256(b"s" * 32, 16, b"y")


def test_frames_open_only_in_order_and_unaltered() -> None:
    key = secrets.token_bytes(32)
    tx, rx = FrameCipher(key), FrameCipher(key)
    f0, f1 = tx.seal(b"zero"), tx.seal(b"one")
    with pytest.raises(CryptoError):
        rx.open(f1)  # reordered: frame 1 where frame 0 is due
    rx2 = FrameCipher(key)
    assert rx2.open(f0) == b"zero"
    with pytest.raises(CryptoError):
        rx2.open(f0)  # replayed
    rx3 = FrameCipher(key)
    with pytest.raises(CryptoError):
        rx3.open(f0[:-1] + bytes([f0[-1] ^ 1]))  # altered
    with pytest.raises(LengthError):
        FrameCipher(b"k" * 16)
