"""Shared fixtures: generated images (decoded and encoded) and random hash sets.

Random sets come from ``blindmatch.corpus.random_set`` (the one builder tests, benchmarks
and drills share); ``hash_set`` is the common 64-hash PDQ set for tests that only read it.

``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``). Tests
that share an expensive session object (the tiny simulation, the reliability
recordings, the shared he server) are put in one group each, so that object is built
once and not once per worker. Each session gets its own HOME, so nothing a test's
client pins or caches (trust on first use, key caches) outlives it or is shared; it is
removed at exit.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blindmatch.protocol import HashSet
from PIL import Image

from blindmatch.corpus import generate_image, random_set
from tests.sim_tiny import sim_tiny

__all__ = ["encode", "sim_tiny"]

_HOME = tempfile.mkdtemp(prefix="blindmatch-test-home-")
os.environ["HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, True)
# One cache folder per test session, shared by its xdist workers (they inherit it from the
# controller): he's noise-check reports and matplotlib's font list are machine facts, not
# client state, so each worker need not recompute them.
if "BLINDMATCH_TEST_CACHE" not in os.environ:
    os.environ["BLINDMATCH_TEST_CACHE"] = tempfile.mkdtemp(prefix="blindmatch-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BLINDMATCH_TEST_CACHE"], True)
os.environ["XDG_CACHE_HOME"] = os.environ["BLINDMATCH_TEST_CACHE"]

_SHARED_GROUPS = {"sim_tiny": "sim", "he_phash_server": "he-shared"}
_MODULE_GROUPS = {  # modules that share tests/_reliability.py's recordings
    "test_decoders_hypothesis": "reliability",
    "test_durability": "reliability",
    "test_fuzz": "reliability",
    "test_limits": "reliability",
    "test_secrets": "reliability",
    "test_soak": "reliability",
}


def pytest_itemcollected(item: pytest.Item) -> None:
    """One xdist group per shared session object (see the module docstring)."""
    module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    names = getattr(item, "fixturenames", ())
    group = _MODULE_GROUPS.get(module) or next((g for f, g in _SHARED_GROUPS.items() if f in names), None)
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


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
def he_phash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HashSet, Any]]:
    """One he server over 120 random pHashes, shared by the he security and adversary tests
    (its setup is seconds of key and worker start-up); tests that break a worker recover it."""
    from .he_helpers import open_server

    hs = random_set(120, "phash", seed=31)
    srv = open_server(tmp_path_factory, hs, "phash")
    yield hs, srv
    srv.close()


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory, encoded_images: list[bytes]) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    for i, body in enumerate(encoded_images):
        (d / f"img{i}.png").write_bytes(body)
    return d
