"""A detectable hash function: tell real threshold shares from synthetic junk by linear algebra.

The problem (Apple PSI System, §4 "synthetic matches"): after the outer layer
opens, the server holds ``r`` real shares of an account key mixed with ``s``
synthetic junk shares, and must not be able to tell them apart while
``r < t``; once ``r >= t`` it must find the real ones without trying subsets
(C(r+s, t) of them). Apple solves this with a "detectable hash function"; this
module is our construction of one, from standard linear algebra (it is *not* a
transcription of Apple's, whose details are not public in full).

Construction. Work in GF(q), q = 2^31 - 1. Each account has ``k`` secret random
polynomials g_1..g_k of degree <= t - 2. A real voucher with detection point
``u`` (derived publicly from its Shamir x-coordinate) carries the vector
``(g_1(u), ..., g_k(u))``; a synthetic voucher carries ``k`` uniform values.
The server forms, for every opened voucher, the row::

    [1, u, u^2, ..., u^(t-2) | d_1, ..., d_k]        (width w = t - 1 + k)

Real rows lie in the (t-1)-dimensional subspace {(v, C v)} (C = the g's
coefficients). Consequences, with distinct u and ``s <= k`` synthetic rows:

* ``r <= t - 1`` real rows: each real row's ``d`` part is k evaluations of
  degree-(t-2) polynomials at <= t-1 points, i.e. exactly uniform — the rows
  are distributed identically to synthetic rows (perfect hiding, any q).
* ``r >= t`` real rows: any t of them are linearly dependent (a Vandermonde
  argument shows every real row lies in a minimal dependency), while the
  synthetic rows, projected modulo that subspace, are ``s <= k`` uniform
  vectors in GF(q)^k and are linearly independent except with probability
  about q^-(k - s + 1). So the *support of the left kernel* of the row matrix is
  exactly the set of real rows.

Cost: one Gaussian elimination of a w x m matrix over GF(q), O(w * m * min(w, m))
word operations with numpy int64 (q < 2^31 so products fit in 63 bits).
Limit: if an account accumulates more than ``k`` synthetic rows, detection may
fail (no reveal; never a wrong reveal, because the caller verifies the Shamir
reconstruction and the AD's AEAD tag). Bytes: 4k per voucher.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes

from ..errors import InputError

__all__ = ["Q", "detection_point", "evaluate", "kernel_groups", "kernel_support", "rows"]

Q = 2**31 - 1
_DST = b"blindmatch-tpsi-v1|dhf-point|"

IntArray = npt.NDArray[np.int64]


def detection_point(x_bytes: bytes) -> int:
    """Public map from a Shamir x-coordinate to a non-zero point of GF(q)."""
    h = hashes.Hash(hashes.SHA256())
    h.update(_DST + x_bytes)
    return 1 + int.from_bytes(h.finalize()[:8], "little") % (Q - 1)


def evaluate(coeffs: IntArray, u: int) -> IntArray:
    """Evaluate k polynomials (rows of ``coeffs``, constant term first) at ``u``."""
    if coeffs.ndim != 2:
        raise InputError("coefficient matrix must be 2-D")
    acc = np.zeros(coeffs.shape[0], dtype=np.int64)
    for j in range(coeffs.shape[1] - 1, -1, -1):
        acc = (acc * u + coeffs[:, j]) % Q
    return acc


def rows(points: Sequence[int], vectors: IntArray, t: int) -> IntArray:
    """The detection matrix: one row ``[u^0..u^(t-2) | d]`` per opened voucher."""
    m = len(points)
    if vectors.shape[0] != m:
        raise InputError("one detection vector per point")
    v = np.ones((m, max(t - 1, 0)), dtype=np.int64)
    u = np.asarray(points, dtype=np.int64) % Q
    for j in range(1, t - 1):
        v[:, j] = (v[:, j - 1] * u) % Q
    return np.concatenate([v, vectors.astype(np.int64) % Q], axis=1)


def kernel_support(matrix: IntArray) -> list[int]:
    """Indices of the rows that take part in some linear dependency over GF(q)."""
    return sorted(i for g in kernel_groups(matrix) for i in g)


def kernel_groups(matrix: IntArray) -> list[list[int]]:
    """The rows in the left kernel's support, split into independent dependency groups.

    Computes the reduced row echelon form of ``matrix.T``. Each free column
    with the pivot columns it touches is a fundamental circuit (a minimal
    dependency), and a circuit never spans two groups whose rows lie in
    subspaces that intersect only in 0. Joining circuits that share a row
    therefore yields one group per polynomial: rows of two accounts'
    polynomials (or of one account's two seeds) come out apart, junk rows
    not at all. Groups are sorted by their smallest row index.
    """
    a = (matrix.T.astype(np.int64) % Q).copy()
    w, m = a.shape
    pivots: list[tuple[int, int]] = []  # (row, column)
    free: list[int] = []
    r = 0
    for col in range(m):
        if r >= w:
            free.extend(range(col, m))
            break
        nz = np.nonzero(a[r:, col])[0]
        if nz.size == 0:
            free.append(col)
            continue
        pr = r + int(nz[0])
        if pr != r:
            a[[r, pr]] = a[[pr, r]]
        inv = pow(int(a[r, col]), Q - 2, Q)
        a[r] = (a[r] * inv) % Q
        f = a[:, col].copy()
        f[r] = 0
        nzr = np.nonzero(f)[0]
        if nzr.size:
            a[nzr] = (a[nzr] - np.outer(f[nzr], a[r])) % Q
        pivots.append((r, col))
        r += 1
    parent = list(range(m))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    members: set[int] = set()
    for fc in free:
        members.add(fc)
        for prow, pcol in pivots:
            if a[prow, fc] != 0:
                members.add(pcol)
                parent[find(pcol)] = find(fc)
    groups: dict[int, list[int]] = {}
    for i in sorted(members):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])
