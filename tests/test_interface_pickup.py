"""A protocol registered by a test module is picked up everywhere, with no edit outside it.

The protocols in ``tests/sim_test_protocols.py`` declare their option types, a
cost floor and (for the server-learns ones) ``server_verdicts``. This file shows
the server settings, the HTTP app, the simulator and the benchmarks using those
declarations: the options come from ``BLINDMATCH_TEST_REVEAL_*``, the admin route
lists the verdicts, the simulator gives the exact protocol its multi-probe
variants and reads the server-learns verdicts, and the benchmark rows carry the
declared floor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from blindmatch.bench.hooks import cost_floor
from blindmatch.bench.runner import run_bench
from blindmatch.client import HttpTransport
from blindmatch.protocol import OptionError, OptionTypeError, Query, get_algo
from blindmatch.server import SetDir, Settings, create_app, free_port
from blindmatch.server.settings import protocol_options_from_env
from blindmatch.sim.config import load_config
from blindmatch.sim.decide.variants import protocol_variants
from blindmatch.sim.verify.oracle import SimQuery, local_session, real_verdicts
from fastapi import FastAPI

from tests.sim_test_protocols import ExactPlain, RevealOptions, RevealPlain, registered

from . import _http

PDQ = get_algo("pdq")


@pytest.fixture(scope="module")
def toys() -> Iterator[tuple[RevealPlain, ExactPlain]]:
    reveal, exact = RevealPlain(), ExactPlain()
    with registered(reveal, exact):
        yield reveal, exact


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory) -> SetDir:
    rng = np.random.default_rng(17)
    words = rng.integers(0, 2**64, size=(64, PDQ.words), dtype=np.uint64)
    return SetDir.build_from_words(tmp_path_factory.mktemp("set") / "set", PDQ, words, ["pickup test"])


def test_server_options_come_from_the_protocols_prefix(toys: tuple[RevealPlain, ExactPlain]) -> None:
    opts = protocol_options_from_env({"BLINDMATCH_TEST_REVEAL_THRESHOLD": "4"})
    assert opts["test-reveal"] == RevealOptions(threshold=4)
    assert opts["test-exact"].to_dict() == {}
    with pytest.raises(OptionError, match="BLINDMATCH_TEST_REVEAL_TRESHOLD"):
        protocol_options_from_env({"BLINDMATCH_TEST_REVEAL_TRESHOLD": "4"})  # a typo is refused
    with pytest.raises(OptionTypeError):
        protocol_options_from_env({"BLINDMATCH_TEST_REVEAL_THRESHOLD": "four"})


@contextmanager
def _uvicorn(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn on loopback, in this process (where the toy is registered)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_app_serves_it_and_lists_what_its_server_learned(
    toys: tuple[RevealPlain, ExactPlain], set_dir: SetDir
) -> None:
    settings = Settings(
        db=set_dir.path,
        protocols="test-reveal",
        admin_token="operator",  # type: ignore[arg-type]
        protocol_options=protocol_options_from_env({"BLINDMATCH_TEST_REVEAL_THRESHOLD": "3"}),
    )
    app = create_app(settings)
    assert app.state.servers["test-reveal"].threshold == 3
    client = toys[0].new_client(PDQ)
    admin = {"authorization": "Bearer operator", "x-blindmatch-account": "acct"}
    with _uvicorn(app) as url:
        transport = HttpTransport(url, "test-reveal")
        try:
            for i in range(3):
                q = Query(set_dir.hashes.value(i), account="acct", associated_data=b"ad%d" % i)
                client.scan(q, transport)
        finally:
            transport.close()
        assert _http.get(f"{url}/v1/test-reveal/admin/verdicts").status_code == 401
        got = _http.get(f"{url}/v1/test-reveal/admin/verdicts", headers=admin).json()
    assert [v["associated_data"] for v in got["verdicts"]] == [(b"ad%d" % i).hex() for i in range(3)]
    assert all(v["matched"] for v in got["verdicts"])


def test_simulator_uses_the_declared_options_and_verdicts(
    toys: tuple[RevealPlain, ExactPlain], set_dir: SetDir, tmp_path: Path
) -> None:
    reveal, exact = toys
    cfg = load_config(quick=True)
    cfg["variants"]["probe_bits"] = [0, 2]
    variants = protocol_variants(exact, cfg)
    ks = [v.client_options.get("probe_bits") for v in variants if not v.dihedral]
    assert ks == [0, 2]  # the exact protocol declares probe_bits: one variant per k
    # and one dihedral variant on the most robust of them
    assert [v.client_options.get("probe_bits") for v in variants if v.dihedral] == [2]
    assert all("probe_bits" not in v.client_options for v in protocol_variants(reveal, cfg))
    cfg["protocols"]["test-reveal"] = {"server_options": {"threshold": 2}}
    (variant,) = [v for v in protocol_variants(reveal, cfg) if not v.dihedral]
    raw = [set_dir.hashes.value(i).raw for i in range(4)]
    primers = [SimQuery(100 + i, r) for i, r in enumerate(raw[:2])]
    queries = [SimQuery(0, raw[2]), SimQuery(1, bytes(32))]
    with local_session(reveal, set_dir, variant) as sess:
        out = real_verdicts(sess, variant, PDQ, queries, primers, "acct", tmp_path / "c", 30.0)
    assert out.source == "server-reveal" and out.verdicts == [True, False], out


def test_benchmarks_measure_it_against_its_declared_floor(
    toys: tuple[RevealPlain, ExactPlain], tmp_path: Path
) -> None:
    floor = cost_floor("test-reveal", 200, PDQ)
    assert floor is not None and set(floor.floors()) == {"server_cpu_s", "bytes_per_query"}
    res = run_bench(
        "protocols",
        tmp_path,
        sizes=[200],
        repeats=1,
        seed=3,
        protocols=["test-reveal", "test-exact"],
        quick=True,
        verbose=False,
    )
    assert not res["errors"], res["errors"]
    rows = {r["group"]: r for r in res["rows"] if r["suite"] == "protocols"}
    assert set(rows) == {"test-reveal", "test-exact"}
    reveal = rows["test-reveal"]
    assert reveal["status"] == "ok" and reveal["metrics"]["server_cpu_s"]["bound"]["value"] > 0
    assert reveal["metrics"]["bytes_per_query"]["bound"]["value"] == PDQ.nbytes
    assert reveal["params"]["protocol_params"]["threshold"]["value"] == 2
    assert "no cost floor" not in (reveal.get("reason") or "")
    assert rows["test-exact"]["metrics"]["bytes_per_query"]["bound"]["value"] == PDQ.nbytes + 1
