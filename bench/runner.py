"""``blindmatch bench``: run the suites, write results.json + results.md, publish.

Suite order matters: ``micro`` first (its primitives are the bounds), then
``protocols`` (its cells are reused by ``peers``), ``peers``, and ``load`` last
because it starts and stops real servers.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blindmatch.machine import machine_info

from .context import BenchContext
from .report import SCHEMA, evaluate_goals, render_benchmarks_md, validate_results, write_results

__all__ = ["DEFAULT_SEED", "DEFAULT_SIZES", "SUITES", "parse_sizes", "parse_suites", "publish", "run_bench"]

SUITES = ("micro", "protocols", "peers", "load", "mpc")
DEFAULT_SIZES = (1_000, 10_000, 100_000)
DEFAULT_SEED = 20240601


def parse_sizes(text: str) -> list[int]:
    """``"1e3,1e4,100000"`` → [1000, 10000, 100000]; each must be a positive integer."""
    out: list[int] = []
    for part in text.split(","):
        p = part.strip()
        if not p:
            continue
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"size {p!r} is not a number") from None
        if v < 1 or v != int(v) or v > 1e8:
            raise ValueError(f"size {p!r} must be a whole number between 1 and 1e8")
        out.append(int(v))
    if not out:
        raise ValueError("no sizes given")
    return sorted(set(out))


def parse_suites(text: str) -> list[str]:
    """``"all"`` or a comma-separated subset of SUITES, returned in run order."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return list(SUITES)
    bad = [n for n in names if n not in SUITES]
    if bad or not names:
        raise ValueError(f"unknown suite(s) {bad or text!r}; choose from {[*SUITES, 'all']}, comma-separated")
    return [s for s in SUITES if s in names]


def _suite_fns() -> dict[str, Callable[[BenchContext], None]]:
    from .load import run_load_suite
    from .micro import run_micro
    from .mpc import run_mpc_suite
    from .peers import run_peers
    from .protocols import run_protocols

    return {
        "micro": run_micro,
        "protocols": run_protocols,
        "peers": run_peers,
        "load": run_load_suite,
        "mpc": run_mpc_suite,
    }


def _run_suites(ctx: BenchContext, suites: list[str], fns: dict[str, Callable[[BenchContext], None]]) -> None:
    """Run the suites in order; a crashed suite is recorded as an error so the others still run."""
    for s in suites:
        ctx.log(f"suite {s}")
        try:
            fns[s](ctx)
        except Exception as e:  # a crashed suite is reported, the others still run
            ctx.record_error(s, "suite", e, keep=3000)


def _document(
    ctx: BenchContext,
    machine: dict[str, Any],
    suite: str,
    suites: list[str],
    sizes: list[int],
    repeats: int,
    seed: int,
    quick: bool,
    protocols: list[str] | None,
    load_seconds: float,
    cell_budget_s: float,
    note: str | None,
    t0: float,
) -> dict[str, Any]:
    """The results document before goals: the config is recorded so a reader can rerun the same bench."""
    from blindmatch.protocol import REGISTRY

    return {
        "schema": SCHEMA,
        "machine": machine,
        "seed": seed,
        "config": {
            "suite": suite,
            "suites": suites,
            "sizes": sizes,
            "repeats": repeats,
            "quick": quick,
            "protocols": protocols,
            "registered_protocols": sorted(REGISTRY),
            "load_seconds": load_seconds,
            "cell_budget_s": cell_budget_s,
            "note": note,
        },
        "duration_s": time.monotonic() - t0,
        "primitives": {k: v.to_dict() for k, v in ctx.prims.items()},
        "primitive_params": ctx.prim_info,
        "rows": ctx.rows,
        "errors": ctx.errors,
    }


