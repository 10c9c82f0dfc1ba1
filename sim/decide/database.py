"""The server's set in the simulation: known images' hashes plus filler up to a target size.

Why uniform random filler: hashing 10⁶ real images is out of reach for a
one-hour run. Uniform hashes are what a PDQ or pHash set of unrelated content
would look like if bits were independent fair coins; real hashes are slightly
over-dispersed (``stats.fit_beta_binomial`` measures by how much on the corpus),
so false-match rates against filler are a lower bound, and the population
extrapolation uses the corpus's own pair statistics instead. Sets are nested:
the set of size N is a prefix of the set of size 10N, so rates across sizes are
directly comparable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from blindmatch.protocol import HashAlgo
from blindmatch.protocol.hashes import ALGO_IDS
from blindmatch.server import SetDir

from .rules import to_words

__all__ = ["build_set_dir", "filler_hashes", "set_rows"]


def filler_hashes(algo: HashAlgo, count: int, seed: int) -> npt.NDArray[np.uint8]:
    """``count`` uniform random hashes for ``algo``, a deterministic function of (seed, algo)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, ALGO_IDS[algo.name], 0xF111]))
    return rng.integers(0, 256, size=(max(0, count), algo.nbytes), dtype=np.uint8)


def set_rows(known: npt.NDArray[np.uint8], filler: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    """The rows of the set of ``size`` hashes: every known hash, then filler."""
    if size < len(known):
        raise ValueError(f"set size {size} is smaller than the {len(known)} known hashes")
    need = size - len(known)
    if need > len(filler):
        raise ValueError(f"need {need} filler hashes, have {len(filler)}")
    return np.concatenate([known, filler[:need]], axis=0)


def build_set_dir(path: Path, algo: HashAlgo, rows: npt.NDArray[np.uint8], note: str) -> SetDir:
    """Write a real set directory (the same format ``blindmatch db build`` writes)."""
    return SetDir.build_from_words(path, algo, to_words(rows), [note])
