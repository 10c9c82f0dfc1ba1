"""Adversarial evasion: how easily a known image is nudged out of matching range.

The attacker model is the weakest one that matters: the perceptual hash is
public (it must run on the client), so anyone can query it as a black box. The
search knows nothing about the hash's internals; it only sees the Hamming
distance between the edited image's hash and the original's.

Search (random hill-climbing, in the spirit of Jain, Cretu & de Montjoye,
USENIX Security 2022, but far simpler): propose a faint low-frequency cosine
pattern (random direction, frequency ≤ 6 cycles per image, random phase,
amplitude ``step`` grey levels) added to the luminance; keep it if the hash
distance grows; stop at success (distance > the matching threshold), at the
query budget, or when PSNR falls below ``min_psnr_db``. Success means every
fuzzy protocol at the default threshold — and every exact one — misses the
image. Image quality at success is reported as PSNR and SSIM.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
from blindmatch.client import get_algo, hash_image
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..hashing.images import load_original

__all__ = ["evade", "evasion_task"]


def _hash(arr: npt.NDArray[np.float64], algo: str) -> bytes:
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    return bytes(hash_image(img, algo).hash.raw)


def psnr(a: npt.NDArray[Any], b: npt.NDArray[Any], data_range: float) -> float:
    return float(peak_signal_noise_ratio(a, b, data_range=data_range))  # type: ignore[no-untyped-call]


def ssim(a: npt.NDArray[Any], b: npt.NDArray[Any], channel_axis: int, data_range: float) -> float:
    return float(
        structural_similarity(a, b, channel_axis=channel_axis, data_range=data_range)  # type: ignore[no-untyped-call]
    )


def _dist(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))).sum())


def evade(
    img: Image.Image,
    algo: str,
    threshold: int,
    max_queries: int,
    step: float,
    min_psnr_db: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    x0 = np.asarray(img.convert("RGB"), dtype=np.float64)
    h, w = x0.shape[:2]
    target = _hash(x0, algo)
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy / h, xx / w
    delta = np.zeros((h, w), dtype=np.float64)
    best, queries, status = 0, 0, "budget"
    while queries < max_queries:
        fx, fy = rng.uniform(-6.0, 6.0, 2)
        phase = rng.uniform(0.0, 2 * np.pi)
        cand = delta + step * np.cos(2 * np.pi * (fx * xx + fy * yy) + phase)
        d = _dist(_hash(x0 + cand[..., None], algo), target)
        queries += 1
        if d > best:
            delta, best = cand, d
            if d > threshold:
                status = "success"
                break
            edited = np.clip(x0 + delta[..., None] + 0.5, 0, 255).astype(np.uint8)
            if psnr(x0.astype(np.uint8), edited, data_range=255) < min_psnr_db:
                status = "quality-floor"
                break
    edited = np.clip(x0 + delta[..., None] + 0.5, 0, 255).astype(np.uint8)
    ref = np.clip(x0 + 0.5, 0, 255).astype(np.uint8)
    changed = bool(np.any(edited != ref))
    return {
        "algo": algo,
        "success": status == "success",
        "status": status,
        "queries": queries,
        "distance": best,
        "threshold": threshold,
        "psnr_db": float(psnr(ref, edited, data_range=255)) if changed else None,
        "ssim": float(ssim(ref, edited, channel_axis=2, data_range=255)),
    }


def evasion_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Attack corpus image ``task['index']`` once per algorithm (deterministic per seed)."""
    name, img, _ = load_original(task["spec"], task["index"])
    img = img.copy()
    img.thumbnail((task["max_side"], task["max_side"]), Image.Resampling.LANCZOS)
    out = []
    for a in task["algos"]:
        rng = np.random.default_rng(
            np.random.SeedSequence([task["seed"], task["index"], zlib.crc32(a.encode())])
        )
        r = evade(
            img,
            a,
            get_algo(a).default_threshold,
            task["max_queries"],
            task["step"],
            task["min_psnr_db"],
            rng,
        )
        r["image"] = name
        out.append(r)
    return out
