"""The tiny simulator run that every simulator test reads: one run per test session.

Why session-scoped: the simulator is the slowest thing the suite starts, and
most tests only read its outputs; tests that need another configuration make
their own run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blindmatch.cli import app

TINY = """
[run]
workers = 0
chunk_images = 4

[corpus]
images = 14
known = 6
pair_sample = 1000

[perturb]
names = ["jpeg-70", "resize-0.5", "crop-5", "hflip", "caption"]

[database]
sizes = [200, 2000]

[accuracy]
verify_set_size = 200
verify_local = 6
verify_min = 2
verify_http = 3
verify_budget_s = 20
protocol_budget_s = 60

[cost]
sizes = [200, 400]
http_sizes = [200]
min_queries = 1
max_queries = 6
budget_s = 0.3
max_query_s = 1.5   # he's cell at the second size is predicted, not measured (the skip path)

[network]
samples = 500
reference_set_size = 200

[protocols.he]
algos = ["phash"]   # he's pHash circuit takes a third of its PDQ one; tests/test_he*.py run PDQ.
                    # A protocol without the cost hash is costed and reported on its own (labelled)
dihedral = false    # and its dihedral variants are exercised on the other protocols
verify_local = 2    # the fixed minimum: one member and one non-member per variant
verify_http = 2

[evasion]
images = 2
max_queries = 30
algos = ["pdq", "phash"]
"""


@pytest.fixture(scope="session")
def sim_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """(output folder, results.json, console output) of ``blindmatch sim run`` on TINY, seed 3."""
    tmp = tmp_path_factory.mktemp("sim")
    out = tmp / "out"
    cfg = tmp / "tiny.toml"
    cfg.write_text(TINY)
    r = CliRunner().invoke(app, ["sim", "run", "--config", str(cfg), "--seed", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out, json.loads((out / "results.json").read_text()), r.output
