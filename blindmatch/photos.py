"""Real photographs that ship inside installed packages, and real-style copy pairs made from them.

Why: the procedural corpus cannot show what real collections hold (near-duplicate
views, flat images, greyscale scans), and there is no network here. scikit-image
(``skimage.data``, a dependency) and matplotlib ship a few public-domain or
freely licensed photographs; these make a small real-photo corpus for tests
and demonstrations. Copies are made as re-sharing makes them: re-encoded as
JPEG quality 50, downscaled, screenshot-like (cropped, rescaled, with UI bars)
and mirrored; the CSV they are listed in is the ``blindmatch sim run --pairs``
format.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["COPY_KINDS", "PHOTO_NAMES", "load_photo", "write_copy_pairs", "write_photos"]

# skimage.data photographs that load without a download (``cat`` is ``chelsea``), plus
# the two views of ``stereo_motorcycle`` (a real near-duplicate pair) and matplotlib's sample.
PHOTO_NAMES = (
    "astronaut",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "page",
    "text",
    "cell",
    "motorcycle_left",
    "motorcycle_right",
    "grace_hopper",
)


def load_photo(name: str) -> Image.Image:
    """One of ``PHOTO_NAMES`` as an 8-bit RGB image."""
    if name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        with Image.open(str(path)) as f:
            return f.convert("RGB")
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()  # type: ignore[no-untyped-call]
        arr = left if name.endswith("left") else right
    elif name in PHOTO_NAMES:
        arr = getattr(skimage.data, name)()
    else:
        raise ValueError(f"unknown photo {name!r}; choose from {PHOTO_NAMES}")
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    return img.convert("RGB")


def write_photos(folder: Path, names: tuple[str, ...] | list[str] = PHOTO_NAMES) -> list[Path]:
    """Write ``names`` as JPEG quality 95 files (as a camera or a download would deliver them)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        p = folder / f"{n}.jpg"
        load_photo(n).save(p, "JPEG", quality=95)
        out.append(p)
    return out


def _screenshot(img: Image.Image) -> Image.Image:
    """Cropped 4% each side, shown at 70% on a phone screen with status and navigation bars."""
    w, h = img.size
    crop = img.crop((int(w * 0.04), int(h * 0.04), w - int(w * 0.04), h - int(h * 0.04)))
    shown = crop.resize(
        (max(1, int(crop.width * 0.7)), max(1, int(crop.height * 0.7))), Image.Resampling.BICUBIC
    )
    top, bottom = max(1, shown.height // 16), max(1, shown.height // 10)
    canvas = Image.new("RGB", (shown.width, shown.height + top + bottom), (16, 16, 16))
    canvas.paste(shown, (0, top))
    canvas.paste((240, 240, 240), (0, top + shown.height, shown.width, top + shown.height + bottom))
    return canvas


COPY_KINDS: dict[str, tuple[Callable[[Image.Image], Image.Image], str, int]] = {
    # label: (edit, file format, JPEG quality)
    "jpeg-q50": (lambda im: im, "JPEG", 50),
    "resized": (
        lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BILINEAR),
        "JPEG",
        85,
    ),
    "screenshot": (_screenshot, "PNG", 0),
    "mirrored": (ImageOps.mirror, "JPEG", 90),
}


def write_copy_pairs(
    references: list[Path], folder: Path, kinds: tuple[str, ...] = tuple(COPY_KINDS)
) -> Path:
    """Make each kind of copy of each reference in ``folder``; return the pairs CSV (relative paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for ref in references:
        with Image.open(ref) as im:
            original = im.convert("RGB")
        for kind in kinds:
            edit, fmt, quality = COPY_KINDS[kind]
            ext = "png" if fmt == "PNG" else "jpg"
            q = folder / f"{ref.stem}-{kind}.{ext}"
            kw = {"quality": quality} if fmt == "JPEG" else {}
            edit(original).save(q, fmt, **kw)
            rows.append((q.relative_to(folder).as_posix(), _rel(ref, folder), kind))
    out = folder / "pairs.csv"
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "reference", "label"])
        w.writerows(rows)
    return out


def _rel(p: Path, base: Path) -> str:
    try:
        return p.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        import os

        return os.path.relpath(p.resolve(), base.resolve())
