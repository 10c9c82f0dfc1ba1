"""Perceptual and exact hashers: PDQ (default), pHash, dHash, SHA-256.

PDQ follows the reference tool: inputs larger than 512 px are downscaled first
(which also makes hashing ~10× faster), quality is reported, and by default a
hash of quality < 50 is not matched (Meta's guidance: such images are too flat
for a meaningful hash). pHash/dHash come from ``imagehash``; SHA-256 is over the
file bytes, for exact-file matching.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import numpy.typing as npt
import pdqhash
from blindmatch.protocol import HashAlgo, HashValue, get_algo
from PIL import Image

from .dihedral import dihedral_floats, dihedral_hashes
from .images import PDQ_MAX_SIDE, decode_image, load_image

__all__ = [
    "PDQ_MIN_QUALITY",
    "HashedImage",
    "hash_bytes",
    "hash_dihedral",
    "hash_file",
    "hash_image",
]

PDQ_MIN_QUALITY = 50


@dataclass(frozen=True)
class HashedImage:
    """A hash plus what robust matching needs (PDQ quality and float values)."""

    hash: HashValue
    quality: int | None = None
    float_values: tuple[float, ...] | None = field(default=None, repr=False)
    dihedral: tuple[HashValue, ...] | None = field(default=None, repr=False)

    @property
    def algo(self) -> HashAlgo:
        return self.hash.algo

    def matchable(self, min_quality: int = PDQ_MIN_QUALITY) -> bool:
        return self.quality is None or self.quality >= min_quality


def _pdq_input(img: Image.Image) -> npt.NDArray[np.uint8]:
    if max(img.size) > PDQ_MAX_SIDE:
        img = img.copy()
        img.thumbnail((PDQ_MAX_SIDE, PDQ_MAX_SIDE), Image.Resampling.LANCZOS)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def hash_image(img: Image.Image, algo: str = "pdq", dihedral: bool = False) -> HashedImage:
    """Hash an already-decoded image (SHA-256 is not defined here: it needs file bytes)."""
    a = get_algo(algo)
    if a.name == "pdq":
        arr = _pdq_input(img)
        floats, quality = pdqhash.compute_float(arr)
        med = float(np.median(floats))
        bits = (floats > med).astype(np.uint8)
        hv = a.from_bits(bits)
        dih = tuple(a.from_bytes(h.tobytes()) for h in dihedral_hashes(floats)) if dihedral else None
        return HashedImage(hv, int(quality), tuple(float(x) for x in floats), dih)
    if a.name in ("phash", "dhash"):
        fn = imagehash.phash if a.name == "phash" else imagehash.dhash
        hv = a.from_bits(fn(img).hash.reshape(-1).astype(np.uint8))
        dih = tuple(h.hash for h in hash_dihedral(img, a.name)) if dihedral else None
        return HashedImage(hv, None, None, dih)
    raise ValueError("sha256 hashes file bytes; use hash_bytes or hash_file")


def hash_dihedral(img: Image.Image, algo: str = "pdq") -> tuple[HashedImage, ...]:
    """The 8 rotations/flips of ``img``, identity first, each with its own float values.

    PDQ: Meta's one-pass definition (``pdqhash.compute_dihedral``, derived here from
    the one set of DCT floats so multi-probe can run on each orientation; the
    simulator uses the same function). pHash and dHash have no such identity: each
    rotated image is hashed on its own.
    """
    a = get_algo(algo)
    if a.name == "pdq":
        base = hash_image(img, "pdq")
        floats = dihedral_floats(np.asarray(base.float_values))
        hashes = dihedral_hashes(np.asarray(base.float_values))
        return tuple(
            HashedImage(a.from_bytes(h.tobytes()), base.quality, tuple(float(x) for x in f))
            for h, f in zip(hashes, floats, strict=True)
        )
    return tuple(hash_image(_dihedral(img, k), algo) for k in range(8))


def _dihedral(img: Image.Image, k: int) -> Image.Image:
    out = img.rotate(90 * (k % 4), expand=True)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if k >= 4 else out


def hash_bytes(data: bytes, algo: str = "pdq", name: str = "<bytes>", dihedral: bool = False) -> HashedImage:
    """Hash encoded image bytes (or, for SHA-256, any bytes)."""
    a = get_algo(algo)
    if a.name == "sha256":
        return HashedImage(a.from_bytes(hashlib.sha256(data).digest()))
    return hash_image(decode_image(data, name), algo, dihedral)


def hash_file(path: str | Path, algo: str = "pdq", dihedral: bool = False) -> HashedImage:
    """Hash a file on disk; raises a typed ``ImageError`` naming the path."""
    a = get_algo(algo)
    if a.name == "sha256":
        p = Path(path)
        try:
            return hash_bytes(p.read_bytes(), "sha256", str(p))
        except OSError as e:
            from blindmatch.protocol import UnreadableImageError

            raise UnreadableImageError(str(p), f"cannot read file ({e.strerror})") from None
    return hash_image(load_image(path), algo, dihedral)
