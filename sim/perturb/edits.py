"""Parameterised image edits that real re-sharing applies to a known image.

Why these: they are the edits trust-and-safety teams see on re-uploaded media
(re-encoding, resizing, cropping, small rotations, flips, filters, captions,
borders, screenshots) and the ones published hasher benchmarks report (Thorn,
ThreatExchange). Each edit is a pure function of (image, parameters, rng), so a
run is reproducible, and each returns the *delivered file bytes* too: exact
hashes (SHA-256) are taken over files, perceptual hashes over decoded pixels.
Lossless edits are delivered as PPM (cheap to write, byte-exact); JPEG-based
edits are decoded again, as the client would.

Every edit accepts any Pillow image (any mode, any size down to 1×1).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from blindmatch.client import decode_image, to_rgb
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

__all__ = ["PERTURBATIONS", "Perturbation", "encode_ppm", "select"]


def encode_ppm(img: Image.Image) -> bytes:
    """Binary PPM: a real, lossless image file whose bytes depend only on the pixels."""
    rgb = to_rgb(img)
    head = f"P6\n{rgb.width} {rgb.height}\n255\n".encode()
    return bytes(head + rgb.tobytes())


def _jpeg(img: Image.Image, quality: int) -> tuple[Image.Image, bytes]:
    buf = io.BytesIO()
    to_rgb(img).save(buf, "JPEG", quality=int(quality))
    data = buf.getvalue()
    return decode_image(data, "<jpeg>"), data


def _lossless(img: Image.Image) -> tuple[Image.Image, bytes]:
    rgb = to_rgb(img)
    return rgb, encode_ppm(rgb)


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(6, px))
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _identity(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    return img


def _resize(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    s = float(p["scale"])
    w, h = max(1, round(img.width * s)), max(1, round(img.height * s))
    return img.resize((w, h), Image.Resampling.LANCZOS)


def _crop(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    """Remove ``fraction`` of width and of height, split evenly between opposite sides."""
    f = float(p["fraction"])
    dx, dy = int(img.width * f / 2), int(img.height * f / 2)
    box = (dx, dy, max(dx + 1, img.width - dx), max(dy + 1, img.height - dy))
    return img.crop(box)


def _rotate(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    deg = float(p["degrees"])
    if deg % 90 == 0:
        k = int(deg // 90) % 4
        ops = {
            1: Image.Transpose.ROTATE_90,
            2: Image.Transpose.ROTATE_180,
            3: Image.Transpose.ROTATE_270,
        }
        return img.transpose(ops[k]) if k else img
    return img.rotate(deg, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0))


def _hflip(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _blur(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=float(p["radius"])))


def _noise(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img, dtype=np.float64)
    arr = arr + rng.normal(0.0, float(p["sigma"]), arr.shape)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def _brightness(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(float(p["factor"]))


def _contrast(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(float(p["factor"]))


def _gamma(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    g = float(p["gamma"])
    lut = [min(255, round(255.0 * (i / 255.0) ** (1.0 / g))) for i in range(256)]
    return img.point(lut * 3)


def _greyscale(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    return img.convert("L").convert("RGB")


_WORDS = ("when the", "nobody", "me at 3am", "ok but", "look at this", "literally", "same", "why")


def _caption(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    """Meme-style white text with a black outline at the top and bottom."""
    out = img.copy()
    d = ImageDraw.Draw(out)
    px = max(6, int(out.height * float(p["size"])))
    font = _font(px)
    for y in (int(out.height * 0.03), int(out.height * (0.97 - float(p["size"])))):
        text = " ".join(str(_WORDS[int(i)]) for i in rng.integers(0, len(_WORDS), 2)).upper()
        d.text(
            (max(0, out.width // 20), y),
            text,
            font=font,
            fill=(255, 255, 255),
            stroke_width=max(1, px // 12),
            stroke_fill=(0, 0, 0),
        )
    return out


def _watermark(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    """Semi-transparent text tiled across the image, as stock-photo sites do."""
    base = img.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    px = max(6, int(min(base.size) * 0.08))
    font = _font(px)
    alpha = int(255 * float(p["opacity"]))
    step_y = max(1, px * 3)
    for row, y in enumerate(range(0, base.height, step_y)):
        d.text(((row % 2) * px * 2, y), "© SAMPLE  " * 6, font=font, fill=(255, 255, 255, alpha))
    return Image.alpha_composite(base, layer).convert("RGB")


def _border(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    f = float(p["fraction"])
    b = max(1, round(max(img.size) * f))
    return ImageOps.expand(img, border=b, fill=tuple(int(v) for v in p.get("colour", (255, 255, 255))))


def _screenshot(img: Image.Image, p: Mapping[str, Any], rng: np.random.Generator) -> Image.Image:
    """Shown at ``scale`` on a phone screen with status and navigation bars, then captured."""
    s = float(p["scale"])
    w, h = max(1, round(img.width * s)), max(1, round(img.height * s))
    shown = img.resize((w, h), Image.Resampling.BICUBIC)
    top, bottom = max(1, int(h * 0.06)), max(1, int(h * 0.10))
    canvas = Image.new("RGB", (w, h + top + bottom), (18, 18, 18))
    canvas.paste(shown, (0, top))
    d = ImageDraw.Draw(canvas)
    d.rectangle([0, h + top, w, h + top + bottom], fill=(245, 245, 245))
    d.text((max(0, w // 40), 0), "12:34", font=_font(max(6, top - 2)), fill=(255, 255, 255))
    return canvas


_KINDS: dict[str, Callable[[Image.Image, Mapping[str, Any], np.random.Generator], Image.Image]] = {
    "identity": _identity,
    "jpeg": _identity,
    "resize": _resize,
    "crop": _crop,
    "rotate": _rotate,
    "hflip": _hflip,
    "blur": _blur,
    "noise": _noise,
    "brightness": _brightness,
    "contrast": _contrast,
    "gamma": _gamma,
    "greyscale": _greyscale,
    "caption": _caption,
    "watermark": _watermark,
    "border": _border,
    "screenshot": _screenshot,
}


@dataclass(frozen=True)
class Perturbation:
    """One named, parameterised edit. ``everyday`` marks edits common in ordinary re-sharing."""

    name: str
    kind: str
    family: str
    label: str
    params: Mapping[str, Any] = field(default_factory=dict)
    everyday: bool = False

    def apply(
        self, img: Image.Image, rng: np.random.Generator, original_bytes: bytes | None = None
    ) -> tuple[Image.Image, bytes]:
        """The edited image as the client decodes it, and the delivered file bytes."""
        if self.kind not in _KINDS:
            raise ValueError(f"unknown perturbation kind {self.kind!r}")
        rgb = to_rgb(img)
        if self.kind == "identity":
            return rgb, original_bytes if original_bytes is not None else encode_ppm(rgb)
        out = to_rgb(_KINDS[self.kind](rgb, self.params, rng))
        if self.kind == "jpeg":
            return _jpeg(out, int(self.params["quality"]))
        if "jpeg_quality" in self.params:
            return _jpeg(out, int(self.params["jpeg_quality"]))
        return _lossless(out)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "label": self.label,
            "params": dict(self.params),
            "everyday": self.everyday,
        }


def _p(name: str, kind: str, family: str, label: str, everyday: bool = False, **params: Any) -> Perturbation:
    return Perturbation(name, kind, family, label, params, everyday)


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in [
        _p("identity", "identity", "control", "Unchanged file (control)", True),
        _p("jpeg-90", "jpeg", "compression", "Re-saved as JPEG quality 90", True, quality=90),
        _p("jpeg-70", "jpeg", "compression", "Re-saved as JPEG quality 70", True, quality=70),
        _p("jpeg-50", "jpeg", "compression", "Re-saved as JPEG quality 50", True, quality=50),
        _p("jpeg-30", "jpeg", "compression", "Re-saved as JPEG quality 30", False, quality=30),
        _p("resize-0.5", "resize", "scale", "Downscaled to half size", True, scale=0.5),
        _p("resize-0.25", "resize", "scale", "Downscaled to quarter size", False, scale=0.25),
        _p("crop-2", "crop", "geometry", "Cropped 2% (1% each side)", True, fraction=0.02),
        _p("crop-5", "crop", "geometry", "Cropped 5%", False, fraction=0.05),
        _p("crop-10", "crop", "geometry", "Cropped 10%", False, fraction=0.10),
        _p("rotate-2", "rotate", "geometry", "Rotated 2°", False, degrees=2.0),
        _p("rotate-5", "rotate", "geometry", "Rotated 5°", False, degrees=5.0),
        _p("rotate-90", "rotate", "geometry", "Rotated 90°", False, degrees=90.0),
        _p("hflip", "hflip", "geometry", "Mirrored left-right", False),
        _p("blur", "blur", "filter", "Gaussian blur (radius 2 px)", True, radius=2.0),
        _p("noise", "noise", "filter", "Sensor-like noise (σ = 10 grey levels)", True, sigma=10.0),
        _p("brightness", "brightness", "colour", "Brightness +30%", True, factor=1.3),
        _p("contrast", "contrast", "colour", "Contrast −30%", True, factor=0.7),
        _p("gamma", "gamma", "colour", "Gamma 1.6", True, gamma=1.6),
        _p("greyscale", "greyscale", "colour", "Converted to greyscale", True),
        _p(
            "caption",
            "caption",
            "overlay",
            "Meme-style caption text (10% of height)",
            True,
            size=0.10,
        ),
        _p(
            "watermark",
            "watermark",
            "overlay",
            "Tiled semi-transparent watermark",
            True,
            opacity=0.35,
        ),
        _p(
            "border",
            "border",
            "overlay",
            "White border, 10% of the longer side",
            False,
            fraction=0.10,
        ),
        _p(
            "screenshot",
            "screenshot",
            "overlay",
            "Phone screenshot (80% scale, UI bars, JPEG 80)",
            True,
            scale=0.8,
            jpeg_quality=80,
        ),
    ]
}


def select(names: list[str]) -> list[Perturbation]:
    """Perturbations by name, in registry order; ``["all"]`` means every one."""
    if names == ["all"]:
        return list(PERTURBATIONS.values())
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; choose from {sorted(PERTURBATIONS)}")
    chosen = [p for p in PERTURBATIONS.values() if p.name in names]
    if "identity" not in names:
        chosen.insert(0, PERTURBATIONS["identity"])  # the control is always run
    return chosen
