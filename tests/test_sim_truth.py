"""Simulator truth on real photographs: copy pairs, dihedral matching, the edit pipeline, the digest.

The corpus is the handful of real photographs that scikit-image and matplotlib
ship (``blindmatch.photos``); copy pairs are made from other photographs of the
same sets, as re-sharing makes them. One simulator run with ``--pairs`` feeds
most tests here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pdqhash
import pytest
from blindmatch.client import dihedral_hashes, hash_file, load_image
from blindmatch.sim.config import load_config
from blindmatch.sim.hashing.images import corpus_spec, hash_originals_task, hash_perturbed_task
from blindmatch.sim.hashing.pairs import PairsFileError, read_pairs
from blindmatch.sim.report.schema import validate
from blindmatch.sim.runner import run_simulation
from rich.console import Console

from blindmatch.photos import PHOTO_NAMES, write_copy_pairs, write_photos

REFS = ("astronaut", "coffee", "chelsea", "rocket", "grace_hopper", "motorcycle_left")

SMALL = """
[run]
workers = 0
chunk_images = 4
protocols = ["plain"]

[corpus]
images = 14
known = 6
pair_sample = 1000

[perturb]
names = ["jpeg-70", "resize-0.5", "hflip", "rotate-90"]

[database]
sizes = [200, 2000]

[accuracy]
verify_set_size = 200
verify_local = 8
verify_http = 0
verify_min = 3
verify_budget_s = 20
protocol_budget_s = 60

[cost]
sizes = [200]
http_sizes = []
min_queries = 2
max_queries = 4
budget_s = 0.2

[network]
samples = 300
reference_set_size = 200

[evasion]
images = 1
max_queries = 10
algos = ["pdq"]

