"""PDQ hashes of the 8 rotations and flips of an image, from the one set of float values.

Why from the floats: PDQ's 256 values are a 16×16 block of DCT coefficients of
the 64×64 luminance image. Transposing the image transposes the block, and
mirroring it negates every odd-indexed column (or row) of coefficients, so the
floats — and, thresholded at their own median, the hashes — of all 8 dihedral
transforms follow from one hash computation. The result equals
``pdqhash.compute_dihedral`` bit for bit, in its order (tests/test_sim_truth.py
checks this on real photographs), and the float values let multi-probe run on
each transform.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["DIHEDRAL", "dihedral_floats", "dihedral_hashes"]

# (transpose, negate odd rows, negate odd columns), in pdqhash.compute_dihedral's order
DIHEDRAL: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False),
    (True, True, False),
    (False, True, True),
    (True, False, True),
    (False, True, False),
    (False, False, True),
    (True, False, False),
    (True, True, True),
)
_ODD = np.where(np.arange(16) % 2 == 1, -1.0, 1.0)


def dihedral_floats(floats: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """(..., 256) PDQ floats -> (..., 8, 256): the floats of every dihedral transform."""
    f = np.asarray(floats, dtype=np.float64)
    block = f.reshape(*f.shape[:-1], 16, 16)
    out = []
    for transpose, rows, cols in DIHEDRAL:
        b = np.swapaxes(block, -1, -2) if transpose else block
        if rows:
            b = b * _ODD[:, None]
        if cols:
            b = b * _ODD[None, :]
        out.append(b.reshape(*f.shape[:-1], 256))
    return np.stack(out, axis=-2).astype(np.float32)


def dihedral_hashes(floats: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """(..., 256) PDQ floats -> (..., 8, 32) hash bytes (bit i is MSB-first, as HashValue stores it)."""
    d = dihedral_floats(floats).astype(np.float64)
    med = np.median(d, axis=-1, keepdims=True)
    return np.packbits((d > med).astype(np.uint8), axis=-1)
