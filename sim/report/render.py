"""Writes a run's outputs: results.json, CSV tables, figures, summary.md and report.html.

Why a self-contained HTML file: it is mailed around and opened offline by
policy teams, so figures are embedded as data URIs and there is no external
script, font or stylesheet. It opens with what the numbers mean in plain
language, the trade-off frontier and the side-by-side headline, then the
measured false-match bounds and a worked table that answers "what would
deploying protocol X at volume V with set size N cost, and how many innocent
images would it flag?", then the details and every assumption.

The prose lives in Jinja2 templates (``templates/``); this module only builds
rows and facts from ``results.json`` and hands them over. A small inline script
records script errors and checks that every figure decoded; the browser test
reads the result from ``<body data-…>``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

import jinja2
from blindmatch.protocol import atomic_write

from .copies import pipeline_sentence, real_copy_rows, real_copy_sentence, skipped_lines
from .fmt import fmt_big, fmt_bytes, fmt_count, fmt_ms, fmt_rate, fmt_sci, sanitize
from .meaning import meaning_facts
from .plots import make_figures
from .schema import SCHEMA, validate
from .tables import (
    HASH_NAMES,
    console_rows,
    detail_tables,
    false_match_rows,
    frontier_table,
    headline_rows,
    row_label,
    worked_rows,
)

__all__ = [
    "HASH_NAMES",
    "console_rows",
    "fmt_big",
    "fmt_bytes",
    "fmt_rate",
    "headline_rows",
    "meaning",
    "row_label",
    "sanitize",
    "write_outputs",
]


def _table_md(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_No rows._\n"
    keys = list(rows[0])
    out = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
    for r in rows:
        out += "| " + " | ".join(str(r[k]).replace("|", "/") for k in keys) + " |\n"
    return out


def _env() -> jinja2.Environment:
    """HTML templates (``*.html.j2``) escape every value; the text and Markdown ones do not."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("blindmatch.sim.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=lambda c: fmt_rate(c, False),
        sci=fmt_sci,
        ms=fmt_ms,
        bytes=fmt_bytes,
        big=fmt_big,
        count=fmt_count,
    )
    return env


def meaning(res: dict[str, Any]) -> list[str]:
    """The plain-language sentences, one per list item."""
    text = _env().get_template("meaning.txt.j2").render(facts=_Maybe(meaning_facts(res)))
    return [ln[2:].strip() for ln in text.splitlines() if ln.startswith("- ")]


class _Maybe(dict[str, Any]):
    """A dict for templates where a missing key reads as None: a section that does not apply."""

    def __missing__(self, key: str) -> None:
        return None

    def __getattr__(self, key: str) -> Any:
        v = self[key]
        return _Maybe(v) if isinstance(v, dict) and not isinstance(v, _Maybe) else v


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    if keys:
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()})
    atomic_write(path, buf.getvalue())


def _flat_rate(c: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in c.items() if k not in ("wilson", "clopper_pearson")}
    d["wilson_low"], d["wilson_high"] = c["wilson"]
    d["cp_low"], d["cp_high"] = c["clopper_pearson"]
    return d


def _verification_csv(res: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.items() if k not in ("local", "http")}
        | {
            f"{t}_{k}": (r[t] or {}).get(k)
            for t in ("local", "http")
            for k in ("n", "agree", "disagree", "unavailable", "source", "note")
        }
        for r in res["verification"]
    ]


def _csvs(res: dict[str, Any], out: Path) -> list[str]:
    tables: dict[str, list[dict[str, Any]]] = {
        "headline.csv": [dict(r) for r in headline_rows(res)],
        "frontier.csv": res.get("frontier", []),
        "false_matches.csv": [
            {k: v for k, v in r.items() if k != "measured"} | _flat_rate(r["measured"])
            for r in res.get("false_matches", [])
        ],
        "worked_examples.csv": res["worked_examples"],
        "fnmr.csv": [_flat_rate(c) for c in res["accuracy"]["fnmr"]],
        "fmr.csv": [_flat_rate(c) for c in res["accuracy"]["fmr"]],
        "verification.csv": _verification_csv(res),
        "cost.csv": [{k: v for k, v in c.items() if k != "samples"} for c in res["cost"]["cells"]],
        "latency.csv": res["latency"],
        "capacity.csv": res["capacity"],
        "population.csv": [{k: v for k, v in r.items() if k != "fmr_measured"} for r in res["population"]],
        "accounts.csv": res["accounts"],
        "evasion.csv": res["evasion"]["attempts"],
        "real_copies.csv": [_flat_rate(c) for c in (res.get("real_copies") or {}).get("cells", [])],
        "corpus_distances.csv": [
            {k: v for k, v in d.items() if k != "histogram"} for d in res["corpus"]["distances"].values()
        ],
    }
    tdir = out / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        _write_csv(tdir / name, rows)
    return [f"tables/{n}" for n in tables]


def _context(res: dict[str, Any], figs: list[dict[str, str]], skipped: list[str]) -> dict[str, Any]:
    return {
        "res": res,
        "figs": _Maybe({f["id"]: f for f in figs}),
        "skipped": skipped,
        "meaning": meaning(res),
        "frontier": frontier_table(res),
        "has_real": any(f.get("recall_real_copies") for f in res.get("frontier", [])),
        "headline": headline_rows(res),
        "false_matches": false_match_rows(res),
        "worked": worked_rows(res),
        "tables": detail_tables(res),
        "copies": real_copy_rows(res),
        "copies_text": real_copy_sentence(res),
        "pipeline": pipeline_sentence(res),
        "not_measured": skipped_lines(res),
    }


def _embed(figs: list[dict[str, str]], out: Path) -> list[dict[str, str]]:
    return [f | {"data": base64.b64encode((out / f["png"]).read_bytes()).decode()} for f in figs]


def write_outputs(res: dict[str, Any], out: Path) -> None:
    """Validate, then write every output file of a run into ``out``."""
    clean = sanitize(res)
    errors = validate(clean)
    if errors:
        raise ValueError("results do not match their schema: " + "; ".join(errors[:10]))
    figs, skipped = make_figures(clean, out) if res["config"]["report"]["figures"] else ([], [])
    atomic_write(out / "results.json", json.dumps(clean, indent=1))
    atomic_write(out / "results.schema.json", json.dumps(SCHEMA, indent=1))
    csvs = _csvs(clean, out)
    ctx = _context(clean, figs, skipped)
    md = _env().get_template("summary.md.j2")
    atomic_write(out / "summary.md", md.render(**ctx, csvs=csvs, md=_table_md))
    ctx["figs"] = _Maybe({f["id"]: f for f in _embed(figs, out)})
    page = _env().get_template("report.html.j2").render(**ctx)
    atomic_write(out / "report.html", page)
