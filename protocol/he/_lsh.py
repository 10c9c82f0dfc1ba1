"""Bit-sampling LSH (Indyk–Motwani) for the ``he`` protocol's bucketed mode.

Table ℓ samples k fixed bit positions; an entry's bucket in that table is the
k-bit integer formed by its bits there. Two hashes at Hamming distance d share a
bucket in one table with probability C(n−d, k)/C(n, k) ≈ (1 − d/n)^k, so a set
entry within r of the query is a candidate with probability
1 − (1 − C(n−d, k)/C(n, k))^L over L tables.

What the server learns from a bucketed query (stated exactly in docs/protocols/he.md):
the client's bits at the union of the sampled positions — at most k·L bits, the
positions being public. Positions are drawn without repetition across tables
until all n positions are used, so for k·L ≤ n the tables reveal k·L distinct bits.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InputError, ParameterError

__all__ = ["LshIndex", "LshParams", "collision_probability", "recall_bound"]


def collision_probability(bits: int, k: int, d: int) -> float:
    """P[a hash at distance d falls in the query's bucket of one table]."""
    if d > bits - k:
        return 0.0
    return math.comb(bits - d, k) / math.comb(bits, k)


def recall_bound(bits: int, k: int, tables: int, d: int) -> float:
    """P[an entry at distance d is a candidate] over ``tables`` independent-position tables."""
    return 1.0 - (1.0 - collision_probability(bits, k, d)) ** tables


@dataclass(frozen=True)
class LshParams:
    """Public LSH configuration: k positions per table, one row per table."""

    bits: int
    positions: tuple[tuple[int, ...], ...]

    @property
    def k(self) -> int:
        return len(self.positions[0])

    @property
    def tables(self) -> int:
        return len(self.positions)

    def __post_init__(self) -> None:
        if not self.positions or not 1 <= len(self.positions[0]) <= 24:
            raise ParameterError("LSH needs at least one table of 1..24 positions")
        for row in self.positions:
            if len(row) != len(self.positions[0]) or len(set(row)) != len(row):
                raise ParameterError("LSH tables need k distinct positions each")
            if any(not 0 <= p < self.bits for p in row):
                raise ParameterError("LSH position out of range")

    @classmethod
    def generate(cls, bits: int, k: int, tables: int) -> LshParams:
        """Random positions (public), spread so tables overlap as little as possible."""
        if not 1 <= k <= min(24, bits) or not 1 <= tables <= 64:
            raise ParameterError("LSH needs 1 ≤ k ≤ 24 and 1 ≤ tables ≤ 64")
        rnd = secrets.SystemRandom()
        pool: list[int] = []
        rows: list[tuple[int, ...]] = []
        for _ in range(tables):
            row: list[int] = []
            while len(row) < k:
                if not pool:
                    pool = rnd.sample(range(bits), bits)
                p = pool.pop()
                if p not in row:
                    row.append(p)
            rows.append(tuple(sorted(row)))
        return cls(bits, tuple(rows))

    def revealed_positions(self) -> list[int]:
        """Bit positions whose values a bucketed query discloses to the server."""
        return sorted({p for row in self.positions for p in row})

    def bucket_ids(self, bits_rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """(n, tables) bucket ids for 0/1 rows of shape (n, bits)."""
        pos = np.asarray(self.positions, dtype=np.int64)  # (L, k)
        weights = (1 << np.arange(self.k - 1, -1, -1)).astype(np.int64)
        sampled = bits_rows[:, pos].astype(np.int64)  # (n, L, k)
        out: npt.NDArray[np.int64] = (sampled * weights).sum(axis=2)
        return out

    def check_ids(self, ids: list[int]) -> None:
        if len(ids) != self.tables or any(not 0 <= i < (1 << self.k) for i in ids):
            raise InputError("bucket ids do not fit this server's LSH tables")


class LshIndex:
    """Per-table sorted bucket ids over the set, for candidate lookup in O(L log n)."""

    def __init__(self, params: LshParams, set_bits: npt.NDArray[np.uint8]) -> None:
        self.params = params
        ids = params.bucket_ids(set_bits)
        self._order = [np.argsort(ids[:, t], kind="stable") for t in range(params.tables)]
        self._sorted = [ids[o, t] for t, o in enumerate(self._order)]

    def candidates(self, bucket_ids: list[int]) -> npt.NDArray[np.int64]:
        """Sorted, de-duplicated indices of entries sharing at least one bucket."""
        self.params.check_ids(bucket_ids)
        parts = []
        for t, b in enumerate(bucket_ids):
            keys = self._sorted[t]
            lo, hi = np.searchsorted(keys, b, "left"), np.searchsorted(keys, b, "right")
            parts.append(self._order[t][lo:hi])
        if not parts:
            return np.zeros(0, dtype=np.int64)
        out: npt.NDArray[np.int64] = np.unique(np.concatenate(parts)).astype(np.int64)
        return out
