"""Load and soak (issue 7): concurrent real clients against plain, oprf and tpsi on loopback.

Pass criteria (stated, and printed with the measurements): zero 5xx and zero
transport errors; p99 scan latency under ``P99_LIMIT_MS`` (2 shared cores, so
generous); server RSS growth after warm-up under ``RSS_LIMIT_MB``. The short run is
in the default suite; the long one is marked slow. The same drill produces the
RELIABILITY.md row (``python -m blindmatch.reliability``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from blindmatch.protocol import REGISTRY
from blindmatch.reliability import faults

PROTOCOLS = [p for p in ("plain", "oprf", "tpsi") if p in REGISTRY]
P99_LIMIT_MS = 2000.0
RSS_LIMIT_MB = 40.0


def _check(rep: faults.SoakReport, rss_limit: float) -> None:
    print(rep)
    assert rep.scans > 20 * len(rep.protocols), rep
    assert rep.server_errors == 0, rep.errors
    assert not rep.errors, rep.errors  # client-side typed errors count too
    assert rep.p99_ms < P99_LIMIT_MS, rep.p99_ms
    assert rep.rss_growth_mb < rss_limit, (rep.rss_start_mb, rep.rss_end_mb)


@pytest.mark.timeout(300)
def test_short_soak(tmp_path: Path) -> None:
    _check(faults.soak(tmp_path, PROTOCOLS, seconds=20, concurrency=2), RSS_LIMIT_MB)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_long_soak(tmp_path: Path) -> None:
    _check(faults.soak(tmp_path, PROTOCOLS, seconds=600, concurrency=4), RSS_LIMIT_MB)
