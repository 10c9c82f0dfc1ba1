"""Golomb-compressed set (GCS) of 64-bit PRF outputs, vectorised with numpy.

Why GCS and not a binary fuse / xor filter: at the default false-positive rate
2^-40 a GCS costs about log2(1/fpr) + 1.47 bits per element (41.5 bits), while
a 4-wise binary fuse filter needs about 1.075·log2(1/fpr) (43 bits) and a 3-wise
one 1.125·log2(1/fpr) (45 bits) (Graf & Lemire 2022); the GCS is within 4% of the log2(1/fpr) floor.
Fuse filters win on lookup time, which does not matter here: a query does at
most a few hundred lookups after a network round trip.

Construction (after Golomb 1966 and Putze–Sanders–Singler, as used in BIP 158):
each 64-bit value ``h`` is mapped to ``x = ⌊h·U / 2^64⌋`` in ``[0, U)`` with
``U = n·M`` and ``M = ⌈1/fpr⌉``; a non-member (a fresh PRF output) collides with
one of at most ``n`` distinct ``x`` with probability ≤ n/U = 1/M ≤ fpr. The
sorted distinct ``x`` are delta-coded with a *Golomb* code of parameter ``m``
(the Gallager–Van Voorhis optimum ≈ M·ln 2, not a power of two), which saves
about 0.07 bit per element over a Rice code (``m = 2^k``), whose size
openmined-psi's GCS matches.

Layout (three streams, so that both encoding and decoding vectorise)::

    unary   quotient q_i = d_i // m as q_i zero bits then a one bit
    fixed   the first c-1 bits of each truncated-binary remainder code, c = ⌈log2 m⌉
    extra   the c-th bit, only for remainders that take the long (c-bit) code

Truncated binary: r < t = 2^c − m is written in c−1 bits; otherwise r + t in c
bits. Its first c−1 bits, read as v, satisfy v < t exactly for short codes, so
the fixed stream has a constant width and the extra stream is indexed by a
prefix count of ``v ≥ t``. The stream is the same size as interleaved codes.

Lookup: the reader decodes everything once in numpy (validating the encoding
strictly). Up to ``max_decoded`` elements (default 2^22: 32 MB of client
memory) it keeps the decoded sorted array and a lookup is one binary search.
Above that it keeps only a sampled index every ``block`` elements (first value,
preceding value, unary and extra bit offsets); a lookup binary-searches the
index and decodes one block of at most ``block`` elements.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import DecodeError, LengthError, ParameterError

__all__ = ["GCSFilter", "GCSReader", "build_gcs", "fpr_to_m", "golomb_parameter", "map_to_range"]

U64 = npt.NDArray[np.uint64]
_PARAMS = struct.Struct(">QQQ")  # universe U, distinct count n, Golomb parameter m
_CHUNK = 1 << 16  # rows per numpy chunk: bounds temporary memory to a few MB
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def fpr_to_m(fpr: float) -> int:
    """``M = ⌈1/fpr⌉`` (tolerating float rounding of exact reciprocals)."""
    if not (0.0 < fpr <= 0.25):
        raise ParameterError("false-positive rate must be in (0, 1/4]")
    return math.ceil(1.0 / fpr - 1e-6)


def golomb_parameter(universe: int, n: int) -> int:
    """Optimal Golomb parameter for geometric gaps of mean U/n (Gallager–Van Voorhis)."""
    p = n / universe
    return max(2, math.ceil(math.log(2.0 - p) / -math.log1p(-p)))


def map_to_range(h: U64, universe: int) -> U64:
    """``⌊h·U / 2^64⌋`` for each uint64 ``h`` (Lemire's fast range), in 32-bit limbs."""
    h = np.asarray(h, dtype=np.uint64)
    if not (0 < universe < 1 << 64):
        raise ParameterError("universe must fit in 64 bits")
    a, b = h >> _S32, h & _MASK32
    c, d = np.uint64(universe >> 32), np.uint64(universe & 0xFFFFFFFF)
    bd, ad, bc = b * d, a * d, b * c
    mid = (bd >> _S32) + (ad & _MASK32) + (bc & _MASK32)
    out: U64 = a * c + (ad >> _S32) + (bc >> _S32) + (mid >> _S32)
    return out


def _pack_fixed(v: U64, width: int) -> bytes:
    """Concatenate the low ``width`` bits of each value, MSB first."""
    if width == 0:
        return b""
    out = []
    for s in range(0, len(v), _CHUNK):
        chunk = np.ascontiguousarray(v[s : s + _CHUNK].astype(">u8")).view(np.uint8)
        bits = np.unpackbits(chunk.reshape(-1, 8), axis=1)[:, 64 - width :]
        out.append(bits.reshape(-1))
    allbits = np.concatenate(out) if out else np.zeros(0, np.uint8)
    return np.packbits(allbits).tobytes()


def _unpack_fixed(data: bytes, n: int, width: int, start: int = 0) -> U64:
    """Inverse of ``_pack_fixed`` for ``n`` values starting at value index ``start``."""
    if width == 0 or n == 0:
        return np.zeros(n, dtype=np.uint64)
    bit0 = start * width
    nbytes = (bit0 + n * width + 7) // 8 - bit0 // 8
    buf = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=bit0 // 8)
    out = np.empty(n, dtype=np.uint64)
    for s in range(0, n, _CHUNK):
        cnt = min(_CHUNK, n - s)
        lo = bit0 % 8 + s * width
        b0 = lo // 8
        bits = np.unpackbits(buf[b0 : (lo + cnt * width + 7) // 8])[lo % 8 : lo % 8 + cnt * width]
        padded = np.zeros((cnt, 64), dtype=np.uint8)
        padded[:, 64 - width :] = bits.reshape(cnt, width)
        out[s : s + cnt] = np.packbits(padded, axis=1).view(">u8").reshape(-1)
    return out


@dataclass(frozen=True)
class GCSFilter:
    """An encoded filter: parameters plus the three bit streams."""

    universe: int
    count: int
    m: int
    unary: bytes
    fixed: bytes
    extra: bytes

    @property
    def c(self) -> int:
        return (self.m - 1).bit_length()

    @property
    def width(self) -> int:
        return self.c - 1

    @property
    def t(self) -> int:
        return (1 << self.c) - self.m

    def fields(self) -> list[bytes]:
        """The wire fields, in order: params, unary, fixed, extra."""
        return [_PARAMS.pack(self.universe, self.count, self.m), self.unary, self.fixed, self.extra]

    @classmethod
    def from_fields(cls, fields: list[bytes]) -> GCSFilter:
        if len(fields) != 4 or len(fields[0]) != _PARAMS.size:
            raise LengthError("malformed filter parameters")
        universe, count, m = _PARAMS.unpack(fields[0])
        if (
            universe == 0
            or count == 0
            or count > universe
            or not (2 <= m <= universe)
            or universe + m >= 1 << 64
        ):
            raise DecodeError("filter parameters out of range")
        width = (m - 1).bit_length() - 1
        if width > 56:
            raise DecodeError("filter Golomb parameter too large")
        if len(fields[2]) != (count * width + 7) // 8:
            raise LengthError("filter remainder stream has the wrong length")
        return cls(universe, count, m, fields[1], fields[2], fields[3])

    def nbytes(self) -> int:
        return _PARAMS.size + len(self.unary) + len(self.fixed) + len(self.extra)


def build_gcs(values: U64, universe: int) -> GCSFilter:
    """Encode a set of uniform uint64 values (order irrelevant) into a GCS over ``[0, U)``."""
    xs = np.sort(map_to_range(np.asarray(values, dtype=np.uint64), universe))
    if xs.size > 1:
        xs = xs[np.concatenate([[True], xs[1:] != xs[:-1]])]
    n = int(xs.size)
    if n == 0:
        raise ParameterError("cannot build a filter over an empty set")
    m = golomb_parameter(universe, len(values))
    if universe + m >= 1 << 64 or (m - 1).bit_length() - 1 > 56:
        raise ParameterError("set too large for this false-positive rate (n/fpr must be < 2^64)")
    c = (m - 1).bit_length()
    t = (1 << c) - m
    d = np.diff(xs, prepend=np.uint64(0))
    mm = np.uint64(m)
    q, r = d // mm, d % mm
    # unary: ones at cumulative positions
    ones = np.cumsum(q + np.uint64(1)) - np.uint64(1)
    nbits = int(ones[-1]) + 1
    ubits = np.zeros((nbits + 7) // 8 * 8, dtype=np.uint8)
    ubits[ones.astype(np.int64)] = 1
    unary = np.packbits(ubits).tobytes()
    long_ = r >= np.uint64(t)
    code = np.where(long_, r + np.uint64(t), r)
    v = np.where(long_, code >> np.uint64(1), code)
    fixed = _pack_fixed(v, c - 1)
    extra = np.packbits((code[long_] & np.uint64(1)).astype(np.uint8)).tobytes()
    return GCSFilter(universe, n, m, unary, fixed, extra)


class GCSReader:
    """A validated, indexed view of a ``GCSFilter`` for membership lookups."""

    def __init__(self, f: GCSFilter, block: int = 64, max_decoded: int = 1 << 22) -> None:
        self.f = f
        self.block = block
        xs, ones, long_ = self._decode_all()
        n = f.count
        self._xs: U64 | None = xs if n <= max_decoded else None
        starts = np.arange(0, n, block)
        self._first = xs[starts]
        self._prev = np.concatenate([[np.uint64(0)], xs[starts[1:] - 1]]).astype(np.uint64)
        uoff = np.concatenate([[0], ones[starts[1:] - 1].astype(np.int64) + 1, [int(ones[-1]) + 1]])
        ecum = np.concatenate([[0], np.cumsum(long_, dtype=np.int64)])
        self._uoff = uoff.astype(np.int64)
        self._eoff = np.concatenate([ecum[starts], [ecum[-1]]]).astype(np.int64)
        self._ubits_len = int(ones[-1]) + 1

    def _decode_all(self) -> tuple[U64, npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Decode and strictly validate every stream (canonical padding, order, range)."""
        f = self.f
        ubits = np.unpackbits(np.frombuffer(f.unary, dtype=np.uint8))
        ones = np.flatnonzero(ubits)
        if ones.size != f.count:
            raise DecodeError("filter unary stream holds the wrong number of codes")
        if len(f.unary) != (int(ones[-1]) + 1 + 7) // 8:
            raise DecodeError("filter unary stream has trailing bytes")
        q = np.diff(ones, prepend=-1).astype(np.uint64) - np.uint64(1)
        v = _unpack_fixed(f.fixed, f.count, f.width)
        if f.width and f.count * f.width % 8:
            tail = f.fixed[-1] & ((1 << (8 - f.count * f.width % 8)) - 1)
            if tail:
                raise DecodeError("filter remainder stream has non-zero padding")
        long_ = v >= np.uint64(f.t)
        nlong = int(long_.sum())
        if len(f.extra) != (nlong + 7) // 8:
            raise DecodeError("filter extra stream has the wrong length")
        ebits = np.unpackbits(np.frombuffer(f.extra, dtype=np.uint8))
        if ebits[nlong:].any():
            raise DecodeError("filter extra stream has non-zero padding")
        r = v.copy()
        r[long_] = (v[long_] << np.uint64(1)) + ebits[:nlong].astype(np.uint64) - np.uint64(f.t)
        if (q > np.uint64((f.universe - 1) // f.m)).any():
            raise DecodeError("filter gap out of range")
        d = q * np.uint64(f.m) + r  # < U + m < 2^64 (checked in from_fields): no wrap
        xs = np.cumsum(d, dtype=np.uint64)
        # a wrap-around of the running sum would make it decrease, so this also rules it out
        if f.count > 1 and not (xs[1:] > xs[:-1]).all():
            raise DecodeError("filter values are not strictly increasing")
        if int(xs[-1]) >= f.universe:
            raise DecodeError("filter values out of range")
        return xs, ones.astype(np.int64), long_

    def _block_contains(self, j: int, x: int) -> bool:
        """Decode block ``j`` with Python ints, stopping at the first value ≥ x."""
        f, b = self.f, self.block
        start = j * b
        cnt = min(b, f.count - start)
        u0, u1 = int(self._uoff[j]), int(self._uoff[j + 1])
        ubytes = f.unary[u0 // 8 : (u1 + 7) // 8]
        ustr = format(int.from_bytes(ubytes, "big"), f"0{len(ubytes) * 8}b")
        runs = ustr[u0 % 8 : u0 % 8 + (u1 - u0)].split("1")
        w, t, m = f.width, f.t, f.m
        bit0 = start * w
        fbytes = f.fixed[bit0 // 8 : (bit0 + cnt * w + 7) // 8]
        fint = int.from_bytes(fbytes, "big")
        fshift = len(fbytes) * 8 - bit0 % 8
        wmask = (1 << w) - 1
        e0, e1 = int(self._eoff[j]), int(self._eoff[j + 1])
        ebytes = f.extra[e0 // 8 : (e1 + 7) // 8]
        estr = ""
        if ebytes:
            estr = format(int.from_bytes(ebytes, "big"), f"0{len(ebytes) * 8}b")[e0 % 8 :]
        ei = 0
        val = int(self._prev[j])
        for i in range(cnt):
            v = (fint >> (fshift - (i + 1) * w)) & wmask
            if v < t:
                r = v
            else:
                r = (v << 1) + (estr[ei] == "1") - t
                ei += 1
            val += len(runs[i]) * m + r
            if val >= x:
                return val == x
        return False

    def contains_x(self, x: int) -> bool:
        if self._xs is not None:
            xs = self._xs
            i = int(xs.searchsorted(np.uint64(x)))
            return i < xs.size and int(xs[i]) == x
        j = int(np.searchsorted(self._first, np.uint64(x), side="right")) - 1
        if j < 0:
            return False
        return self._block_contains(j, x)

    def contains(self, h: int) -> bool:
        """Membership of one uniform 64-bit value (false positives at rate ≤ 1/M)."""
        return self.contains_x((h * self.f.universe) >> 64)

    def contains_many(self, hs: list[int]) -> list[bool]:
        return [self.contains(h) for h in hs]

    def index_bytes(self) -> int:
        """Client memory used by the lookup structures (not sent on the wire)."""
        idx = self._first.nbytes + self._prev.nbytes + self._uoff.nbytes + self._eoff.nbytes
        return int(idx + (self._xs.nbytes if self._xs is not None else 0))
