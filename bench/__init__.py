"""Benchmarks: every protocol against its peer and its physical bound.

``blindmatch bench`` (see ``runner``) runs four suites over the protocol
registry — ``micro`` (primitives, each the bound of the protocols that use it),
``protocols`` (cost per protocol and set size, as ratios to those bounds),
``peers`` (openmined-psi, the plaintext baseline, a naive scan) and ``load``
(real uvicorn on loopback, driven from another process) — and writes
``results.json``, ``results.md`` and, on request, ``BENCHMARKS.md``.
Protocol-specific knowledge (bounds, options, load scenarios) lives in
``hooks``, keyed by registry name.
"""

from .report import SCHEMA, evaluate_goals, render_benchmarks_md, render_markdown, validate_results
from .runner import DEFAULT_SEED, DEFAULT_SIZES, SUITES, parse_sizes, parse_suites, publish, run_bench
from .timing import Stat, measure, stat

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SIZES",
    "SCHEMA",
    "SUITES",
    "Stat",
    "evaluate_goals",
    "measure",
    "parse_sizes",
    "parse_suites",
    "publish",
    "render_benchmarks_md",
    "render_markdown",
    "run_bench",
    "stat",
    "validate_results",
]
