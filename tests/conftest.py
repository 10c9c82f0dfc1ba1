"""Shared fixtures: generated images and set directories; no network beyond loopback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from blindmatch.corpus import generate_image
from tests.sim_tiny import sim_tiny

__all__ = ["encode", "sim_tiny"]


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    return [generate_image(1000 + i) for i in range(8)]


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory, images: list[Image.Image]) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    for i, img in enumerate(images):
        (d / f"img{i}.png").write_bytes(encode(img))
    return d
