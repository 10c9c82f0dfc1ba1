"""Decision functions: what a protocol's verdict *should* be, computed in bulk.

Why they exist: running real cryptographic protocols on hundreds of thousands of
queries against sets of 10⁶ hashes is too slow for a one-hour run, so accuracy
at scale is computed from a decision function per protocol. The issue allows
this only for a function shown equal to the real protocol on a verified sample;
``oracle.py`` runs that check and ``results.json`` records, per protocol,
variant and algorithm, which source each number came from.

Two families cover the registry, chosen from the declared ``Protocol.matching``:

* fuzzy: matched ⇔ some set entry lies within Hamming radius r of the query;
* exact: matched ⇔ the query hash, or one of its 2^k multi-probe variants
  (the k PDQ bits whose float value lies closest to the median, flipped in every
  combination), is a set member. The probes come from ``protocol.multiprobe``,
  the module the real clients use, so the rule and the protocols cannot drift
  apart (same limit, same error, same refusal of a query without float values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from blindmatch.protocol import HashAlgo
from blindmatch.protocol.multiprobe import probe_rows

__all__ = [
    "DecisionSpec",
    "ExactIndex",
    "nearest_distances",
    "to_words",
]

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]


def to_words(raw: U8) -> U64:
    """(m, nbytes) big-endian hash bytes -> (m, nbytes/8) uint64 words (as HashSet stores them)."""
    a = np.ascontiguousarray(raw, dtype=np.uint8)
    return a.view(">u8").astype(np.uint64).reshape(a.shape[0], -1)


def _popcount(x: U64) -> npt.NDArray[np.uint16]:
    return np.bitwise_count(x).astype(np.uint16)


def nearest_distances(db: U64, queries: U64, budget_words: int = 8_000_000) -> npt.NDArray[np.uint16]:
    """Minimum Hamming distance from each query to any row of ``db`` (exact, vectorised)."""
    m, n, w = queries.shape[0], db.shape[0], db.shape[1]
    out = np.empty(m, dtype=np.uint16)
    if n == 0:
        out[:] = np.iinfo(np.uint16).max
        return out
    block = max(1, budget_words // max(1, n * w))
    for s in range(0, m, block):
        q = queries[s : s + block]
        d = _popcount(db[None, :, :] ^ q[:, None, :]).sum(axis=2, dtype=np.uint16)
        out[s : s + len(q)] = d.min(axis=1)
    return out


def prefix_nearest(db: U64, queries: U64, bounds: list[int], chunk: int = 1 << 17) -> npt.NDArray[np.uint16]:
    """Nearest distance to ``db[:b]`` for each b in ``bounds`` (nested sets): shape (m, bounds)."""
    m = queries.shape[0]
    out = np.full((m, len(bounds)), np.iinfo(np.uint16).max, dtype=np.uint16)
    running = np.full(m, np.iinfo(np.uint16).max, dtype=np.uint16)
    start = 0
    for bi, b in enumerate(bounds):
        for s in range(start, b, chunk):
            e = min(b, s + chunk)
            running = np.minimum(running, nearest_distances(db[s:e], queries))
        start = max(start, b)
        out[:, bi] = running
    return out


class ExactIndex:
    """Exact membership over hash rows (sorted byte strings + binary search)."""

    def __init__(self, raw: U8) -> None:
        self._nbytes = raw.shape[1]
        keys = np.ascontiguousarray(raw).view(f"V{self._nbytes}").reshape(-1)
        self._sorted = np.unique(keys)

    def contains(self, raw: U8) -> npt.NDArray[np.bool_]:
        if len(self._sorted) == 0 or len(raw) == 0:
            return np.zeros(len(raw), dtype=np.bool_)
        q = np.ascontiguousarray(raw, dtype=np.uint8).view(f"V{self._nbytes}").reshape(-1)
        pos = np.searchsorted(self._sorted, q)
        pos = np.minimum(pos, len(self._sorted) - 1)
        return np.asarray(self._sorted[pos] == q, dtype=np.bool_)


@dataclass(frozen=True)
class DecisionSpec:
    """The rule that stands in for one protocol variant."""

    kind: str  # "fuzzy" | "exact"
    radius: int = 0
    probe_bits: int = 0
    dihedral: bool = False  # the rule applies to each of the 8 rotations/flips; matched if any is

    def describe(self, algo: HashAlgo) -> str:
        of = f"the {algo.name} hash"
        if self.dihedral:
            of = f"any of the 8 {algo.name} hashes of the image's rotations and flips"
        if self.kind == "fuzzy":
            return f"matched iff some set entry is within Hamming distance {self.radius} of {of}"
        if self.probe_bits and algo.name == "pdq":
            return (
                f"matched iff {of} or one of its 2^{self.probe_bits} flips of the "
                f"{self.probe_bits} least-stable bits is in the set"
            )
        return f"matched iff {of} is exactly in the set"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "radius": self.radius,
            "probe_bits": self.probe_bits,
            "dihedral": self.dihedral,
        }

    def verdicts(
        self,
        raw: U8,
        floats: npt.NDArray[np.float32] | None,
        nearest: npt.NDArray[np.uint16],
        index: ExactIndex,
    ) -> npt.NDArray[np.bool_]:
        """Verdicts for query rows ``raw`` given their precomputed nearest distances."""
        if self.kind == "fuzzy":
            return np.asarray(nearest <= self.radius, dtype=np.bool_)
        if self.probe_bits <= 0:
            return index.contains(raw)
        out = np.zeros(raw.shape[0], dtype=np.bool_)
        for i in range(raw.shape[0]):
            probes = probe_rows(raw[i], None if floats is None else floats[i], self.probe_bits)
            if nearest[i] > self.probe_bits:  # probes reach at most k bits away
                continue
            out[i] = bool(index.contains(probes).any())
        return out
