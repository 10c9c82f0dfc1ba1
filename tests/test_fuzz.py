"""A fixed-count atheris run of every fuzz family. Longer: ``python fuzz/run.py --seconds 600``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Inputs per family in the default suite (libFuzzer seed 1), not a time: an he input is a full
# homomorphic evaluation, so its family gets few. The reliability command runs 30 s each.
RUNS = {"proto-he": 4}
DEFAULT_RUNS = 300


def test_atheris_imports() -> None:
    """atheris is in the test extra and must work on this Python (it does on 3.11 here)."""
    import atheris

    assert hasattr(atheris, "Fuzz")


def test_every_family_fuzzes_without_findings(tmp_path: Path) -> None:
    from ._reliability import prepared

    fams = subprocess.run([sys.executable, str(ROOT / "fuzz" / "run.py"), "--list"],
                          capture_output=True, text=True, cwd=ROOT).stdout.split()
    results, codes = [], []
    for runs in sorted({RUNS.get(f, DEFAULT_RUNS) for f in fams}):
        group = [f for f in fams if RUNS.get(f, DEFAULT_RUNS) == runs]
        out = tmp_path / f"fuzz-{runs}.json"
        r = subprocess.run(
            [sys.executable, str(ROOT / "fuzz" / "run.py"), "--runs", str(runs), "--seconds", "600",
             "--json", str(out), "--artifacts", str(tmp_path / "artifacts"), "--prepared", str(prepared()),
             "--only", *group],
            capture_output=True, text=True, timeout=900, cwd=ROOT,
        )
        assert out.exists(), r.stdout + r.stderr
        results += json.loads(out.read_text())
        codes.append(r.returncode)
    assert sorted(x["family"] for x in results) == sorted(fams)
    for x in results:
        assert x["executions"] >= RUNS.get(x["family"], DEFAULT_RUNS), x
    bad = [x for x in results if x["findings"]]
    assert not bad, "\n\n".join(f"{x['family']}:\n{x['detail']}" for x in bad)
    assert codes == [0] * len(codes)


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
