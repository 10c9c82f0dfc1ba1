"""ruff and mypy must stay clean on protocol/ and client/ (the brief's standard)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(BIN)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed (it is in the test extra)")
    r = subprocess.run([ruff, "check", "protocol", "client"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_mypy_clean() -> None:
    mypy = shutil.which("mypy", path=str(BIN)) or shutil.which("mypy")
    if mypy is None:
        pytest.fail("mypy is not installed (it is in the test extra)")
    r = subprocess.run(
        ["bash", "tools/typecheck.sh"], cwd=ROOT, capture_output=True, text=True,
        env={"MYPY": mypy, "PATH": "/usr/bin:/bin"}, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:]
