"""tPSI primitives: committing AEAD, Shamir over GF(2^255-19), the DHF, cuckoo hashing."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from blindmatch.protocol import CryptoError, InputError, ParameterError
from blindmatch.protocol.hazmat import aead, dhf, shamir
from blindmatch.protocol.tpsi import _cuckoo as cuckoo
from hypothesis import given, settings
from hypothesis import strategies as st

# --- AEAD --------------------------------------------------------------------


@given(st.binary(max_size=300), st.binary(max_size=40))
def test_aead_round_trip(pt: bytes, aad: bytes) -> None:
    k = secrets.token_bytes(32)
    assert aead.open_(k, aead.seal(k, pt, aad, b"l"), aad, b"l") == pt
    assert aead.open_once(k, aead.seal_once(k, pt, aad, b"l"), aad, b"l") == pt
    assert len(aead.seal(k, pt, aad, b"l")) == len(pt) + aead.OVERHEAD
    assert len(aead.seal_once(k, pt, aad, b"l")) == len(pt) + aead.OVERHEAD_ONCE


def test_aead_random_key_robust_and_committing() -> None:
    """A ciphertext opens under its own key only: wrong key, label, AAD or any bit flip fail."""
    for _ in range(200):
        k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
        ct = aead.seal_once(k1, b"rkey" * 8, b"aad", b"outer")
        with pytest.raises(CryptoError):
            aead.open_once(k2, ct, b"aad", b"outer")
    k = secrets.token_bytes(32)
    ct = aead.seal(k, b"hello", b"aad", b"ad")
    for bad in (
        lambda: aead.open_(k, ct, b"aaX", b"ad"),
        lambda: aead.open_(k, ct, b"aad", b"other-label"),
        lambda: aead.open_(k, ct[:-1], b"aad", b"ad"),
        lambda: aead.open_(k, ct[: aead.OVERHEAD - 1], b"aad", b"ad"),
        lambda: aead.open_once(k, b"", b"aad", b"ad"),
    ):
        with pytest.raises(CryptoError):
            bad()
    for i in range(len(ct)):
        flipped = bytearray(ct)
        flipped[i] ^= 0x01
        with pytest.raises(CryptoError):
            aead.open_(k, bytes(flipped), b"aad", b"ad")


def test_aead_commitment_is_per_message() -> None:
    """Reusable-key ciphertexts must not share a visible commitment (else they are linkable)."""
    k = secrets.token_bytes(32)
    a, b = aead.seal(k, b"x", b"", b"ad"), aead.seal(k, b"x", b"", b"ad")
    commit = slice(aead.SALT_BYTES, aead.SALT_BYTES + aead.COMMIT_BYTES)
    assert a[commit] != b[commit] and a != b


# --- Shamir ------------------------------------------------------------------


@settings(max_examples=40)
@given(st.integers(2, 40), st.data())
def test_shamir_reconstructs_from_any_t(t: int, data: st.DataObject) -> None:
    coeffs = [shamir.random_element() for _ in range(t)]
    xs = data.draw(
        st.lists(st.integers(1, shamir.PRIME - 1), min_size=t + 3, max_size=t + 3, unique=True)
    )
    pts = [(x, shamir.share(coeffs, x)) for x in xs]
    sub = data.draw(st.permutations(pts))[:t]
    assert shamir.interpolate_at(sub, 0) == coeffs[0]
    assert shamir.interpolate(sub) == coeffs


def test_shamir_t_minus_1_shares_fit_any_secret() -> None:
    """t-1 shares are consistent with every secret: the property that hides real shares."""
    t = 5
    coeffs = [shamir.random_element() for _ in range(t)]
    pts = [(x, shamir.share(coeffs, x)) for x in range(1, t)]
    for fake in (0, 1, shamir.PRIME - 1, shamir.random_element()):
        poly = shamir.interpolate([(0, fake), *pts])
        assert poly[0] == fake and all(shamir.eval_poly(poly, x) == y for x, y in pts)


def test_shamir_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        shamir.share([1, 2], 0)
    with pytest.raises(InputError):
        shamir.interpolate([(1, 2), (1, 3)])
    with pytest.raises(ValueError):
        shamir.decode_element(shamir.PRIME.to_bytes(32, "little"))
    with pytest.raises(ValueError):
        shamir.decode_element(b"\x00" * 31)


# --- DHF ---------------------------------------------------------------------


def _instance(t: int, k: int, r: int, s: int) -> tuple[np.ndarray, set[int]]:
    coeffs = np.array(
        [[secrets.randbelow(dhf.Q) for _ in range(t - 1)] for _ in range(k)], dtype=np.int64
    )
    pts, vecs, real = [], [], set()
    order = list(range(r + s))
    secrets.SystemRandom().shuffle(order)
    for pos, i in enumerate(order):
        u = dhf.detection_point(secrets.token_bytes(32))
        pts.append(u)
        if i < r:
            vecs.append(dhf.evaluate(coeffs, u))
            real.add(pos)
        else:
            vecs.append(np.array([secrets.randbelow(dhf.Q) for _ in range(k)], dtype=np.int64))
    return dhf.rows(pts, np.stack(vecs), t), real


@pytest.mark.parametrize(
    "t,k,r,s", [(5, 8, 5, 8), (5, 8, 9, 3), (30, 64, 30, 64), (30, 128, 45, 100), (2, 1, 2, 1)]
)
def test_dhf_finds_exactly_the_real_rows(t: int, k: int, r: int, s: int) -> None:
    m, real = _instance(t, k, r, s)
    assert set(dhf.kernel_support(m)) == real


@pytest.mark.parametrize("t,k,s", [(5, 8, 8), (30, 64, 64), (30, 128, 20)])
def test_dhf_below_threshold_finds_nothing(t: int, k: int, s: int) -> None:
    m, _ = _instance(t, k, t - 1, s)
    assert dhf.kernel_support(m) == []


def test_dhf_evaluate_matches_horner() -> None:
    coeffs = np.array([[3, 5, 7], [1, 0, dhf.Q - 1]], dtype=np.int64)
    u = 123456789
    want = [(3 + 5 * u + 7 * u * u) % dhf.Q, (1 + (dhf.Q - 1) * u * u) % dhf.Q]
    assert dhf.evaluate(coeffs, u).tolist() == want


# --- cuckoo ------------------------------------------------------------------


@pytest.mark.parametrize("d,eps", [(2, 1.2), (3, 0.3), (4, 0.1)])
def test_cuckoo_assignment_is_valid(d: int, eps: float) -> None:
    items = [secrets.token_bytes(33) for _ in range(2000)]
    n_slots = cuckoo.table_slots(len(items), eps, d)
    seed, table, attempts = cuckoo.build_with_reseed(items, n_slots, d)
    assert attempts >= 1
    placed = table[table >= 0]
    assert sorted(placed.tolist()) == list(range(len(items)))
    for slot, idx in enumerate(table.tolist()):
        if idx >= 0:
            assert slot in cuckoo.positions(seed, n_slots, d, items[idx])


def test_cuckoo_failure_triggers_reseed_and_limits() -> None:
    items = [secrets.token_bytes(8) for _ in range(8)]
    with pytest.raises(cuckoo.CuckooFailure):  # 8 items cannot fit in 4 slots
        cuckoo.build(items, 4, 2, b"s" * 16, max_kicks=50)
    with pytest.raises(ParameterError):
        cuckoo.table_slots(1000, 0.5, 2)  # load 0.66 > 0.48 for d = 2
    with pytest.raises(ParameterError):
        cuckoo.table_slots(10, 0.3, 7)
    with pytest.raises(ParameterError):
        cuckoo.build_with_reseed([b"a", b"a"], 10, 3)
