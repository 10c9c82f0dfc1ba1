"""Procedurally generated, photo-like images: the embedded default corpus.

Why procedural: no download, deterministic from a seed, and varied enough that
unrelated images' PDQ distances spread around 128 like real photos' do (the
simulator reports that distribution against binomial(256, ½); real photographs
can still differ). Each image layers a smooth multi-scale colour field
(sky/ground-like gradients and 1/f noise), textured shapes, and sensor noise.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from blindmatch.protocol import HashSet, get_algo

__all__ = ["generate_image", "iter_corpus", "random_set", "write_corpus"]


def _fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    out = np.zeros((h, w), dtype=np.float64)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = max(2, h >> (octaves - o)), max(2, w >> (octaves - o))
        grid = rng.standard_normal((gh, gw))
        layer = np.asarray(
            Image.fromarray(grid.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BICUBIC)
        )
        out += amp * layer
        total += amp
        amp *= 0.55
    out /= total
    scaled: npt.NDArray[np.float64] = (out - out.min()) / (np.ptp(out) + 1e-9)
    return scaled


def random_set(n: int, algo: str = "pdq", seed: int | Sequence[int] | None = 7) -> HashSet:
    """``n`` uniformly random hashes of ``algo``: the stand-in set of tests, benchmarks and drills.

    Reproducible for a given ``seed``; ``seed=None`` draws a fresh set each call. Test data,
    not key material: numpy's generator is fine here.
    """
    a = get_algo(algo)
    rng = np.random.default_rng(seed)
    return HashSet.from_raw(a, rng.integers(0, 256, size=n * a.nbytes, dtype=np.uint8).tobytes())


def generate_image(seed: int, size: tuple[int, int] | None = None) -> Image.Image:
    """One deterministic RGB image for ``seed``."""
    rng = np.random.default_rng(seed)
    if size is None:
        w = int(rng.integers(320, 641))
        h = int(rng.integers(240, 481))
    else:
        w, h = size
    # background: two-colour gradient at a random angle, modulated by fractal noise
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ang = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    noise = _fractal_noise(rng, h, w)
    mix = np.clip(0.6 * t + 0.4 * noise, 0, 1)[..., None]
    base = (1 - mix) * c1 + mix * c2
    tex = _fractal_noise(rng, h, w, octaves=6)[..., None]
    base = base * (0.75 + 0.5 * tex)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(4, 14))):
        kind = int(rng.integers(0, 3))
        col = (*(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(120, 256)))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        sw, sh = int(rng.integers(w // 12, w // 2)), int(rng.integers(h // 12, h // 2))
        if kind == 0:
            draw.ellipse([x0, y0, x0 + sw, y0 + sh], fill=col)
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + sw, y0 + sh], fill=col)
        else:
            pts = [
                (int(x0 + rng.integers(0, sw + 1)), int(y0 + rng.integers(0, sh + 1)))
                for _ in range(int(rng.integers(3, 7)))
            ]
            draw.polygon(pts, fill=col)
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
    arr = np.asarray(img, dtype=np.float64)
    arr = arr + rng.normal(0, rng.uniform(1.0, 5.0), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def iter_corpus(seed: int, count: int) -> Iterator[tuple[str, Image.Image]]:
    """(name, image) pairs; image i depends only on (seed, i)."""
    for i in range(count):
        yield f"img{i:06d}", generate_image(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))


def write_corpus(out: Path, seed: int, count: int, fmt: str = "PNG") -> list[Path]:
    """Write ``count`` images to ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in iter_corpus(seed, count):
        p = out / f"{name}.{fmt.lower()}"
        buf = io.BytesIO()
        img.save(buf, fmt)
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return paths
