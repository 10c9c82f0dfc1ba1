"""Perturbations on odd inputs, and the decision functions against brute force."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from blindmatch.client import decode_image, get_algo, hash_bytes, hash_image
from blindmatch.protocol import ProbeError
from blindmatch.protocol.multiprobe import least_stable_bits, probe_rows
from blindmatch.sim.decide.rules import (
    DecisionSpec,
    ExactIndex,
    nearest_distances,
    prefix_nearest,
    to_words,
)
from blindmatch.sim.perturb.edits import PERTURBATIONS, encode_ppm, select
from PIL import Image

from blindmatch.corpus import generate_image


def _odd_images() -> dict[str, Image.Image]:
    rgba = Image.new("RGBA", (3, 2), (10, 200, 30, 0))
    pal = Image.new("P", (1, 100))
    i16 = Image.fromarray((np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype("<u2"))
    return {
        "1x1 RGB": Image.new("RGB", (1, 1), (255, 0, 0)),
        "1x100 palette": pal,
        "3x2 transparent RGBA": rgba,
        "greyscale L": Image.new("L", (17, 9), 128),
        "16-bit I;16": i16,
        "all black": Image.new("RGB", (64, 48)),
        "very wide": Image.new("RGB", (2000, 3), (1, 2, 3)),
        "photo-like": generate_image(7),
    }


@pytest.mark.parametrize("pname", list(PERTURBATIONS))
def test_every_perturbation_handles_odd_inputs(pname: str) -> None:
    p = PERTURBATIONS[pname]
    for label, img in _odd_images().items():
        out, data = p.apply(img, np.random.default_rng(0))
        assert out.mode == "RGB" and out.width >= 1 and out.height >= 1, (pname, label)
        assert data, (pname, label)
        # the delivered file decodes to exactly the pixels the client hashes
        back = decode_image(data, label)
        assert back.size == out.size
        assert np.array_equal(np.asarray(back), np.asarray(out)), (pname, label)
        # and every hasher accepts it (SHA-256 over the file, perceptual over pixels)
        for a in ("pdq", "phash", "dhash"):
            hash_image(out, a)
        hash_bytes(data, "sha256")


@pytest.mark.parametrize("pname", list(PERTURBATIONS))
def test_perturbations_are_deterministic_and_do_something(pname: str) -> None:
    img = generate_image(11)
    p = PERTURBATIONS[pname]
    a, da = p.apply(img, np.random.default_rng(5), encode_ppm(img))
    _, db = p.apply(img, np.random.default_rng(5), encode_ppm(img))
    assert da == db
    if pname == "identity":
        assert da == encode_ppm(img)
    else:
        same_size = a.size == img.size
        assert not same_size or not np.array_equal(np.asarray(a), np.asarray(img)), pname


def test_jpeg_quality_orders_file_size() -> None:
    img = generate_image(3)
    sizes = [
        len(PERTURBATIONS[f"jpeg-{q}"].apply(img, np.random.default_rng(0))[1]) for q in (90, 70, 50, 30)
    ]
    assert sizes == sorted(sizes, reverse=True)


def test_select() -> None:
    assert [p.name for p in select(["all"])] == list(PERTURBATIONS)
    assert [p.name for p in select(["jpeg-70", "hflip"])] == ["identity", "jpeg-70", "hflip"]
    with pytest.raises(ValueError, match="unknown perturbation"):
        select(["jpeg-71"])


def test_ppm_is_a_real_image_file() -> None:
    img = generate_image(4)
    back = Image.open(io.BytesIO(encode_ppm(img)))
    assert back.format == "PPM" and np.array_equal(np.asarray(back.convert("RGB")), np.asarray(img))


# ------------------------------------------------------------- decision functions


def test_nearest_and_prefix_nearest_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    db = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    q = rng.integers(0, 256, (25, 32), dtype=np.uint8)
    q[3] = db[17]
    brute = np.array([[int(np.unpackbits(a ^ b).sum()) for b in db] for a in q])
    got = nearest_distances(to_words(db), to_words(q), budget_words=64)
    assert np.array_equal(got, brute.min(axis=1)) and got[3] == 0
    pre = prefix_nearest(to_words(db), to_words(q), [10, 100, 300], chunk=7)
    for j, b in enumerate([10, 100, 300]):
        assert np.array_equal(pre[:, j], brute[:, :b].min(axis=1))


def test_exact_index() -> None:
    rng = np.random.default_rng(1)
    db = rng.integers(0, 256, (500, 8), dtype=np.uint8)
    idx = ExactIndex(db)
    assert idx.contains(db[::7]).all()
    other = rng.integers(0, 256, (200, 8), dtype=np.uint8)
    expected = [any((o == d).all() for d in db) for o in other]
    assert idx.contains(other).tolist() == expected


def test_probes_flip_the_least_stable_bits() -> None:
    floats = np.linspace(-1, 1, 256).astype(np.float32)
    floats[[5, 77, 200]] = [0.0001, -0.0002, 0.0003]
    med = float(np.median(floats))
    order = least_stable_bits(floats, 3)
    assert set(order) == set(np.argsort(np.abs(floats - med))[:3].tolist())
    raw = np.zeros(32, dtype=np.uint8)
    probes = probe_rows(raw, floats, 3)
    assert len(probes) == 8 and len({p.tobytes() for p in probes}) == 8
    flipped = {tuple(np.flatnonzero(np.unpackbits(p))) for p in probes}
    expected = {tuple(sorted(c)) for r in range(4) for c in itertools.combinations(order, r)}
    assert flipped == expected
    assert np.array_equal(probe_rows(raw, None, 0), raw[None, :])
    with pytest.raises(ProbeError):  # protocol.multiprobe's one rule: no float values, no probes
        probe_rows(raw, None, 3)


def test_decision_specs() -> None:
    pdq = get_algo("pdq")
    rng = np.random.default_rng(2)
    db = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    floats = rng.standard_normal((4, 256)).astype(np.float32)
    q = np.repeat(db[:1], 4, axis=0)
    # query 1: flip its least-stable bit -> found by k=1 probes, not by k=0
    b = least_stable_bits(floats[1], 1)[0]
    q[1, b // 8] ^= 0x80 >> (b % 8)
    # query 2: flip a stable bit -> found by neither
    s = int(np.argsort(np.abs(floats[2] - np.median(floats[2])))[-1])
    q[2, s // 8] ^= 0x80 >> (s % 8)
    q[3] = rng.integers(0, 256, 32, dtype=np.uint8)
    near = nearest_distances(to_words(db), to_words(q))
    idx = ExactIndex(db)
    assert DecisionSpec("exact").verdicts(q, floats, near, idx).tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert DecisionSpec("exact", probe_bits=1).verdicts(q, floats, near, idx).tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert DecisionSpec("fuzzy", radius=31).verdicts(q, floats, near, idx).tolist() == [
        True,
        True,
        True,
        False,
    ]
    assert "exactly" in DecisionSpec("exact").describe(pdq)
