"""One prepared set directory and recording per test session, shared by the reliability tests.

Recording runs every registered protocol's real client against its real server; for
``he`` each query takes seconds, so it is done once per session. Set
``BLINDMATCH_REL_PREPARED=/some/dir`` to keep and reuse it across runs while developing.

The set holds pHash hashes, not PDQ: the decoders, endpoints, limits and state files
under test are the same code for every hash, and ``he``'s 64-bit circuit evaluates in
a third of the time of its 256-bit one (every hostile-response and fuzz input re-runs a
query). ``python -m blindmatch.reliability`` records on PDQ, and the PDQ paths over HTTP
have their own tests (tests/test_he.py, tests/test_oprf_http.py, tests/test_tpsi_http.py,
tests/test_mpc_processes.py).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

from blindmatch.reliability import harness as H


@functools.cache
def prepared() -> Path:
    keep = os.environ.get("BLINDMATCH_REL_PREPARED")
    if keep:
        base = Path(keep)
        if (base / "recordings.json").exists():
            return base
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="bm-rel-"))
        atexit.register(shutil.rmtree, base, True)
    H.prepare_set_dir(base, algo="phash")
    return base


@functools.cache
def recordings() -> dict[str, H.Recording]:
    """The prepared recordings with their servers reopened in this process."""
    _, recs = H.load_prepared(prepared())
    for r in recs.values():
        atexit.register(r.close)
    return recs
