"""Run every fuzz family for a bounded time: ``python fuzz/run.py --seconds N``.

Each family runs in its own process (``fuzz_one.py``) with libFuzzer's
``-max_total_time``; this runner collects executions and findings, prints a
table, writes ``--json`` if asked and exits 1 on any finding. Crash inputs are
kept under ``--artifacts`` (default ``runs/fuzz``) for replay:
``python fuzz/fuzz_one.py FAMILY CRASH_FILE``.

    python fuzz/run.py --seconds 5            # CI smoke (the default test suite runs ~3 s each)
    python fuzz/run.py --seconds 600 --only proto-oprf   # a longer campaign
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class FuzzResult:
    family: str
    seconds: float
    executions: int
    findings: int
    slots: str
    detail: str


def list_families() -> list[str]:
    sys.path.insert(0, str(HERE))
    from targets import families

    return families()


def run_family(
    family: str, seconds: int, artifacts: Path, prepared: Path | None = None, timeout_per_input: int = 60,
    runs: int | None = None,
) -> FuzzResult:
    """One family in its own process for ``seconds`` or, given ``runs``, exactly that many
    inputs from libFuzzer seed 1 (``seconds`` then only bounds a stuck run)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{family}-"))
    cmd = [
        sys.executable,
        str(HERE / "fuzz_one.py"),
        family,
        f"-max_total_time={seconds}",
        *([f"-runs={runs}", "-seed=1"] if runs is not None else []),
        f"-timeout={timeout_per_input}",
        "-rss_limit_mb=4096",
        f"-artifact_prefix={artifacts}/{family}-",
        "-print_final_stats=1",
        str(work / "corpus"),
    ]
    (work / "corpus").mkdir()
    t0 = time.monotonic()
    env = {**os.environ, "TMPDIR": str(work)}
    if prepared is not None:
        env["BLINDMATCH_FUZZ_PREPARED"] = str(prepared)
    logf = work / "fuzz.log"
    rc = -1
    # own session: protocol worker processes (HE) inherit nothing we wait on, and are killed after
    with open(logf, "wb") as lf:
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            stdout=lf,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline, done_at = time.monotonic() + seconds + 600, None
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
                if done_at is None and b"Done " in logf.read_bytes()[-4096:]:
                    done_at = time.monotonic()
                if done_at is not None and time.monotonic() - done_at > 15:
                    break  # libFuzzer finished; exit is stuck on a protocol's worker pool
            rc = proc.returncode if proc.returncode is not None else (0 if done_at else -1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = logf.read_text(errors="replace") + ("\nrunner timeout" if rc == -1 else "")
    shutil.rmtree(work, ignore_errors=True)
    dt = time.monotonic() - t0
    m = re.search(r"Done (\d+) runs", out) or re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    execs = int(m.group(1)) if m else 0
    slots = re.search(r"fuzz family \S+: (\d+ slots)", out)
    crashed = rc != 0 or "Uncaught Python exception" in out or "ERROR: libFuzzer" in out
    detail = ""
    if crashed:
        tail = [ln for ln in out.splitlines() if ln.strip()][-25:]
        detail = "\n".join(tail)
    return FuzzResult(family, round(dt, 1), execs, int(crashed), slots.group(1) if slots else "?", detail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30, help="libFuzzer -max_total_time per family")
    ap.add_argument("--runs", type=int, help="a fixed number of inputs per family (seed 1) instead of a time")
    ap.add_argument("--only", nargs="*", help="families to run (default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="print the families and exit")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--artifacts", type=Path, default=Path("runs/fuzz"), help="where crash inputs go")
    ap.add_argument(
        "--prepared",
        type=Path,
        help="a harness.prepare_set_dir directory to reuse "
        "(default: prepare one now; recording HE queries takes a while)",
    )
    a = ap.parse_args(argv)
    fams = list_families()
    if a.list:
        print("\n".join(fams))
        return 0
    chosen = a.only or fams
    unknown = sorted(set(chosen) - set(fams))
    if unknown:
        ap.error(f"unknown families {unknown}; choose from {fams}")
    prepared = a.prepared
    cleanup = None
    if prepared is None and any(f.startswith("proto-") for f in chosen):
        from blindmatch.reliability.harness import prepare_set_dir

        prepared = cleanup = Path(tempfile.mkdtemp(prefix="fuzz-prepared-"))
        t0 = time.monotonic()
        prepare_set_dir(prepared)
        print(f"recorded real traffic of every protocol in {time.monotonic() - t0:.0f}s", flush=True)
    results = []
    try:
        results = _run_all(chosen, a, prepared)
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 1 if any(r.findings for r in results) else 0


def _run_all(chosen: list[str], a: argparse.Namespace, prepared: Path | None) -> list[FuzzResult]:
    results = []
    for fam in chosen:
        r = run_family(fam, a.seconds, a.artifacts.resolve(), prepared, runs=a.runs)
        results.append(r)
        print(
            f"{fam:20s} {r.executions:>9d} execs {r.seconds:6.1f}s {r.slots:>9s}  findings={r.findings}",
            flush=True,
        )
        if r.findings:
            print(r.detail, flush=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
