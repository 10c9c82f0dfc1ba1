"""Real copy pairs from a CSV file: ground truth beyond the synthetic edits.

Why: researchers hold real pairs (an original and its re-shared, cropped,
screenshotted or filtered copy, as in Copydays or DISC21). Each row names a
query file and a reference file, and optionally a label (the kind of copy).
References join the server's set; queries are scanned by every protocol
variant. Paths are relative to the CSV file's folder. A header row
``query,reference[,label]`` is optional; blank lines and lines starting with
``#`` are skipped. A bad row raises ``PairsFileError`` naming the file and line.
Files are decoded and hashed exactly as ``blindmatch db build`` and
``blindmatch scan`` do (``hash_file``, SHA-256 over the file bytes).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from blindmatch.client import decode_image
from blindmatch.protocol import ImageError

from ..config import SimConfigError
from .images import _hash_all, _store, empty_hashes

__all__ = ["CopyPair", "PairsFileError", "hash_pair_files", "pairs_fingerprint", "read_pairs"]

UNLABELLED = "unlabelled"


class PairsFileError(SimConfigError):
    """The ``--pairs`` CSV file is missing, malformed, or names an unusable image."""

    code = "bad_pairs_file"


@dataclass(frozen=True)
class CopyPair:
    line: int
    query: Path
    reference: Path
    label: str


def _resolve(base: Path, cell: str, where: str, what: str) -> Path:
    if not cell:
        raise PairsFileError(f"{where}: empty {what} path")
    p = Path(cell)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise PairsFileError(
            f"{where}: {what} {cell!r} is not a file (paths are relative to the CSV's folder)"
        )
    return p


def read_pairs(path: Path) -> list[CopyPair]:
    """Every pair in ``path``; raises ``PairsFileError`` at the first bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PairsFileError(f"{path}: no such pairs file") from None
    except IsADirectoryError:
        raise PairsFileError(f"{path}: is a folder, not a CSV file") from None
    except UnicodeDecodeError:
        raise PairsFileError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise PairsFileError(f"{path}: cannot read ({e.strerror})") from None
    base = path.parent
    pairs: list[CopyPair] = []
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        raise PairsFileError(f"{path}: not valid CSV ({e})") from None
    for lineno, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if not pairs and [c.lower() for c in cells[:2]] == ["query", "reference"]:
            continue  # header
        if len(cells) not in (2, 3):
            raise PairsFileError(
                f"{where}: expected 2 or 3 columns (query, reference, optional label), got {len(cells)}"
            )
        label = cells[2] if len(cells) == 3 and cells[2] else UNLABELLED
        pairs.append(
            CopyPair(
                lineno,
                _resolve(base, cells[0], where, "query"),
                _resolve(base, cells[1], where, "reference"),
                label,
            )
        )
    if not pairs:
        raise PairsFileError(
            f"{path}: no pairs (expected rows of query path, reference path, optional label)"
        )
    return pairs


def pairs_fingerprint(pairs: list[CopyPair]) -> str:
    """Digest of every row and of every file's bytes (stage cache key)."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(f"{p.line}\0{p.query}\0{p.reference}\0{p.label}\0".encode())
        for f in (p.query, p.reference):
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:24]


def hash_pair_files(
    pairs: list[CopyPair], algos: list[str], csv_path: Path
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, npt.NDArray[Any]], npt.NDArray[np.int64]]:
    """(query hashes, reference hashes, reference row of each query): each distinct reference once."""
    refs: dict[Path, int] = {}
    for p in pairs:
        refs.setdefault(p.reference, len(refs))
    q = empty_hashes(len(pairs), algos, (len(pairs),))
    r = empty_hashes(len(refs), algos, (len(refs),))
    for arrays, files in ((q, [(p.line, p.query) for p in pairs]), (r, _first_lines(pairs, refs))):
        for j, (line, f) in enumerate(files):
            data = f.read_bytes()
            try:
                img = decode_image(data, str(f))
            except ImageError as e:
                raise PairsFileError(f"{csv_path}:{line}: {e.detail}") from None
            _store(arrays, (j,), _hash_all(img, data, algos))
    ref_of = np.array([refs[p.reference] for p in pairs], dtype=np.int64)
    return q, r, ref_of


def _first_lines(pairs: list[CopyPair], refs: dict[Path, int]) -> list[tuple[int, Path]]:
    first: dict[Path, int] = {}
    for p in pairs:
        first.setdefault(p.reference, p.line)
    return [(first[f], f) for f in sorted(refs, key=refs.__getitem__)]
