"""Image decoding with the PDQ reference tool's preprocessing, and typed failures.

Why so defensive: users' commonest complaints about hashers are crashes on
greyscale/alpha/CMYK/16-bit files and hashes that drift with decoders. We
normalise every mode to 8-bit RGB the same way, apply EXIF orientation, take the
first frame of animations, and refuse decompression bombs before decoding pixels.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
from blindmatch.protocol import ImageTooLargeError, UnreadableImageError
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "PDQ_MAX_SIDE", "decode_image", "load_image", "to_rgb"]

# Raster formats only: never hand untrusted bytes to Ghostscript (EPS/PS) or other delegates.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
MAX_PIXELS = 64_000_000  # stricter than Pillow's 89 MP default
PDQ_MAX_SIDE = 512


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read ``path`` and return an RGB image, or raise a typed ``ImageError``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise UnreadableImageError(str(p), "is a directory") from None
    except OSError as e:
        raise UnreadableImageError(str(p), f"cannot read file ({e.strerror})") from None
    return decode_image(data, str(p), max_pixels)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode encoded image bytes to RGB with the same rules as ``load_image``."""
    if not data:
        raise UnreadableImageError(name, "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLargeError(name, f"{w}x{h} exceeds the {max_pixels}-pixel limit")
            img.seek(0)  # first frame of animations
            img.load()
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(name, "decompression bomb refused") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(name, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        raise UnreadableImageError(name, f"corrupt or truncated image ({type(e).__name__})") from None
    with contextlib.suppress(Exception):  # a broken EXIF block must not block hashing
        img = ImageOps.exif_transpose(img) or img
    return to_rgb(img, name)


def to_rgb(img: Image.Image, name: str = "<image>") -> Image.Image:
    """Normalise any Pillow mode to 8-bit RGB; alpha is flattened on white."""
    mode = img.mode
    try:
        if mode == "RGB":
            return img
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            arr = np.asarray(img, dtype=np.float64)
            lo, hi = float(arr.min()), float(arr.max())
            if mode.startswith("I;16"):
                lo, hi = 0.0, 65535.0
            scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
            return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
        if mode == "P":
            img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
            mode = img.mode
        if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(bg, rgba).convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise UnreadableImageError(name, f"unsupported image mode {mode} ({e})") from None
