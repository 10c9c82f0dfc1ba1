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
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (x0 - xj) % p
                den = den * (xi - xj) % p
        total = (total + yi * num * pow(den, p - 2, p)) % p
    return total


def interpolate(points: Sequence[tuple[int, int]], p: int = PRIME) -> list[int]:
    """Monomial coefficients (constant first) of the interpolating polynomial.

    Newton divided differences, O(n^2) field operations, then expansion.
    """
    _check_points(points, p)
    n = len(points)
    xs = [x % p for x, _ in points]
    dd = [y % p for _, y in points]
    for level in range(1, n):
        for i in range(n - 1, level - 1, -1):
            dd[i] = (dd[i] - dd[i - 1]) * pow(xs[i] - xs[i - level], p - 2, p) % p
    coeffs = [0] * n
    for k in range(n - 1, -1, -1):
        # coeffs <- coeffs * (X - xs[k]) + dd[k]
        new = [0] * n
        for i in range(n - 1):
            new[i + 1] = coeffs[i]
        for i in range(n):
            new[i] = (new[i] - xs[k] * coeffs[i]) % p
        new[0] = (new[0] + dd[k]) % p
        coeffs = new
    return coeffs