[report]
figures = false
"""


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("photos")
    corpus = [n for n in PHOTO_NAMES if n not in REFS]
    write_photos(root / "corpus", corpus)
    refs = write_photos(root / "refs", REFS)
    csv_path = write_copy_pairs(refs, root / "pairs")
    return {"root": root, "corpus": root / "corpus", "pairs": csv_path}


def config(tmp: Path, text: str = SMALL, name: str = "c.toml", **kw: Any) -> dict[str, Any]:
    p = tmp / name
    p.write_text(text)
    return load_config(p, seed=1, **kw)


@pytest.fixture(scope="module")
def run(photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("run")
    cfg = config(tmp)
    out = tmp / "out"
    res = run_simulation(cfg, out, corpus_dir=photos["corpus"], console=quiet(), pairs_csv=photos["pairs"])
    return out, res


# ------------------------------------------------------------------ dihedral


def test_dihedral_hashes_from_floats_equal_pdqhash(photos: dict[str, Path]) -> None:
    for p in sorted(photos["corpus"].glob("*.jpg"))[:6]:
        h = hash_file(p, "pdq", dihedral=True)
        assert h.dihedral is not None and h.float_values is not None
        mine = dihedral_hashes(np.asarray(h.float_values))
        assert [bytes(mine[t]) for t in range(8)] == [d.raw for d in h.dihedral], p.name
        arr = np.asarray(load_image(p).convert("RGB"))
        if max(arr.shape[:2]) <= 512:  # hash_file downscales larger images first, pdqhash does not
            ref, _ = pdqhash.compute_dihedral(np.ascontiguousarray(arr))
            assert bytes(mine[0]) == bytes(np.packbits(ref[0].astype(np.uint8)))


def test_dihedral_variant_finds_mirrored_and_rotated_copies(run: tuple[Path, dict[str, Any]]) -> None:
    _, res = run
    labels = {v["label"]: v for p in res["protocols"] for v in p["variants"]}
    assert labels["plain dihedral"]["dihedral"] and not labels["plain"]["dihedral"]
    fn = {(c["variant"], c["algo"], c["perturbation"]): c for c in res["accuracy"]["fnmr"]}
    for pert in ("hflip", "rotate-90"):
        assert fn[("plain dihedral", "pdq", pert)]["k"] < fn[("plain", "pdq", pert)]["k"], pert
    assert ("plain dihedral", "phash", "hflip") not in fn  # PDQ only
    copies = {(c["variant"], c["label"]): c for c in res["real_copies"]["cells"] if c["algo"] == "pdq"}
    assert copies[("plain", "mirrored")]["recall"] == 0.0
    assert copies[("plain dihedral", "mirrored")]["recall"] == 1.0
    # 8 hashes per image: 8x the bytes, and the model's per-pair rate 8x
    cells = {c["variant"]: c for c in res["cost"]["cells"] if c["status"] == "ok"}
    assert cells["plain dihedral"]["bytes_up"] == pytest.approx(8 * cells["plain"]["bytes_up"])
    pop = {(r["variant"], r["set_size"]): r for r in res["population"]}
    one, eight = (pop[(v, 10**6)]["pair_rate_upper95"] for v in ("plain", "plain dihedral"))
    assert eight == pytest.approx(1 - (1 - one) ** 8, rel=1e-9) and eight > one
    ver = {(r["variant"], r["algo"]): r for r in res["verification"]}
    assert ver[("plain dihedral", "pdq")]["verified"]
    assert ("plain dihedral", "phash") not in ver


# ------------------------------------------------------------------ real copy pairs


def test_real_copies_table(run: tuple[Path, dict[str, Any]]) -> None:
    out, res = run
    rc = res["real_copies"]
    assert rc["pairs"] == 24 and rc["references"] == 6
    assert rc["labels"] == {"jpeg-q50": 6, "mirrored": 6, "resized": 6, "screenshot": 6}
    assert validate(res) == []
    pdq = {(c["variant"], c["label"]): c for c in rc["cells"] if c["algo"] == "pdq"}
    assert pdq[("plain", "jpeg-q50")]["recall"] == 1.0  # re-encoding keeps PDQ within 31 bits
    assert pdq[("plain", "all real copies")]["n"] == 24
    sha = {(c["variant"], c["label"]): c for c in rc["cells"] if c["algo"] == "sha256"}
    assert sha[("plain", "all real copies")]["recall"] == 0.0  # every copy is a different file
    # the real protocol saw real copies in its verification sample, and agreed
    v = next(r for r in res["verification"] if r["variant"] == "plain" and r["algo"] == "pdq")
    assert v["local"]["kinds"].get("real copy", 0) > 0 and v["local"]["disagree"] == 0
    for f in ("summary.md", "report.html"):
        text = (out / f).read_text()
        assert "Real copies" in text and "mirrored" in text, f
    assert (out / "tables" / "real_copies.csv").read_text().count("\n") == len(rc["cells"]) + 1


def _bad(tmp: Path, text: str) -> Path:
    p = tmp / "pairs.csv"
    p.write_text(text)
    return p


def test_bad_pair_rows_name_their_line(photos: dict[str, Path], tmp_path: Path) -> None:
    ref = (photos["root"] / "refs" / "astronaut.jpg").resolve()
    q = (photos["root"] / "pairs" / "astronaut-resized.jpg").resolve()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not an image")
    cases = {
        f"query,reference\n{q},{ref}\n{q}\n": r":3: expected 2 or 3 columns",
        f"{q},{ref},a,b\n": r":1: expected 2 or 3 columns",
        f"# comment\n\n{q},missing.jpg,x\n": r":3: reference 'missing.jpg' is not a file",
        f"{q},{ref}\n,{ref}\n": r":2: empty query path",
        "query,reference,label\n": "no pairs",
    }
    for text, pattern in cases.items():
        with pytest.raises(PairsFileError, match=pattern):
            read_pairs(_bad(tmp_path, text))
    with pytest.raises(PairsFileError, match="no such pairs file"):
        read_pairs(tmp_path / "absent.csv")
    # relative paths are taken from the CSV's folder; labels default to "unlabelled"
    (tmp_path / "sub").mkdir()
    rel = _bad(tmp_path / "sub", f"../broken.jpg,{ref}\n")
    assert read_pairs(rel)[0].label == "unlabelled"
    # an undecodable image is a bad row too, reported by the CLI as one line on stderr
    r = subprocess.run(
        [sys.executable, "-m", "blindmatch.cli", "sim", "run", "--quick", "--out", str(tmp_path / "o"),
         "--corpus", str(photos["corpus"]), "--pairs", str(rel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode != 0
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: bad_pairs_file:") and "pairs.csv:1:" in err[0], (
        r.stderr
    )


# ------------------------------------------------------------------ perturbation pipeline


def test_set_is_hashed_as_db_build_does(photos: dict[str, Path], tmp_path: Path) -> None:
    """The simulator's set hashes equal `blindmatch db build`'s for the same images, per algorithm."""
    spec = corpus_spec(1, 0, photos["corpus"])
    algos = ["pdq", "phash", "dhash", "sha256"]
    orig = hash_originals_task({"spec": spec, "indices": list(range(len(spec["paths"]))), "algos": algos})
    for a in algos:
        out = tmp_path / f"set-{a}"
        r = subprocess.run(
            [sys.executable, "-m", "blindmatch.cli", "db", "build", "--out", str(out),
             "--from", str(photos["corpus"]), "--algo", a],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        blob = (out / "hashes.bin").read_bytes()
        n = len(blob) // orig[f"hash_{a}"].shape[1]
        built = {blob[i * (len(blob) // n) : (i + 1) * (len(blob) // n)] for i in range(n)}
        keep = orig["quality"] >= 50 if a == "pdq" else np.ones(len(spec["paths"]), dtype=bool)
        mine = {bytes(h) for h in orig[f"hash_{a}"][keep & orig["ok"]]}
        assert mine == built, a


def test_edit_resolution_changes_copies_not_the_set(photos: dict[str, Path]) -> None:
    spec = corpus_spec(1, 0, photos["corpus"])
    big = [i for i, p in enumerate(spec["paths"]) if max(load_image(p).size) > 600][:2]
    assert big
    base = {
        "spec": spec,
        "indices": big,
        "algos": ["pdq", "sha256"],
        "perturbations": ["identity", "jpeg-70"],
    }
    full = hash_perturbed_task({**base, "seed": 1, "resolution": "full", "max_side": 640})
    small = hash_perturbed_task({**base, "seed": 1, "resolution": "downscaled", "max_side": 200})
    orig = hash_originals_task({"spec": spec, "indices": big, "algos": ["pdq", "sha256"]})
    for arrays in (full, small):  # the unchanged file is the original in both pipelines
        assert (arrays["hash_pdq"][:, 0] == orig["hash_pdq"]).all()
        assert (arrays["hash_sha256"][:, 0] == orig["hash_sha256"]).all()
    assert (full["hash_pdq"][:, 1] != small["hash_pdq"][:, 1]).any()


def test_report_states_the_edit_pipeline(
    run: tuple[Path, dict[str, Any]], photos: dict[str, Path], tmp_path: Path
) -> None:
    out, res = run
    assert res["perturbation_pipeline"]["resolution"] == "full"
    assert "full-resolution decoded original" in (out / "report.html").read_text()
    cfg = config(tmp_path, perturb_resolution="downscaled")
    assert cfg["perturb"]["resolution"] == "downscaled"
    from blindmatch.sim.config import SimConfigError

    with pytest.raises(SimConfigError, match="resolution"):
        config(tmp_path, perturb_resolution="huge")


# ------------------------------------------------------------------ reproducible digest


def test_digest_does_not_depend_on_the_verification_budget(photos: dict[str, Path], tmp_path: Path) -> None:
    """A budget that cuts checks short changes the sample, never the deterministic digest."""
    text = SMALL.replace("verify_local = 8", "verify_local = 40").replace(
        'names = ["jpeg-70"', 'names = ["jpeg-50"'
    )
    roomy = config(tmp_path, text, "roomy.toml")
    tight = json.loads(json.dumps(roomy))
    tight["accuracy"]["verify_budget_s"] = 0.0
    a = run_simulation(roomy, tmp_path / "roomy", corpus_dir=photos["corpus"], console=quiet())
    b = run_simulation(tight, tmp_path / "tight", corpus_dir=photos["corpus"], console=quiet())
    na = sum(r["local"]["n"] - r["local"]["unavailable"] for r in a["verification"])
    nb = sum(r["local"]["agree"] + r["local"]["disagree"] for r in b["verification"])
    assert nb < na  # the budget did cut the sample
    assert all(r["local"]["fixed"]["n"] == 3 for r in a["verification"] + b["verification"])
    assert a["deterministic_digest"] == b["deterministic_digest"]


# ------------------------------------------------------------------ any corpus


def _corpus(kind: str, folder: Path) -> Path:
    """The matrix of awkward corpora a researcher may point --corpus at."""
    from PIL import Image

    folder.mkdir(parents=True)
    if kind == "tiny":
        write_photos(folder, ["camera", "coffee"])
    elif kind == "below-quality-gate":  # flat images: PDQ quality far below 50
        for i, colour in enumerate([(0, 0, 0), (255, 255, 255), (128, 64, 32), (10, 200, 90)]):
            Image.new("RGB", (200 + 10 * i, 150), colour).save(folder / f"flat{i}.png")
        grad = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (120, 1))
        Image.fromarray(grad).convert("RGB").save(folder / "gradient.png")
    elif kind == "one-image":
        write_photos(folder, ["rocket"])
    elif kind == "duplicates":
        (src,) = write_photos(folder, ["coins"])
        for i in range(4):
            (folder / f"copy{i}.jpg").write_bytes(src.read_bytes())
    return folder


MATRIX = ("tiny", "below-quality-gate", "one-image", "duplicates")


@pytest.mark.parametrize("kind", MATRIX)
def test_any_corpus_gives_a_report(kind: str, tmp_path: Path, photos: dict[str, Path]) -> None:
    """Every stage copes with the corpus; the outputs exist and say what was skipped."""
    from tests.sim_test_protocols import ExactPlain, RevealPlain, registered

    text = SMALL.replace('protocols = ["plain"]', 'protocols = ["plain", "test-exact", "test-reveal"]')
    text += "\n[protocols.test-reveal]\nserver_options = { threshold = 2 }\n"
    cfg = config(tmp_path, text)
    folder = _corpus(kind, tmp_path / kind)
    out = tmp_path / "out"
    with registered(ExactPlain(), RevealPlain()):
        res = run_simulation(cfg, out, corpus_dir=folder, console=quiet(), pairs_csv=photos["pairs"])
    for f in ("report.html", "results.json", "summary.md"):
        assert (out / f).stat().st_size > 0, f
    assert validate(json.loads((out / "results.json").read_text())) == []
    whats = " | ".join(s["what"] for s in res["skipped"])
    if kind == "below-quality-gate":
        assert res["corpus"]["known"] == 0 and "FNMR" in whats
        assert "Skipped on this corpus" in (out / "summary.md").read_text()
    if kind == "one-image":
        assert res["corpus"]["unrelated"] == 0 and "FMR" in whats and "distance distribution" in whats
    if kind == "duplicates":
        assert res["corpus"]["distances"]["pdq"]["min_distance"] == 0
    assert res["real_copies"]["pairs"] == 24  # real copies are measured whatever the corpus


def test_empty_corpus_folder_is_a_typed_error(tmp_path: Path) -> None:
    from blindmatch.sim.config import SimConfigError

    (tmp_path / "empty").mkdir()
    with pytest.raises(SimConfigError, match="found no JPEG/PNG/WebP"):
        run_simulation(config(tmp_path), tmp_path / "out", corpus_dir=tmp_path / "empty", console=quiet())
