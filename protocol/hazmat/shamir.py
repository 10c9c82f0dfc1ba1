"""Shamir secret sharing over a prime field, and the polynomial algebra it needs.

Why this field: ``PRIME = 2^255 - 19`` is a well-known prime, large enough that
a share is a uniformly random 255-bit value and that x-coordinates drawn by a
PRF never collide in practice; it is *not* used as a curve here, only as Z/pZ.

Shamir (1979): a secret ``s`` is the constant term of a random polynomial ``f``
of degree ``t - 1``; a share is ``(x, f(x))`` for ``x != 0``. Any ``t`` shares
with distinct x determine ``f`` (Lagrange); any ``t - 1`` are uniformly
distributed and independent of ``s``. That last property is what makes a
below-threshold real share indistinguishable from a synthetic (junk) share.

The helpers take the modulus as an argument so the same code serves the small
detection field in ``dhf.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from ..errors import DeserializeError, InputError, LengthError

__all__ = [
    "ELEMENT_BYTES",
    "PRIME",
    "decode_element",
    "encode_element",
    "eval_poly",
    "interpolate",
    "interpolate_at",
    "random_element",
    "share",
]

PRIME = 2**255 - 19
ELEMENT_BYTES = 32


def random_element(p: int = PRIME) -> int:
    """Uniform element of Z/pZ from ``secrets``."""
    return secrets.randbelow(p)


def encode_element(v: int, p: int = PRIME) -> bytes:
    if not 0 <= v < p:
        raise InputError("field element out of range")
    return v.to_bytes(ELEMENT_BYTES, "little")


def decode_element(data: bytes, p: int = PRIME) -> int:
    """32 little-endian bytes, canonical (< p)."""
    if len(data) != ELEMENT_BYTES:
        raise LengthError("field element must be 32 bytes")
    v = int.from_bytes(data, "little")
    if v >= p:
        raise DeserializeError("non-canonical field element")
    return v


def eval_poly(coeffs: Sequence[int], x: int, p: int = PRIME) -> int:
    """Horner evaluation; ``coeffs[0]`` is the constant term."""
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % p
    return acc


def share(coeffs: Sequence[int], x: int, p: int = PRIME) -> int:
    """The share at ``x``; ``x = 0`` would be the secret itself and is refused."""
    if x % p == 0:
        raise InputError("a Shamir share at x = 0 is the secret")
    return eval_poly(coeffs, x, p)


def _check_points(points: Sequence[tuple[int, int]], p: int) -> None:
    xs = [x % p for x, _ in points]
    if len(set(xs)) != len(xs):
        raise InputError("interpolation points need distinct x")


def interpolate_at(points: Sequence[tuple[int, int]], x0: int = 0, p: int = PRIME) -> int:
    """Lagrange: the value at ``x0`` of the unique polynomial of degree < len(points)."""
    _check_points(points, p)
    nums, dens = [], []
    for i, (xi, _) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (x0 - xj) % p
                den = den * (xi - xj) % p
        nums.append(num)
        dens.append(den)
    inv = _batch_inverse(dens, p)
    return sum(y * n * d for (_, y), n, d in zip(points, nums, inv, strict=True)) % p


def _batch_inverse(vals: Sequence[int], p: int) -> list[int]:
    """Montgomery's trick: n inverses for one exponentiation and 3n multiplications."""
    prefix = [1] * (len(vals) + 1)
    for i, v in enumerate(vals):
        if v % p == 0:
            raise InputError("zero has no inverse")
        prefix[i + 1] = prefix[i] * v % p
    inv = pow(prefix[-1], p - 2, p)
    out = [0] * len(vals)
    for i in range(len(vals) - 1, -1, -1):
        out[i] = inv * prefix[i] % p
        inv = inv * vals[i] % p
    return out


def interpolate(points: Sequence[tuple[int, int]], p: int = PRIME) -> list[int]:
    """Monomial coefficients (constant first) of the interpolating polynomial.

    Lagrange form: with M(X) = prod (X - x_i), the basis polynomial is
    M(X) / (X - x_i) / M'(x_i); O(n^2) multiplications and one inversion.
    """
    _check_points(points, p)
    n = len(points)
    xs = [x % p for x, _ in points]
    big_m = [1]  # coefficients of prod (X - x_i), constant first
    for x in xs:
        nxt = [0] * (len(big_m) + 1)
        for i, c in enumerate(big_m):
            nxt[i + 1] = (nxt[i + 1] + c) % p
            nxt[i] = (nxt[i] - x * c) % p
        big_m = nxt
    denoms = []
    for i in range(n):
        d = 1
        for j in range(n):
            if i != j:
                d = d * (xs[i] - xs[j]) % p
        denoms.append(d)
    inv = _batch_inverse(denoms, p)
    coeffs = [0] * n
    for i in range(n):
        w = points[i][1] % p * inv[i] % p
        # synthetic division of M by (X - x_i): quotient q, degree n - 1
        q = [0] * n
        carry = big_m[n]
        for k in range(n - 1, -1, -1):
            q[k] = carry
            carry = (big_m[k] + carry * xs[i]) % p
        for k in range(n):
            coeffs[k] = (coeffs[k] + w * q[k]) % p
    return coeffs
