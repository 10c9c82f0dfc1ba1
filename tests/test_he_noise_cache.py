"""he's set-up noise check runs once per circuit shape on a machine, and a bad cache is never trusted.

The check (a full circuit under a throwaway key) is spied on, not replaced: every call
below runs the real check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from blindmatch.protocol import get_protocol
from blindmatch.protocol.he import _noise

from blindmatch.corpus import random_set


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real noise checks (one entry per run)."""
    runs: list[int] = []
    real = _noise.check_noise

    def counted(*args: object, **kw: object) -> object:
        runs.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_noise, "check_noise", counted)
    return runs


def _open(state: Path, **opts: object) -> None:
    """A SHA-256 server: exact matching on the small parameter set has the cheapest check."""
    hs = random_set(20, "sha256", seed=3)
    get_protocol("he").open_server(hs, state, {"workers": 1, **opts}).close()


def test_second_server_on_a_new_state_dir_reuses_the_shared_report(tmp_path: Path, checks: list[int]) -> None:
    shared = tmp_path / "cache"
    _open(tmp_path / "a", noise_cache_dir=str(shared))
    _open(tmp_path / "b", noise_cache_dir=str(shared))
    assert len(checks) == 1
    assert (tmp_path / "b" / "noise-check.json").exists()  # each state dir keeps its own copy
    _open(tmp_path / "c", noise_cache_dir=str(shared), baby_step=16)  # another circuit shape
    _open(tmp_path / "d", noise_cache_dir=str(shared), recheck_noise=True)
    assert len(checks) == 3


def test_default_cache_is_per_user_and_can_be_switched_off(
    tmp_path: Path, checks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _open(tmp_path / "a")
    assert (tmp_path / "xdg" / "blindmatch" / "he-noise-check.json").exists()
    _open(tmp_path / "b")
    assert len(checks) == 1
    _open(tmp_path / "c", noise_cache_dir="")  # the state dir only: neither read nor written
    _open(tmp_path / "d", noise_cache_dir="")
    assert len(checks) == 3


def test_a_failing_or_damaged_shared_report_is_rerun(tmp_path: Path, checks: list[int]) -> None:
    shared = tmp_path / "cache"
    _open(tmp_path / "a", noise_cache_dir=str(shared))
    path = shared / "he-noise-check.json"
    data = json.loads(path.read_text())
    for rep in data.values():
        rep["budgets"]["before_flood"] = 0  # a report that does not pass
    path.write_text(json.dumps(data))
    _open(tmp_path / "b", noise_cache_dir=str(shared))
    path.write_text("{not json")
    _open(tmp_path / "c", noise_cache_dir=str(shared))
    assert len(checks) == 3
    assert json.loads(path.read_text())  # rewritten with a passing report


def test_an_unwritable_cache_does_not_stop_the_server(tmp_path: Path, checks: list[int]) -> None:
    if os.geteuid() == 0:
        ro = Path("/proc/self")  # not writable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
    _open(tmp_path / "a", noise_cache_dir=str(ro / "cache"))
    assert len(checks) == 1
