"""``blindmatch sim``: the simulator's command line (mounted by blindmatch/cli.py).

Heavy imports (matplotlib, scipy, the protocols) happen inside the command, so
``blindmatch --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["sim_app"]

sim_app = typer.Typer(
    no_args_is_help=True, help="Simulate accuracy, cost, latency and capacity; write a report."
)


@sim_app.command("run")
def run(
    out: Annotated[Path, typer.Option("--out", help="Output folder (reused to resume)")],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file overlaid on the defaults")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small run (< 3 min on 2 cores)")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default from config: 1)")] = None,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="Folder of JPEG/PNG/WebP images")] = None,
    dask: Annotated[
        str | None, typer.Option("--dask", help="Dask scheduler address, e.g. tcp://host:8786")
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore cached stage results in OUT")] = False,
    pairs: Annotated[
        Path | None,
        typer.Option("--pairs", help="CSV of real copy pairs: query path, reference path, optional label"),
    ] = None,
    perturb_resolution: Annotated[
        str | None,
        typer.Option(
            "--perturb-resolution",
            help="Edits start from the full-resolution original ('full') or a copy of at most "
            "perturb.max_side px ('downscaled')",
        ),
    ] = None,
) -> None:
    """Run the simulation and print the headline table and the report path."""
    from rich.console import Console
    from rich.table import Table

    from .config import load_config
    from .report.render import HASH_NAMES, console_rows, fmt_big
    from .runner import run_simulation

    cfg = load_config(config, quick, seed, perturb_resolution=perturb_resolution)
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not wrap the table at 80 columns
        console = Console(width=170)
    res = run_simulation(
        cfg,
        out,
        corpus,
        dask,
        fresh,
        console,
        command=" ".join(["blindmatch", *sys.argv[1:]]),
        pairs_csv=pairs,
    )
    rows = console_rows(res)
    ca = res["headline"][0]["cores_at"] if res["headline"] else {"daily_images": 0, "set_size": 0}
    hashed = HASH_NAMES.get(res["cost"]["algo"], res["cost"]["algo"])
    table = Table(title=f"Headline: protocols side by side ({hashed}; details and intervals in report.html)")
    for k in rows[0] if rows else []:
        table.add_column(k, overflow="fold")
    for r in rows:
        table.add_row(*r.values())
    console.print(table)
    ref = res["headline"][0]["reference_set_size"] if res["headline"] else 0
    console.print(
        f"FMR bound: chance an innocent image falsely matches a set of {fmt_big(ca['set_size'])}, "
        "upper bound from the unrelated corpus pairs measured (model: the tail model's calibration check); "
        f"cores: server cores for {fmt_big(ca['daily_images'])} images/day at that set size "
        "(* extrapolated beyond the measured set sizes, ≥ lower bound); "
        f"server CPU, bytes and download at a set of {ref:,}."
    )
    console.print(
        f"wall time {res['wall_seconds']} s; deterministic digest {res['deterministic_digest'][:16]}"
    )
    console.print(f"[bold]report:[/] {(out / 'report.html').resolve()}")
    console.print(f"summary: {(out / 'summary.md').resolve()}  results: {(out / 'results.json').resolve()}")
