"""Hash algorithms as first-class values, independent of image decoding.

Why here and not in client/: every layer (protocols, server, simulator) needs a
hash's bit length, hex codec and match threshold, but only the client decodes
images. Keeping the value types in the lowest layer avoids import cycles.

Default thresholds: PDQ 31 bits of 256 (Meta's published operating point);
pHash and dHash 64-bit, 10 bits (about the same 12% fraction of the length as
PDQ's 31/256; imagehash's authors suggest ≤ 10 for "similar"); SHA-256 exact, 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .errors import BadHashError, EmptySetError

__all__ = ["ALGOS", "HashAlgo", "HashSet", "HashValue", "get_algo"]


@dataclass(frozen=True)
class HashAlgo:
    """A hash family: its name, length and default Hamming match radius."""

    name: str
    bits: int
    default_threshold: int
    perceptual: bool

    @property
    def nbytes(self) -> int:
        return self.bits // 8

    @property
    def words(self) -> int:
        return self.bits // 64

    def from_hex(self, text: str) -> HashValue:
        """Parse a hex string of exactly ``bits/4`` digits."""
        t = text.strip().lower()
        if len(t) != self.bits // 4:
            raise BadHashError(f"{self.name} hash needs {self.bits // 4} hex digits, got {len(t)}")
        try:
            raw = bytes.fromhex(t)
        except ValueError:
            raise BadHashError(f"{self.name} hash is not hexadecimal") from None
        return HashValue(self, raw)

    def from_bytes(self, raw: bytes) -> HashValue:
        if len(raw) != self.nbytes:
            raise BadHashError(f"{self.name} hash needs {self.nbytes} bytes, got {len(raw)}")
        return HashValue(self, bytes(raw))

    def from_bits(self, bits: npt.ArrayLike) -> HashValue:
        """Pack a 0/1 vector (MSB first, as PDQ's hex form) into a hash."""
        arr = np.asarray(bits, dtype=np.uint8).reshape(-1)
        if arr.size != self.bits:
            raise BadHashError(f"{self.name} hash needs {self.bits} bits, got {arr.size}")
        return HashValue(self, np.packbits(arr).tobytes())


PDQ = HashAlgo("pdq", 256, 31, True)
PHASH = HashAlgo("phash", 64, 10, True)
DHASH = HashAlgo("dhash", 64, 10, True)
SHA256 = HashAlgo("sha256", 256, 0, False)
ALGOS: dict[str, HashAlgo] = {a.name: a for a in (PDQ, PHASH, DHASH, SHA256)}
ALGO_IDS: dict[str, int] = {"pdq": 1, "phash": 2, "dhash": 3, "sha256": 4}


def get_algo(name: str) -> HashAlgo:
    try:
        return ALGOS[name]
    except KeyError:
        raise BadHashError(f"unknown hash algorithm {name!r}; choose from {sorted(ALGOS)}") from None


@dataclass(frozen=True)
class HashValue:
    """One hash: its algorithm and big-endian bytes."""

    algo: HashAlgo
    raw: bytes

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def bits(self) -> npt.NDArray[np.uint8]:
        return np.unpackbits(np.frombuffer(self.raw, dtype=np.uint8))

    def words(self) -> npt.NDArray[np.uint64]:
        return np.frombuffer(self.raw, dtype=">u8").astype(np.uint64)

    def distance(self, other: HashValue) -> int:
        if other.algo != self.algo:
            raise BadHashError("cannot compare hashes of different algorithms")
        x = np.frombuffer(self.raw, dtype=np.uint8) ^ np.frombuffer(other.raw, dtype=np.uint8)
        return int(np.unpackbits(x).sum())

    def flip(self, positions: Iterable[int]) -> HashValue:
        """Return a copy with the given bit positions (0 = MSB) inverted."""
        b = bytearray(self.raw)
        for p in positions:
            b[p // 8] ^= 0x80 >> (p % 8)
        return HashValue(self.algo, bytes(b))


@dataclass(frozen=True)
class HashSet:
    """The server's set: ``n × words`` uint64 matrix, row order is insertion order."""

    algo: HashAlgo
    words: npt.NDArray[np.uint64] = field(repr=False)

    def __post_init__(self) -> None:
        if self.words.ndim != 2 or self.words.shape[1] != self.algo.words:
            raise BadHashError("hash matrix has the wrong shape")

    @classmethod
    def from_values(cls, algo: HashAlgo, values: Iterable[HashValue]) -> HashSet:
        raws = [v.raw for v in values if _check_algo(v, algo)]
        if not raws:
            raise EmptySetError("the hash set is empty")
        return cls.from_raw(algo, b"".join(raws))

    @classmethod
    def from_raw(cls, algo: HashAlgo, blob: bytes) -> HashSet:
        if len(blob) % algo.nbytes:
            raise BadHashError("hash blob length is not a multiple of the hash size")
        if not blob:
            raise EmptySetError("the hash set is empty")
        w = np.frombuffer(blob, dtype=">u8").astype(np.uint64).reshape(-1, algo.words)
        return cls(algo, w)

    def __len__(self) -> int:
        return int(self.words.shape[0])

    def raw(self) -> bytes:
        return self.words.astype(">u8").tobytes()

    def value(self, i: int) -> HashValue:
        return HashValue(self.algo, self.words[i].astype(">u8").tobytes())

    def values(self) -> list[HashValue]:
        blob = self.raw()
        n = self.algo.nbytes
        return [HashValue(self.algo, blob[i : i + n]) for i in range(0, len(blob), n)]


def _check_algo(v: HashValue, algo: HashAlgo) -> bool:
    if v.algo != algo:
        raise BadHashError(f"hash of algorithm {v.algo.name} in a {algo.name} set")
    return True
