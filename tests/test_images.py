from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from blindmatch.client import decode_image, hash_bytes, hash_file, load_image
from blindmatch.protocol import ImageTooLargeError, UnreadableImageError
from PIL import Image

from .conftest import encode


def test_jpeg_q90_within_pdq_threshold(images: list[Image.Image]) -> None:
    for img in images:
        a = hash_bytes(encode(img, "PNG"))
        b = hash_bytes(encode(img, "JPEG", quality=90))
        assert a.hash.distance(b.hash) <= 31


def test_unrelated_images_far_apart(images: list[Image.Image]) -> None:
    hs = [hash_bytes(encode(img)).hash for img in images]
    ds = [hs[i].distance(hs[j]) for i in range(len(hs)) for j in range(i + 1, len(hs))]
    assert min(ds) > 62  # twice the match threshold
    assert 100 < float(np.mean(ds)) < 156


@pytest.mark.parametrize("algo", ["phash", "dhash"])
def test_64bit_hashes_robust_to_jpeg(images: list[Image.Image], algo: str) -> None:
    for img in images[:4]:
        a = hash_bytes(encode(img), algo).hash
        b = hash_bytes(encode(img, "JPEG", quality=90), algo).hash
        assert a.distance(b) <= 10


def _modes(img: Image.Image) -> dict[str, bytes]:
    small = img.resize((160, 120))
    arr16 = (np.asarray(small.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    rgba = small.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(small.size))
    frames = [small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    return {
        "L": encode(small.convert("L")),
        "1": encode(small.convert("1")),
        "P": encode(small.convert("P")),
        "RGBA": encode(rgba),
        "LA": encode(rgba.convert("LA")),
        "CMYK": encode(small.convert("CMYK"), "JPEG"),
        "I;16": encode(Image.fromarray(arr16)),
        "I": encode(Image.fromarray(arr16.astype(np.int32)), "TIFF"),
        "F": encode(Image.fromarray(arr16.astype(np.float32)), "TIFF"),
        "GIF-animated": gif.getvalue(),
        "WEBP": encode(small, "WEBP"),
        "BMP": encode(small, "BMP"),
    }


@pytest.mark.parametrize("mode", list(_modes(Image.new("RGB", (8, 8))).keys()))
@pytest.mark.parametrize("algo", ["pdq", "phash", "dhash", "sha256"])
def test_every_odd_mode_hashes(images: list[Image.Image], mode: str, algo: str) -> None:
    data = _modes(images[0])[mode]
    h = hash_bytes(data, algo)
    assert len(h.hash.raw) == h.algo.nbytes
    if algo == "pdq":
        assert 0 <= (h.quality or 0) <= 100


def test_greyscale_and_16bit_hash_like_their_rgb(images: list[Image.Image]) -> None:
    small = images[1].resize((200, 150)).convert("L")
    ref = hash_bytes(encode(small.convert("RGB"))).hash
    arr16 = (np.asarray(small, dtype=np.uint16) * 257).astype(np.uint16)
    assert hash_bytes(encode(small)).hash.distance(ref) <= 2
    assert hash_bytes(encode(Image.fromarray(arr16))).hash.distance(ref) <= 8


def test_alpha_flattened_on_white() -> None:
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgb = decode_image(encode(img))
    assert rgb.mode == "RGB" and rgb.getpixel((10, 10)) == (255, 255, 255)


def test_exif_orientation_applied(images: list[Image.Image]) -> None:
    img = images[2].resize((240, 160))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    rotated_file = encode(img.rotate(90, expand=True), "JPEG", quality=95, exif=exif.tobytes())
    upright = hash_bytes(encode(img, "JPEG", quality=95)).hash
    # orientation 6 makes the decoder rotate the stored pixels back upright
    assert decode_image(rotated_file).size == (240, 160)
    assert hash_bytes(rotated_file).hash.distance(upright) <= 12


def test_large_images_downscaled_for_pdq(images: list[Image.Image]) -> None:
    big = images[3].resize((1600, 1200))
    a = hash_bytes(encode(big)).hash
    b = hash_bytes(encode(images[3].resize((512, 384)))).hash
    assert a.distance(b) <= 10


def test_dihedral_variants_match_flips(images: list[Image.Image]) -> None:
    img = images[4].resize((256, 256))
    h = hash_bytes(encode(img), dihedral=True)
    flipped = hash_bytes(encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))).hash
    assert h.dihedral is not None and len(h.dihedral) == 8
    assert min(d.distance(flipped) for d in h.dihedral) <= 31
    assert h.hash.distance(flipped) > 31


@pytest.mark.parametrize(
    "content,err",
    [
        (b"", UnreadableImageError),
        (b"not an image at all", UnreadableImageError),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, UnreadableImageError),
    ],
)
def test_bad_bytes_typed(content: bytes, err: type[Exception]) -> None:
    with pytest.raises(err):
        decode_image(content, "x")


def test_truncated_files_typed(images: list[Image.Image], tmp_path: Path) -> None:
    for fmt in ("PNG", "JPEG", "WEBP"):
        data = encode(images[0], fmt)
        p = tmp_path / f"t.{fmt.lower()}"
        p.write_bytes(data[: len(data) // 2])
        with pytest.raises(UnreadableImageError) as e:
            hash_file(p)
        assert str(p) in str(e.value)


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError):
        load_image(tmp_path / "nope.png")
    with pytest.raises(UnreadableImageError):
        load_image(tmp_path)
    with pytest.raises(UnreadableImageError):
        hash_file(tmp_path / "nope.bin", "sha256")


def test_decompression_bomb_refused() -> None:
    big = Image.new("L", (9000, 9000))  # 81 MP > 64 MP limit; PNG compresses it to ~80 KB
    data = encode(big)
    assert len(data) < 1_000_000
    with pytest.raises(ImageTooLargeError):
        decode_image(data, "bomb.png")
    with pytest.raises(ImageTooLargeError):
        decode_image(encode(Image.new("L", (2000, 2000))), "small-limit", max_pixels=1_000_000)


def test_sha256_exact_file_bytes(tmp_path: Path) -> None:
    import hashlib

    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    assert hash_file(p, "sha256").hash.hex == hashlib.sha256(b"hello").hexdigest()
