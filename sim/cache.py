"""Stage results cached in the output folder, so an interrupted run resumes.

Each entry is ``OUT/cache/<name>.json`` or ``.npz`` and records the key it was
computed under (a digest of the seed, the relevant configuration, the corpus and
``CACHE_VERSION``). A missing entry or a different key means "compute again";
writes are atomic, so a crash never leaves a half-written entry that looks valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from blindmatch.protocol import atomic_write, atomic_writer

__all__ = ["CACHE_VERSION", "StageCache"]

CACHE_VERSION = 1


class StageCache:
    def __init__(self, out: Path, enabled: bool = True) -> None:
        self.root = out / "cache"
        self.enabled = enabled
        self.root.mkdir(parents=True, exist_ok=True)

    def _p(self, name: str, ext: str) -> Path:
        return self.root / f"{name}.{ext}"

    def load_json(self, name: str, key: str) -> Any | None:
        p = self._p(name, "json")
        if not self.enabled or not p.exists():
            return None
        try:
            blob = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return None
        if not isinstance(blob, dict) or blob.get("key") != key or blob.get("v") != CACHE_VERSION:
            return None
        return blob["value"]

    def save_json(self, name: str, key: str, value: Any) -> None:
        atomic_write(self._p(name, "json"), json.dumps({"key": key, "v": CACHE_VERSION, "value": value}))

    def load_arrays(self, name: str, key: str) -> dict[str, npt.NDArray[Any]] | None:
        p = self._p(name, "npz")
        if not self.enabled or not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                if str(z["__key__"]) != f"{CACHE_VERSION}:{key}":
                    return None
                return {k: z[k] for k in z.files if k != "__key__"}
        except (ValueError, OSError, KeyError):
            return None

    def save_arrays(self, name: str, key: str, arrays: dict[str, npt.NDArray[Any]]) -> None:
        with atomic_writer(self._p(name, "npz")) as fh:
            np.savez(fh, __key__=np.array(f"{CACHE_VERSION}:{key}"), **arrays)  # type: ignore[arg-type]
