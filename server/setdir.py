"""The set directory: the server's hash set plus per-protocol state.

Layout::

    SET_DIR/set.json        {"format": 1, "algo", "count", "digest", "created", "sources"}
    SET_DIR/hashes.bin      count × (bits/8) bytes, big-endian hashes, sorted, unique
    SET_DIR/state/<proto>/  keys, filters, tables, SQLite stores owned by a protocol

``digest`` is SHA-256 over hashes.bin: the set's root digest, printable so it can
be published out of band. A damaged file at start-up is a ``CorruptStoreError``
naming the file — never a server that silently serves an empty set.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from blindmatch.protocol import (
    CorruptStoreError,
    EmptySetError,
    HashAlgo,
    HashSet,
    HashValue,
    atomic_write,
    get_algo,
)

__all__ = ["SET_FORMAT", "SetDir"]

SET_FORMAT = 1


@dataclass(frozen=True)
class SetDir:
    path: Path
    hashes: HashSet
    digest: str
    meta: dict[str, Any]

    @property
    def algo(self) -> HashAlgo:
        return self.hashes.algo

    def attestations(self) -> list[dict[str, str]]:
        """Curator signatures over this set's root digest (``attestations.json``)."""
        p = self.path / "attestations.json"
        if not p.exists():
            return []
        try:
            data = json.loads(p.read_text())
            if not isinstance(data, list):
                raise ValueError
            return [dict(a) for a in data]
        except (ValueError, TypeError):
            raise CorruptStoreError(f"{p}: not a JSON list of attestations") from None

    def add_attestation(self, att: dict[str, str]) -> None:
        atts = [a for a in self.attestations() if a.get("curator") != att["curator"]]
        atomic_write(self.path / "attestations.json", json.dumps([*atts, att], indent=2).encode())

    def state_dir(self, protocol: str) -> Path:
        d = self.path / "state" / protocol
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return d

    @classmethod
    def build(
        cls,
        out: Path,
        algo: HashAlgo,
        values: list[HashValue],
        sources: list[str] | None = None,
    ) -> SetDir:
        """Write a new set (sorted, de-duplicated) atomically into ``out``."""
        if not values:
            raise EmptySetError("no hashes to build a set from")
        raw = sorted({v.raw for v in values if v.algo == algo})
        if not raw:
            raise EmptySetError(f"no {algo.name} hashes to build a set from")
        return cls._write(out, algo, b"".join(raw), sources or [])

    @classmethod
    def build_from_words(cls, out: Path, algo: HashAlgo, words: np.ndarray, sources: list[str]) -> SetDir:
        """Fast path for large synthetic sets (simulator, benchmarks)."""
        uniq = np.unique(np.ascontiguousarray(words.astype(">u8")).view(f"V{algo.nbytes}"))
        return cls._write(out, algo, uniq.tobytes(), sources)

    @classmethod
    def _write(cls, out: Path, algo: HashAlgo, blob: bytes, sources: list[str]) -> SetDir:
        """The sorted, de-duplicated hashes, then ``set.json`` naming their digest (the commit point)."""
        digest = hashlib.sha256(blob).hexdigest()
        atomic_write(out / "hashes.bin", blob)
        meta = {
            "format": SET_FORMAT,
            "algo": algo.name,
            "count": len(blob) // algo.nbytes,
            "digest": digest,
            "created": int(time.time()),
            "sources": sources,
        }
        atomic_write(out / "set.json", json.dumps(meta, indent=2).encode())
        return cls(out, HashSet.from_raw(algo, blob), digest, meta)

    @classmethod
    def open(cls, path: Path) -> SetDir:
        """Open and verify a set directory; any damage names the damaged file."""
        meta_p, bin_p = path / "set.json", path / "hashes.bin"
        if not path.is_dir():
            raise CorruptStoreError(f"{path}: set directory does not exist")
        try:
            meta = json.loads(meta_p.read_text())
        except FileNotFoundError:
            raise CorruptStoreError(f"{meta_p}: missing") from None
        except (ValueError, UnicodeDecodeError):
            raise CorruptStoreError(f"{meta_p}: not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != SET_FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise CorruptStoreError(f"{meta_p}: unknown set format {fmt!r}")
        try:
            algo = get_algo(str(meta["algo"]))
            count = int(meta["count"])
            digest = str(meta["digest"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptStoreError(f"{meta_p}: bad field ({e})") from None
        try:
            blob = bin_p.read_bytes()
        except FileNotFoundError:
            raise CorruptStoreError(f"{bin_p}: missing") from None
        if count == 0 or not blob:
            raise EmptySetError(f"{bin_p}: the set is empty")
        if len(blob) != count * algo.nbytes:
            raise CorruptStoreError(
                f"{bin_p}: {len(blob)} bytes, expected {count} × {algo.nbytes} (truncated?)"
            )
        if hashlib.sha256(blob).hexdigest() != digest:
            raise CorruptStoreError(f"{bin_p}: digest does not match set.json (corrupted)")
        return cls(path, HashSet.from_raw(algo, blob), digest, meta)
