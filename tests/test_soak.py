"""Load and soak: concurrent real clients against every service protocol on loopback.

Pass criteria (stated, and printed with the measurements): zero 5xx, transport or client
errors; RSS growth of the servers' process trees after warm-up under ``RSS_LIMIT_MB``; in
the slow, timed runs also p99 scan latency of plain/oprf/tpsi under ``P99_LIMIT_MS`` (2 shared
cores, so generous). The default suite runs a fixed number of scans per client (no clock in
its verdict); the run with he beside them, the 10-minute soak and the reliability command at
short budgets are marked slow. The same drill produces the RELIABILITY.md row
(``python -m blindmatch.reliability``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from blindmatch.protocol import REGISTRY
from blindmatch.reliability import faults
from blindmatch.reliability.run import main

from blindmatch.machine import MACHINE_KEYS

P99_LIMIT_MS = 5000.0
RSS_LIMIT_MB = 40.0
LIGHT = tuple(p for p in ("plain", "oprf", "tpsi") if p in REGISTRY)


def _check(rep: faults.SoakReport, rss_limit: float, timed: bool = True) -> None:
    print(rep)
    assert set(rep.per_protocol) == set(rep.protocols), rep.per_protocol  # every protocol scanned
    assert rep.scans > 20 * len(LIGHT), rep
    assert rep.server_errors == 0, rep.errors
    assert not rep.errors, rep.errors  # client-side typed errors count too
    if timed:
        assert all(rep.per_protocol[p]["p99_ms"] < P99_LIMIT_MS for p in LIGHT), rep.per_protocol
    assert rep.rss_growth_mb < rss_limit, (rep.rss_start_mb, rep.rss_end_mb)


@pytest.mark.timeout(300)
def test_short_soak(tmp_path: Path) -> None:
    rep = faults.soak(tmp_path, [faults.SoakLoad(LIGHT, 6)], seconds=None, scans_per_client=60)
    assert rep.clients == 6 and [(ld["protocols"], ld["set_size"]) for ld in rep.loads] == [(LIGHT, 256)]
    assert rep.scans == 6 * 60
    _check(rep, RSS_LIMIT_MB, timed=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_with_he_beside(tmp_path: Path) -> None:
    loads = [faults.SoakLoad(LIGHT, 8), faults.SoakLoad(("he",), 1, 32)]
    _check(faults.soak(tmp_path, loads, seconds=60, warmup=20), RSS_LIMIT_MB)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_long_soak(tmp_path: Path) -> None:
    _check(faults.soak(tmp_path, faults.SOAK_LOADS, seconds=600, warmup=60), RSS_LIMIT_MB)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_reliability_command_at_short_budgets(tmp_path: Path) -> None:
    """The command `make reliability` runs: every stage, a report, the shared machine record."""
    argv = ["--out", str(tmp_path), "--quick", "--decoder-budget", "0.5", "--fuzz-seconds", "2",
            "--kill-cycles", "2", "--soak-seconds", "10", "--clients", "6"]
    rc = main(argv)
    data = json.loads((tmp_path / "reliability.json").read_text())
    assert tuple(data["machine"]) == MACHINE_KEYS
    assert data["kill"]["cycles"] == 2 and data["kill"]["lost_acked"] == []
    soak = data["soak"]
    assert set(soak["per_protocol"]) == set(soak["protocols"]) >= {"plain", "oprf", "tpsi", "he"}
    text = (tmp_path / "RELIABILITY.md").read_text()
    assert "SIGKILL–restart cycles (tpsi) | 2 cycles" in text and "6 clients over plain/oprf/tpsi" in text
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert rc == (1 if "❌" in summary else 0), summary  # the exit code is the report's verdict
