"""rbcl's temporary libsodium copy is removed once loaded (it would pile up in /tmp)."""

from __future__ import annotations

import subprocess
import sys


def test_rbcl_temp_library_is_removed_after_import() -> None:
    code = (
        "import os, sys, rbcl; path = sys.modules['rbcl._sodium'].lib_path; "
        "before = os.path.exists(path); "
        "import blindmatch.protocol.hazmat.ristretto as r; "
        "r.scalar_mult(r.random_scalar(), r.hash_to_group(b'x', b'dst')); "
        "print(before, os.path.exists(path))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
