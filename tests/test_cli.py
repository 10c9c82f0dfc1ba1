"""The CLI as a user runs it: a real subprocess, JSON Lines out, one error line each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from blindmatch.server import LiveServer
from PIL import Image

from .conftest import encode

EXE = [sys.executable, "-m", "blindmatch.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=300)


def lines(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.splitlines() if ln.strip()]


def test_hash_folder_and_bad_files(image_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "good.png").write_bytes((image_dir / "img0.png").read_bytes())
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"definitely not a jpeg")
    r = run("hash", str(tmp_path))
    assert r.returncode == 1
    recs = lines(r.stdout)
    assert [Path(x["path"]).name for x in recs] == ["good.png"]
    assert set(recs[0]) == {"path", "algo", "hash", "quality"} and len(recs[0]["hash"]) == 64
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error: unreadable_image: ") for e in err)
    assert any("empty.png" in e for e in err) and any("junk.jpg" in e for e in err)


@pytest.mark.parametrize("algo,length", [("phash", 16), ("dhash", 16), ("sha256", 64)])
def test_hash_algos(image_dir: Path, algo: str, length: int) -> None:
    r = run("hash", "--algo", algo, str(image_dir / "img1.png"))
    assert r.returncode == 0, r.stderr
    assert len(lines(r.stdout)[0]["hash"]) == length


def test_hash_dihedral(image_dir: Path) -> None:
    r = run("hash", "--dihedral", str(image_dir / "img1.png"))
    assert r.returncode == 0 and len(lines(r.stdout)[0]["dihedral"]) == 8


def test_unknown_algo_is_one_line_exit_2(image_dir: Path) -> None:
    r = run("hash", "--algo", "md5", str(image_dir))
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "md5" in r.stderr


def test_db_build_from_hash_lists(tmp_path: Path) -> None:
    good = "a" * 64
    (tmp_path / "list.txt").write_text(f"{good}\n# comment\n\n{'b' * 64}\nnot-a-hash\n")
    (tmp_path / "list.csv").write_text(f"id,hash\n1,{'c' * 64}\n2,{'d' * 63}\n")
    r = run("db", "build", "--algo", "pdq", "--from", str(tmp_path / "list.txt"),
            "--out", str(tmp_path / "s1"))
    assert r.returncode == 2 and "list.txt:5" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s1" / "set.json").exists()
    r = run("db", "build", "--algo", "pdq", "--skip-bad", "--from", str(tmp_path / "list.txt"),
            "--from", str(tmp_path / "list.csv"), "--out", str(tmp_path / "s2"))
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout)[0]["count"] == 3
    assert "list.csv:3" in r.stderr and "list.txt:5" in r.stderr
    info = run("db", "info", str(tmp_path / "s2"))
    assert lines(info.stdout)[0]["digest"] == lines(r.stdout)[0]["digest"]


def test_db_build_refuses_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n")
    r = run("db", "build", "--from", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "empty" in r.stderr
    r = run("db", "build", "--from", str(tmp_path / "nope"), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "nope" in r.stderr
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    r = run("db", "build", "--from", str(tmp_path / "bin.txt"), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_build_serve_scan_plain(image_dir: Path, images: list[Image.Image], tmp_path: Path) -> None:
    known = tmp_path / "known"
    known.mkdir()
    for i in range(3):
        (known / f"k{i}.png").write_bytes(encode(images[i]))
    r = run("db", "build", "--from", str(known), "--out", str(tmp_path / "set"))
    assert r.returncode == 0, r.stderr
    q = tmp_path / "q"
    q.mkdir()
    (q / "copy.jpg").write_bytes(encode(images[0], "JPEG", quality=90))
    (q / "other.png").write_bytes(encode(images[7]))
    (q / "broken.png").write_bytes(b"\x89PNG broken")
    with LiveServer(tmp_path / "set") as srv:
        r = run("scan", "--server", srv.url, "--protocol", "plain",
                "--cache-dir", str(tmp_path / "c"), str(q))
    assert r.returncode == 1
    recs = {Path(x["path"]).name: x for x in lines(r.stdout)}
    assert recs["copy.jpg"]["matched"] is True and recs["other.png"]["matched"] is False
    for rec in recs.values():
        fields = {"path", "protocol", "algo", "matched", "distance", "client_ms", "bytes_up", "bytes_down"}
        assert fields <= set(rec)
    assert "broken.png" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_scan_unreachable_server_and_unknown_protocol(image_dir: Path) -> None:
    r = run("scan", "--server", "http://127.0.0.1:9", str(image_dir / "img0.png"))
    assert r.returncode == 1 and "transport_error" in r.stderr
    r = run("scan", "--server", "http://127.0.0.1:9", "--protocol", "nope", str(image_dir / "img0.png"))
    assert r.returncode == 2 and "unknown_protocol" in r.stderr


def test_serve_refuses_corrupt_set(tmp_path: Path) -> None:
    r = run("serve", "--db", str(tmp_path / "missing"))
    assert r.returncode == 2 and "missing" in r.stderr


def test_db_rotate_and_info(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("\n".join(f"{i:064x}" for i in range(1, 30)))
    assert run("db", "build", "--from", str(tmp_path / "l.txt"), "--out", str(tmp_path / "s")).returncode == 0
    r1 = run("db", "rotate", str(tmp_path / "s"), "--grace-seconds", "60")
    r2 = run("db", "rotate", str(tmp_path / "s"))
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    e1, e2 = lines(r1.stdout)[0], lines(r2.stdout)[0]
    assert e2["epoch"] == e1["epoch"] + 1 and e1["root_digest"] != e2["root_digest"]
    info = lines(run("db", "info", str(tmp_path / "s")).stdout)[0]
    assert info["oprf"]["current"] == e2["epoch"]
    assert all("secret" not in k and "private" not in k for ep in info["oprf"]["epochs"] for k in ep)
    assert run("db", "rotate", str(tmp_path / "missing")).returncode == 2
