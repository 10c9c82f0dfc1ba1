"""Bounded atheris run of every fuzz family. Longer: ``python fuzz/run.py --seconds 600``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 3  # per family in the default suite; the reliability command runs 30 s each


def test_atheris_imports() -> None:
    """atheris is in the test extra and must work on this Python (it does on 3.11 here)."""
    import atheris

    assert hasattr(atheris, "Fuzz")


def test_every_family_fuzzes_without_findings(tmp_path: Path) -> None:
    from ._reliability import prepared

    out = tmp_path / "fuzz.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), "--seconds", str(SECONDS), "--json", str(out),
         "--artifacts", str(tmp_path / "artifacts"), "--prepared", str(prepared())],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert out.exists(), r.stdout + r.stderr
    results = json.loads(out.read_text())
    fams = subprocess.run([sys.executable, str(ROOT / "fuzz" / "run.py"), "--list"],
                          capture_output=True, text=True, cwd=ROOT).stdout.split()
    assert {x["family"] for x in results} == set(fams)
    for x in results:
        assert x["executions"] > 0, x  # HE handlers take seconds: few executions in 3 s
    bad = [x for x in results if x["findings"]]
    assert not bad, "\n\n".join(f"{x['family']}:\n{x['detail']}" for x in bad)
    assert r.returncode == 0


@pytest.mark.parametrize("family", ["wire", "hashlist"])
def test_targets_reject_a_planted_bug(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness can fail: a decoder that raises a bare exception is reported as a finding."""
    sys.path.insert(0, str(ROOT / "fuzz"))
    import targets

    t = targets.build(family)
    if family == "wire":
        import blindmatch.protocol.wire as w

        monkeypatch.setattr(w, "decode_fields", lambda *a, **k: (_ for _ in ()).throw(IndexError("planted")))
        t = targets.build(family)
    else:
        import blindmatch.cli as c

        monkeypatch.setattr(c, "read_hash_file", lambda *a, **k: [][1])
        t = targets.build(family)
    with pytest.raises(IndexError):
        t(t.seeds[0])
