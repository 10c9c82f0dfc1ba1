"""Multi-probe for exact matching: also try the hashes a small edit would produce.

Why: a re-encoded or resized image flips a few PDQ bits, and exact protocols
(``oprf``, ``tpsi``) then miss it. PDQ sets each bit by comparing a float
value with the median, so the bits whose value lies closest to the median are
the ones most likely to flip. With ``probe_bits = k`` the client also queries
every combination of flips of those k bits: 2^k probes, the hash itself first,
then by number of flipped bits (1, 2, …, k), each group in the order of
``itertools.combinations`` over the bits ranked least stable first.

One limit, one error, one rule, for every protocol and the simulator:

* ``0 <= probe_bits <= MAX_PROBE_BITS`` (10: 1,024 probes per image, the
  default oprf evaluation batch); outside it, ``ProbeError``.
* A query with ``probe_bits > 0`` must carry its ``float_values`` (one per hash
  bit): without them there is nothing to rank bits by, and probing only the
  exact hash would quietly lower recall below what the caller asked for. It
  is refused with ``ProbeError`` before anything is sent, so the server sees
  nothing either way. Pass ``probe_bits = 0`` for hashes without float values
  (every algorithm but PDQ).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .errors import ProbeError
from .hashes import HashValue

__all__ = [
    "MAX_PROBE_BITS",
    "check_probe_bits",
    "flip_sets",
    "least_stable_bits",
    "probe_count",
    "probe_hashes",
    "probe_rows",
]

MAX_PROBE_BITS = 10


def check_probe_bits(k: int) -> int:
    """``k`` itself if it is a valid probe count exponent, else ``ProbeError``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= MAX_PROBE_BITS:
        raise ProbeError(f"probe_bits must be an integer in 0..{MAX_PROBE_BITS}, not {k!r}")
    return int(k)


def probe_count(k: int) -> int:
    """2^k: the number of probes (the hash included) per query."""
    return 1 << check_probe_bits(k)


def least_stable_bits(float_values: Sequence[float] | npt.ArrayLike, k: int) -> list[int]:
    """The ``k`` bit positions whose float value lies closest to the median (stable sort)."""
    fv = np.asarray(float_values, dtype=np.float64)
    med = float(np.median(fv))
    return [int(i) for i in np.argsort(np.abs(fv - med), kind="stable")[:k]]


def flip_sets(
    float_values: Sequence[float] | npt.ArrayLike | None, k: int, bits: int
) -> list[tuple[int, ...]]:
    """The bit sets to flip, one per probe: ``()`` first, then by size (see module doc)."""
    check_probe_bits(k)
    if k == 0:
        return [()]
    if float_values is None:
        raise ProbeError(
            f"probe_bits={k} needs the hash's {bits} float values (Query.float_values, PDQ only); "
            "use probe_bits=0 for hashes without them"
        )
    fv = np.asarray(float_values, dtype=np.float64)
    if fv.shape != (bits,):
        raise ProbeError(f"{fv.size} float values for a {bits}-bit hash")
    ranked = least_stable_bits(fv, k)
    return [c for r in range(k + 1) for c in itertools.combinations(ranked, r)]


def probe_hashes(
    h: HashValue, float_values: Sequence[float] | None, k: int
) -> list[tuple[HashValue, int]]:
    """The 2^k probes of ``h`` as (hash, number of flipped bits), ``h`` itself first."""
    return [(h.flip(c) if c else h, len(c)) for c in flip_sets(float_values, k, h.algo.bits)]


def probe_rows(
    raw: npt.NDArray[np.uint8], float_values: npt.ArrayLike | None, k: int
) -> npt.NDArray[np.uint8]:
    """The same probes as rows of big-endian hash bytes, shape (2^k, nbytes) (simulator form)."""
    base = np.asarray(raw, dtype=np.uint8)
    sets = flip_sets(float_values, k, base.size * 8)
    out = np.repeat(base[None, :], len(sets), axis=0)
    for i, combo in enumerate(sets):
        for p in combo:
            out[i, p // 8] ^= np.uint8(0x80 >> (p % 8))
    return out
