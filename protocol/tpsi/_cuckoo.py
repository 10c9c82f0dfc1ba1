"""d-ary cuckoo hashing without a stash, for the tPSI server table.

Why cuckoo: the client must not learn which slot (if any) holds its hash, yet
the server's table must let a matching hash land on a slot the client can name
without help. With cuckoo hashing every item sits in one of ``d`` public
positions ``h_1(y)..h_d(y)``, so the client builds one (Q, ct) pair per
position and exactly one of them can open for a member. No stash: a stash slot
would cost every voucher one more pair.

Failure and re-seeding. For ``d = 3`` an assignment exists with probability
1 - o(1) whenever the load n/n' is below the orientability threshold
c*_3 ≈ 0.918 (Dietzfelbinger et al. 2010; Fountoulakis–Panagiotou 2010); for
``d = 2`` the threshold is 1/2 and the failure probability is Θ(1/n) at fixed
load below it (Pagh–Rodler 2004; Kirsch–Mitzenmacher–Wieder 2009). The
random-walk insertion below gives up after ``max_kicks`` evictions; the caller
then draws a fresh seed and rebuilds (``build_with_reseed``). The measured
failure rates for our defaults (d = 3, eps = 0.3, load 0.77) are in
docs/protocols/tpsi.md; a failure costs only a rebuild of the slot map.

Positions are SHA-256(domain || seed || i || item) reduced mod n'; the seed is
published in the signed manifest so the client computes the same positions.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes

from ..errors import ParameterError

__all__ = [
    "LOAD_LIMITS",
    "CuckooFailure",
    "build",
    "build_with_reseed",
    "positions",
    "table_slots",
]

_DST = b"blindmatch-tpsi-v1|cuckoo|"
SEED_BYTES = 16
# Largest load we accept per d: a margin below the orientability thresholds
# (0.5, 0.918, 0.977) so that random-walk insertion stays fast.
LOAD_LIMITS = {2: 0.48, 3: 0.88, 4: 0.95}


class CuckooFailure(Exception):
    """Insertion exceeded the eviction budget; re-seed and rebuild."""


def table_slots(n: int, eps: float, d: int) -> int:
    """n' = ceil((1 + eps) n) + d, refusing loads too close to the threshold."""
    if d not in LOAD_LIMITS:
        raise ParameterError(f"cuckoo hashing supports d in {sorted(LOAD_LIMITS)}, got {d}")
    if n < 1:
        raise ParameterError("cuckoo table needs at least one item")
    slots = math.ceil((1.0 + eps) * n) + d
    if n / slots > LOAD_LIMITS[d]:
        raise ParameterError(f"load {n / slots:.3f} exceeds {LOAD_LIMITS[d]} for d={d}; raise eps")
    return slots


def positions(seed: bytes, n_slots: int, d: int, item: bytes) -> list[int]:
    """The ``d`` candidate slots of ``item`` (may repeat; callers dedupe)."""
    h = hashes.Hash(hashes.SHA512())
    h.update(_DST + seed + item)
    digest = h.finalize()
    return [int.from_bytes(digest[8 * i : 8 * i + 8], "little") % n_slots for i in range(d)]


def build(
    items: Sequence[bytes], n_slots: int, d: int, seed: bytes, max_kicks: int = 500
) -> npt.NDArray[np.int64]:
    """Map slot -> item index (or -1). Raises ``CuckooFailure`` on a stuck walk."""
    table = np.full(n_slots, -1, dtype=np.int64)
    cand = [positions(seed, n_slots, d, it) for it in items]
    rng = secrets.SystemRandom()
    tab = table.tolist()
    for i in range(len(items)):
        cur = i
        prev_slot = -1
        for _ in range(max_kicks + 1):
            ps = cand[cur]
            free = next((p for p in ps if tab[p] == -1), None)
            if free is not None:
                tab[free] = cur
                break
            choices = [p for p in ps if p != prev_slot] or list(ps)
            victim_slot = rng.choice(choices)
            victim = tab[victim_slot]
            tab[victim_slot] = cur
            cur = victim
            prev_slot = victim_slot
        else:
            raise CuckooFailure
    return np.asarray(tab, dtype=np.int64)


def build_with_reseed(
    items: Sequence[bytes], n_slots: int, d: int, max_attempts: int = 20
) -> tuple[bytes, npt.NDArray[np.int64], int]:
    """Build with fresh seeds until insertion succeeds; returns (seed, table, attempts)."""
    if len(set(items)) != len(items):
        raise ParameterError("cuckoo items must be distinct")
    for attempt in range(1, max_attempts + 1):
        seed = secrets.token_bytes(SEED_BYTES)
        try:
            return seed, build(items, n_slots, d, seed), attempt
        except CuckooFailure:
            continue
    raise ParameterError(f"cuckoo insertion failed {max_attempts} times; raise eps")