def run_bench(
    suite: str,
    out: Path,
    sizes: list[int] | None = None,
    repeats: int = 5,
    seed: int = DEFAULT_SEED,
    protocols: list[str] | None = None,
    load_seconds: float = 8.0,
    cell_budget_s: float = 600.0,
    quick: bool = False,
    quick_all: bool = False,
    note: str | None = None,
    workdir: Path | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run ``suite`` (one of SUITES or "all") and write ``out/results.{json,md}``."""
    suites = parse_suites(suite)
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    sizes = sorted(sizes or DEFAULT_SIZES)
    own_tmp = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="blindmatch-bench-")) if workdir is None else workdir
    wd.mkdir(parents=True, exist_ok=True)
    ctx = BenchContext(
        seed=seed,
        repeats=repeats,
        sizes=sizes,
        workdir=wd,
        quick=quick,
        quick_all=quick_all,
        protocols=protocols,
        load_seconds=load_seconds,
        cell_budget_s=cell_budget_s,
        verbose=verbose,
    )
    machine = machine_info()
    t0 = time.monotonic()
    ctx.log(f"machine: {machine['cpu_model']}, {machine['logical_cpus']} cores; seed {seed}; sizes {sizes}")
    fns = _suite_fns()
    try:
        _run_suites(ctx, suites, fns)
    finally:
        if own_tmp:
            shutil.rmtree(wd, ignore_errors=True)
    res = _document(
        ctx,
        machine,
        suite,
        suites,
        sizes,
        repeats,
        seed,
        quick,
        protocols,
        load_seconds,
        cell_budget_s,
        note,
        t0,
    )
    res["goals"] = evaluate_goals(res)
    problems = validate_results(res)
    if problems:  # a bug in the bench itself: fail loudly rather than publish a broken file
        raise RuntimeError("results failed the schema check: " + "; ".join(problems[:10]))
    write_results(res, out)
    ctx.log(f"wrote {out / 'results.json'} and {out / 'results.md'} in {res['duration_s']:.0f} s")
    return res


def publish(res: dict[str, Any], results_path: Path, target: Path) -> Path:
    """Write BENCHMARKS.md from a results document (goals re-evaluated from its rows)."""
    res = dict(res)
    res["goals"] = evaluate_goals(res)
    problems = validate_results(res)
    if problems:
        raise ValueError(f"{results_path}: not a valid results file: " + "; ".join(problems[:10]))
    target.write_text(render_benchmarks_md(res, str(results_path)))
    return target


def cli_bench(
    *,
    out: Path,
    suite: str,
    sizes: str,
    repeats: int,
    seed: int,
    protocols: str | None,
    load_seconds: float,
    cell_budget: float,
    publish_to: Path | None,
    from_results: Path | None,
    quick: bool,
    note: str | None = None,
) -> None:
    """The ``blindmatch bench`` command; bad arguments raise ``InputError`` (exit code 2)."""
    import json
    import sys

    from blindmatch.protocol import InputError

    if from_results is not None:
        if publish_to is None:
            raise InputError("--from-results needs --publish PATH")
        try:
            res = json.loads(from_results.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{from_results}: cannot read results ({e})") from None
        try:
            publish(res, from_results, publish_to)
        except ValueError as e:
            raise InputError(str(e)) from None
        sys.stdout.write(json.dumps({"published": str(publish_to), "from": str(from_results)}) + "\n")
        return
    try:
        size_list = parse_sizes(sizes)
        names = [p.strip() for p in protocols.split(",") if p.strip()] if protocols else None
        if names:
            from blindmatch.protocol import REGISTRY

            unknown = [n for n in names if n not in REGISTRY]
            if unknown:
                raise ValueError(f"unknown protocol(s) {unknown}; registered: {sorted(REGISTRY)}")
        if quick:
            size_list = [min(size_list)]
        if cell_budget <= 0 or load_seconds <= 0:
            raise ValueError("--cell-budget and --load-seconds must be positive")
        res = run_bench(
            suite,
            out,
            size_list,
            1 if quick else repeats,
            seed,
            names,
            load_seconds,
            cell_budget_s=cell_budget,
            quick=quick,
            note=note,
        )
    except ValueError as e:
        raise InputError(str(e)) from None
    if publish_to is not None:
        publish(res, out / "results.json", publish_to)
    summary = {
        "results": str(out / "results.json"),
        "markdown": str(out / "results.md"),
        "goals": {g["id"]: g["status"] for g in res["goals"]},
        "errors": len(res["errors"]),
    }
    sys.stdout.write(json.dumps(summary) + "\n")
