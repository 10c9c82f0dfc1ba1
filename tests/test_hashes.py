from __future__ import annotations

import numpy as np
import pytest
from blindmatch.protocol import ALGOS, BadHashError, EmptySetError, HammingIndex, HashSet, get_algo
from blindmatch.protocol.hamming import popcount64
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize("name", sorted(ALGOS))
@given(data=st.data())
def test_hex_round_trip(name: str, data: st.DataObject) -> None:
    a = get_algo(name)
    raw = data.draw(st.binary(min_size=a.nbytes, max_size=a.nbytes))
    v = a.from_bytes(raw)
    assert a.from_hex(v.hex) == v
    assert a.from_hex(v.hex.upper()) == v
    assert a.from_bits(v.bits()) == v


def test_bad_hex() -> None:
    a = get_algo("pdq")
    with pytest.raises(BadHashError):
        a.from_hex("ab")
    with pytest.raises(BadHashError):
        a.from_hex("zz" * 32)
    with pytest.raises(BadHashError):
        get_algo("md5")
    with pytest.raises(EmptySetError):
        HashSet.from_values(a, [])
    with pytest.raises(BadHashError):
        HashSet.from_values(a, [get_algo("phash").from_bytes(bytes(8))])


def test_thresholds_documented() -> None:
    assert get_algo("pdq").default_threshold == 31
    assert get_algo("sha256").default_threshold == 0
    assert get_algo("phash").default_threshold == get_algo("dhash").default_threshold == 10


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_popcount(xs: list[int]) -> None:
    arr = np.array(xs, dtype=np.uint64)
    assert popcount64(arr).tolist() == [bin(x).count("1") for x in xs]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32 - 1), st.integers(0, 256))
def test_index_matches_brute_force(n: int, seed: int, radius: int) -> None:
    a = get_algo("pdq")
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, 256, size=n * a.nbytes, dtype=np.uint8).tobytes()
    hs = HashSet.from_raw(a, blob)
    idx = HammingIndex(hs, chunk_rows=17)  # small chunks exercise the chunk loop
    q = a.from_bytes(rng.integers(0, 256, size=a.nbytes, dtype=np.uint8).tobytes())
    brute = [q.distance(v) for v in hs.values()]
    assert idx.distances(q).tolist() == brute
    assert idx.within(q, radius).tolist() == [i for i, d in enumerate(brute) if d <= radius]
    assert idx.nearest(q)[1] == min(brute)


def test_flip_changes_exactly_those_bits() -> None:
    a = get_algo("pdq")
    v = a.from_bytes(bytes(32))
    w = v.flip([0, 7, 255])
    assert v.distance(w) == 3
    assert w.bits()[[0, 7, 255]].tolist() == [1, 1, 1]
