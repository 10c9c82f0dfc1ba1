"""Shared fixtures: generated images (decoded and encoded) and random hash sets.

Random sets come from ``blindmatch.corpus.random_set`` (the one builder tests, benchmarks
and drills share); ``hash_set`` is the common 64-hash PDQ set for tests that only read it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from blindmatch.protocol import HashSet
from PIL import Image

from blindmatch.corpus import generate_image, random_set


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    return [generate_image(1000 + i) for i in range(8)]


@pytest.fixture(scope="session")
def encoded_images(images: list[Image.Image]) -> list[bytes]:
    """The same images as PNG bytes, as a client receives them."""
    return [encode(img) for img in images]


@pytest.fixture(scope="session")
def hash_set() -> HashSet:
    """64 random PDQ hashes (seed 7); read-only: build a fresh one with ``random_set`` to mutate."""
    return random_set(64, seed=7)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory, encoded_images: list[bytes]) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    for i, body in enumerate(encoded_images):
        (d / f"img{i}.png").write_bytes(body)
    return d
