"""Parallel image work: load or generate an image, perturb it, hash it with every algorithm.

Tasks are plain dicts in, numpy arrays out, so they run unchanged in this
process, a spawned pool worker or a Dask worker. Hashing goes through the real
client hashers (``blindmatch.client.hash_image`` / ``hash_bytes``), so the
simulator measures exactly what ``blindmatch scan`` would compute.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from blindmatch.client import decode_image, get_algo, hash_bytes, hash_image
from blindmatch.protocol import ImageError
from PIL import Image

from blindmatch.corpus import generate_image

from ..config import SimConfigError
from ..perturb.edits import PERTURBATIONS, encode_ppm

__all__ = [
    "IMAGE_SUFFIXES",
    "corpus_fingerprint",
    "corpus_spec",
    "edit_source",
    "empty_hashes",
    "hash_originals_task",
    "hash_perturbed_task",
    "load_original",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
CORPUS_VERSION = 1  # bump when generate_image changes


def corpus_spec(seed: int, count: int, directory: Path | None) -> dict[str, Any]:
    """A small, picklable description of where images come from."""
    if directory is None:
        return {
            "kind": "embedded",
            "seed": int(seed),
            "count": int(count),
            "version": CORPUS_VERSION,
        }
    d = Path(directory)
    if not d.is_dir():
        raise SimConfigError(f"--corpus {d}: not a folder")
    paths = sorted(str(p) for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SimConfigError(f"--corpus {d}: found no JPEG/PNG/WebP images")
    return {"kind": "dir", "root": str(d), "paths": paths}


def corpus_fingerprint(spec: dict[str, Any]) -> str:
    if spec["kind"] == "embedded":
        return f"embedded:{spec['seed']}:{spec['count']}:v{spec['version']}"
    h = hashlib.sha256()
    for p in spec["paths"]:
        h.update(p.encode() + b"\0")
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return "dir:" + h.hexdigest()[:24]


def load_original(spec: dict[str, Any], i: int) -> tuple[str, Image.Image, bytes]:
    """(name, RGB image, file bytes) of corpus image ``i``."""
    if spec["kind"] == "embedded":
        seed = int(np.random.SeedSequence([spec["seed"], i]).generate_state(1)[0])
        img = generate_image(seed)
        return f"img{i:06d}", img, encode_ppm(img)
    p = Path(spec["paths"][i])
    data = p.read_bytes()
    return p.name, decode_image(data, str(p)), data


def _hash_all(
    img: Image.Image, data: bytes, algos: list[str]
) -> dict[str, tuple[bytes, int, npt.NDArray[np.float32] | None, float]]:
    out: dict[str, tuple[bytes, int, npt.NDArray[np.float32] | None, float]] = {}
    for a in algos:
        t0 = time.process_time()
        h = hash_bytes(data, "sha256") if a == "sha256" else hash_image(img, a)
        ms = (time.process_time() - t0) * 1000.0
        fl = np.asarray(h.float_values, dtype=np.float32) if h.float_values is not None else None
        out[a] = (h.hash.raw, -1 if h.quality is None else int(h.quality), fl, ms)
    return out


def empty_hashes(n: int, algos: list[str], shape: tuple[int, ...]) -> dict[str, npt.NDArray[Any]]:
    """Zeroed hash arrays for ``shape`` images (quality -1: not hashed)."""
    res: dict[str, npt.NDArray[Any]] = {}
    for a in algos:
        res[f"hash_{a}"] = np.zeros((*shape, get_algo(a).nbytes), dtype=np.uint8)
        res[f"ms_{a}"] = np.zeros(shape, dtype=np.float32)
    res["quality"] = np.full(shape, -1, dtype=np.int16)
    if "pdq" in algos:
        res["floats"] = np.zeros((*shape, 256), dtype=np.float32)
    return res


def _store(res: dict[str, npt.NDArray[Any]], idx: tuple[int, ...], hs: dict[str, Any]) -> None:
    for a, (raw, q, fl, ms) in hs.items():
        res[f"hash_{a}"][idx] = np.frombuffer(raw, dtype=np.uint8)
        res[f"ms_{a}"][idx] = ms
        if a == "pdq":
            res["quality"][idx] = q
            if fl is not None:
                res["floats"][idx] = fl


def hash_originals_task(task: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    """Hash the unmodified images ``task['indices']`` with every algorithm."""
    idx: list[int] = task["indices"]
    algos: list[str] = task["algos"]
    res = empty_hashes(len(idx), algos, (len(idx),))
    res["ok"] = np.ones(len(idx), dtype=np.bool_)
    for j, i in enumerate(idx):
        try:
            _, img, data = load_original(task["spec"], i)
        except ImageError:  # a corrupt file in --corpus: excluded from the run, counted in the report
            res["ok"][j] = False
            continue
        _store(res, (j,), _hash_all(img, data, algos))
    return res


def hash_perturbed_task(task: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    """Apply every perturbation to images ``task['indices']`` and hash the results.

    The randomness of perturbation p on image i comes only from (seed, i, p's name).
    """
    idx: list[int] = task["indices"]
    algos: list[str] = task["algos"]
    perts = [PERTURBATIONS[n] for n in task["perturbations"]]
    res = empty_hashes(len(idx), algos, (len(idx), len(perts)))
    for j, i in enumerate(idx):
        _, img, data = load_original(task["spec"], i)
        src = edit_source(img, task.get("resolution", "full"), int(task.get("max_side", 0)))
        for k, p in enumerate(perts):
            rng = np.random.default_rng(
                np.random.SeedSequence([task["seed"], i, zlib.crc32(p.name.encode())])
            )
            # the unchanged file is the original, whatever resolution the edits start from
            out, file_bytes = p.apply(img if p.kind == "identity" else src, rng, data)
            _store(res, (j, k), _hash_all(out, file_bytes, algos))
    return res


def edit_source(img: Image.Image, resolution: str, max_side: int) -> Image.Image:
    """The image the edits start from: the decoded original, or a copy no larger than ``max_side``.

    The known set is always hashed from the original file (as ``blindmatch db build``
    does); only the edited copies depend on this choice.
    """
    if resolution == "full" or max(img.size) <= max_side:
        return img
    if resolution != "downscaled":
        raise SimConfigError(f"perturb.resolution must be 'full' or 'downscaled', not {resolution!r}")
    small = img.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return small
