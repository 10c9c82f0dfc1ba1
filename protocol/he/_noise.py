"""The set-up noise check's report, kept so that each circuit shape is checked once per machine.

Why a cache beyond the state dir: the check runs the whole circuit under a throwaway key
(seconds for PDQ) and its outcome depends only on the parameter set, the circuit shape
and the SEAL build, never on the set. A machine that starts many servers (the simulator,
the test suite, one server per set) would otherwise pay it for every new state dir. The
report is looked up in the state dir, then in a per-user cache; it is re-run when
neither holds a passing report for this fingerprint, or when forced.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..files import atomic_write
from ..hazmat.bfv import Bfv
from ._circuit import CircuitSpec, NoiseReport, check_noise

__all__ = ["noise_report", "shared_noise_file"]

_FILE = "noise-check.json"


def shared_noise_file(folder: str | None) -> Path | None:
    """The per-user cache file: ``folder``, or ``$XDG_CACHE_HOME/blindmatch`` (``~/.cache``); '' for none."""
    if folder == "":
        return None
    if folder is None:
        folder = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blindmatch")
    return Path(folder) / f"he-{_FILE}"


def _fingerprint(bfv: Bfv, spec: CircuitSpec) -> str:
    # "binarity|levels": the circuit with the binarity check and its level schedule; reports
    # cached for an earlier circuit are re-run
    try:
        seal = version("tenseal")
    except PackageNotFoundError:
        seal = "unknown"
    return f"{bfv.params.name}|{spec.bits}|{spec.radius}|{spec.baby}|binarity|levels|tenseal-{seal}"


def _read(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _passing(cached: dict[str, Any], fp: str) -> NoiseReport | None:
    try:
        rep = NoiseReport(**cached[fp])
    except (KeyError, TypeError):
        return None
    return rep if rep.ok else None


def noise_report(
    bfv: Bfv, spec: CircuitSpec, state_dir: Path, shared: Path | None, force: bool
) -> NoiseReport:
    """A passing report for this shape (``ParameterError`` from the check when it fails)."""
    fp = _fingerprint(bfv, spec)
    local = state_dir / _FILE
    mine, theirs = _read(local), _read(shared)
    rep = None if force else (_passing(mine, fp) or _passing(theirs, fp))
    if rep is None:
        rep = check_noise(bfv, spec)  # raises ParameterError when too small
    if fp not in mine or force:
        _add(local, mine, fp, rep)
    if shared is not None and (fp not in theirs or force):
        with contextlib.suppress(OSError):  # a read-only home must not stop a server
            shared.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _add(shared, theirs, fp, rep)
    return rep


def _add(path: Path, cached: dict[str, Any], fp: str, rep: NoiseReport) -> None:
    atomic_write(path, json.dumps({**cached, fp: asdict(rep)}, indent=1, sort_keys=True))
