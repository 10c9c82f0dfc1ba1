"""Golomb-compressed set: round trips, false-positive rate, size, strict decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from blindmatch.protocol._gcs import (
    GCSFilter,
    GCSReader,
    build_gcs,
    fpr_to_m,
    golomb_parameter,
    map_to_range,
)
from blindmatch.protocol.errors import DecodeError, LengthError, ParameterError
from blindmatch.protocol.oprf._protocol import parse_filter
from blindmatch.protocol.oprf._store import filter_message
from hypothesis import given, settings
from hypothesis import strategies as st

u64 = st.integers(0, 2**64 - 1)


@given(st.lists(u64, min_size=1, max_size=50), st.integers(1, 2**63))
def test_map_to_range_is_exact(hs: list[int], universe: int) -> None:
    got = map_to_range(np.array(hs, dtype=np.uint64), universe)
    assert [int(x) for x in got] == [(h * universe) >> 64 for h in hs]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(u64, min_size=1, max_size=400, unique=True),
    st.integers(2, 48),
    st.sampled_from([1, 7, 64]),
    st.lists(u64, max_size=50),
)
def test_round_trip_members_always_found(
    values: list[int], log_inv: int, block: int, others: list[int]
) -> None:
    m_inv = 2**log_inv
    f = build_gcs(np.array(values, dtype=np.uint64), len(values) * m_inv)
    g = parse_filter(filter_message(f.fields()))
    assert g == f
    # both lookup paths: the decoded array and the sampled block index
    for reader in (GCSReader(g, block=block), GCSReader(g, block=block, max_decoded=0)):
        assert all(reader.contains(v) for v in values)
        # a value is "contained" exactly when its mapped position is one of the members'
        xs = {(v * f.universe) >> 64 for v in values}
        for o in others:
            assert reader.contains(o) == (((o * f.universe) >> 64) in xs)


def test_false_positive_rate_within_binomial_bound() -> None:
    rng = np.random.default_rng(2024)
    n, trials, fpr = 5000, 400_000, 2.0**-8
    members = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    f = build_gcs(members, n * fpr_to_m(fpr))
    reader = GCSReader(f)
    # vectorised check via the mapped positions (same rule the reader applies)
    xs = np.sort(map_to_range(members, f.universe))
    probe = map_to_range(rng.integers(0, 2**64, size=trials, dtype=np.uint64), f.universe)
    idx = np.clip(np.searchsorted(xs, probe), 0, xs.size - 1)
    hits = int((xs[idx] == probe).sum())
    mean, sd = trials * fpr, math.sqrt(trials * fpr * (1 - fpr))
    assert hits <= mean + 6 * sd
    assert hits >= mean - 6 * sd  # the filter really is approximate at this rate
    # and the reader agrees with the vectorised rule on a sample
    sample = rng.integers(0, 2**64, size=3000, dtype=np.uint64)
    sx = map_to_range(sample, f.universe)
    want = np.isin(sx, xs)
    assert [reader.contains(int(h)) for h in sample] == list(want)


@pytest.mark.parametrize("log_inv", [20, 32, 40])
def test_size_within_15_percent_of_bound(log_inv: int) -> None:
    rng = np.random.default_rng(log_inv)
    n = 20_000
    f = build_gcs(rng.integers(0, 2**64, size=n, dtype=np.uint64), n * 2**log_inv)
    bits = len(filter_message(f.fields())) * 8 / n
    assert log_inv < bits <= 1.15 * log_inv
    assert bits < log_inv + 1.5  # Golomb (not Rice) parameter: ~log2(1/fpr) + 1.47


def test_no_larger_than_openmined_psi_gcs() -> None:
    psi = pytest.importorskip("private_set_intersection.python")
    n, fpr = 10_000, 2.0**-40
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(fpr, 1, [str(i) for i in range(n)], psi.DataStructure.GCS)
    theirs = len(setup.SerializeToString())
    rng = np.random.default_rng(7)
    ours = len(
        filter_message(
            build_gcs(rng.integers(0, 2**64, size=n, dtype=np.uint64), n * fpr_to_m(fpr)).fields()
        )
    )
    assert ours <= theirs


def test_golomb_parameter_is_near_m_ln2() -> None:
    for m_inv in (2**8, 10**6, 2**40):
        m = golomb_parameter(1000 * m_inv, 1000)
        assert abs(m / (m_inv * math.log(2)) - 1) < 0.01


def test_parameter_limits() -> None:
    with pytest.raises(ParameterError):
        fpr_to_m(0.5)
    with pytest.raises(ParameterError):
        fpr_to_m(0.0)
    with pytest.raises(ParameterError):
        build_gcs(np.zeros(0, dtype=np.uint64), 100)
    with pytest.raises(ParameterError):
        build_gcs(np.arange(2**20, dtype=np.uint64), 2**20 * 2**50)


def _good() -> GCSFilter:
    rng = np.random.default_rng(3)
    return build_gcs(rng.integers(0, 2**64, size=300, dtype=np.uint64), 300 * 2**20)


def _flip_last_bit(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 1])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: [f[0], f[1][:-1], f[2], f[3]],  # unary truncated: too few codes
        lambda f: [f[0], f[1] + b"\x00", f[2], f[3]],  # unary trailing byte
        lambda f: [f[0], f[1] + b"\x80", f[2], f[3]],  # unary: one code too many
        lambda f: [f[0], f[1], f[2], f[3] + b"\x00"],  # extra stream too long
        lambda f: [f[0], f[1], f[2], f[3][:-1]],  # extra stream too short
        lambda f: [f[0], f[1], f[2], _flip_last_bit(f[3])],  # non-zero padding or value change
    ],
)
def test_malformed_streams_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    fields = _good().fields()
    bad = mutate(fields)
    try:
        reader = GCSReader(parse_filter(filter_message(bad)))
    except (DecodeError, LengthError):
        return
    # a flip that still decodes must describe a different (valid) set
    assert not all(reader.contains_x(int(x)) for x in _decoded(fields))


def _decoded(fields: list[bytes]) -> list[int]:
    r = GCSReader(GCSFilter.from_fields(fields))
    return [int(x) for x in r._decode_all()[0]]


def test_bad_parameters_rejected() -> None:
    fields = _good().fields()
    import struct

    u, n, m = struct.unpack(">QQQ", fields[0])
    for params in [
        (0, n, m),
        (u, 0, m),
        (u, u + 1, m),
        (u, n, 1),
        (u, n, u + 1),
        (2**64 - 1, n, m),
    ]:
        with pytest.raises((DecodeError, LengthError)):
            GCSFilter.from_fields([struct.pack(">QQQ", *params), *fields[1:]])
    with pytest.raises(LengthError):
        GCSFilter.from_fields([fields[0][:-1], *fields[1:]])
    with pytest.raises(LengthError):
        GCSFilter.from_fields([fields[0], fields[1], fields[2][:-1], fields[3]])


def test_values_outside_universe_rejected() -> None:
    # same streams, but a universe too small to hold the values they decode to
    f = _good()
    small = GCSFilter(f.m * 5, f.count, f.m, f.unary, f.fixed, f.extra)
    with pytest.raises(DecodeError, match="range"):
        GCSReader(GCSFilter.from_fields(small.fields()))
