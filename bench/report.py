"""results.json, the Markdown tables, the goal checks and BENCHMARKS.md.

Why generated: published numbers must come from a results file, never be typed
in, and a goal that is missed must show as missed with its reason. Everything
here is a pure function of ``results.json``, so anyone can re-run a
benchmark and regenerate BENCHMARKS.md with one command.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from blindmatch.machine import MACHINE_KEYS

__all__ = [
    "SCHEMA",
    "evaluate_goals",
    "fmt_value",
    "render_benchmarks_md",
    "render_markdown",
    "validate_results",
    "write_results",
]

from .goals import PEER_PROTOCOL, evaluate_goals
from .hooks import OWN_SUITE_REFERENCE
from .units import fmt_value

SCHEMA = "blindmatch-bench/1"
ROW_STATUSES = ("ok", "skipped", "failed", "extrapolated")


# ---------------------------------------------------------------------------- formatting


def fmt_stat(st: dict[str, Any] | None, spread: bool = True) -> str:
    if not st:
        return "—"
    s = fmt_value(st["median"], st["unit"])
    if spread and st.get("n", 1) > 1 and st["min"] != st["max"]:
        s += f" [{fmt_value(st['min'], st['unit'])}–{fmt_value(st['max'], st['unit'])}]"
    return s


def fmt_metric(m: dict[str, Any] | None, spread: bool = True) -> str:
    if not m:
        return "—"
    s = fmt_stat(m["stat"], spread)
    if m.get("ratio") is not None:
        s += f" (×{m['ratio']:.3g})"
    return s


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in r) + " |")
    return out


# ---------------------------------------------------------------------------- schema


def validate_results(res: dict[str, Any]) -> list[str]:
    """Problems with a results document (empty list = valid)."""
    p: list[str] = []
    if res.get("schema") != SCHEMA:
        p.append(f"schema is {res.get('schema')!r}, expected {SCHEMA!r}")
    m = res.get("machine", {})
    for k in MACHINE_KEYS:
        if k not in m:
            p.append(f"machine.{k} missing")
    libs = m.get("libraries") or {}
    for k in ("numpy", "rbcl", "cryptography", "tenseal", "libsodium", "python"):
        if k not in libs:
            p.append(f"libraries.{k} missing")
    if not isinstance(res.get("seed"), int):
        p.append("seed missing or not an integer")
    if not isinstance(res.get("config"), dict):
        p.append("config missing")
    rows = res.get("rows")
    if not isinstance(rows, list):
        return [*p, "rows missing"]
    for i, r in enumerate(rows):
        for k in ("suite", "group", "name", "params", "metrics", "status"):
            if k not in r:
                p.append(f"rows[{i}].{k} missing")
        if r.get("status") not in ROW_STATUSES:
            p.append(f"rows[{i}].status {r.get('status')!r} invalid")
        if r.get("status") in ("skipped", "failed") and not r.get("reason"):
            p.append(f"rows[{i}] is {r.get('status')} without a reason")
        for mk, mv in (r.get("metrics") or {}).items():
            st = mv.get("stat") if isinstance(mv, dict) else None
            if not isinstance(st, dict):
                p.append(f"rows[{i}].metrics.{mk}.stat missing")
                continue
            for k in ("median", "min", "max", "n", "unit"):
                if k not in st:
                    p.append(f"rows[{i}].metrics.{mk}.stat.{k} missing")
            if (
                all(k in st for k in ("median", "min", "max"))
                and st["n"]
                and not (st["min"] <= st["median"] <= st["max"])
            ):
                p.append(f"rows[{i}].metrics.{mk}: median outside [min, max]")
    if not isinstance(res.get("goals"), list):
        p.append("goals missing")
    else:
        for g in res["goals"]:
            if g.get("status") not in ("met", "missed", "not measured"):
                p.append(f"goal {g.get('id')}: bad status {g.get('status')!r}")
            if g.get("status") != "met" and not g.get("reason"):
                p.append(f"goal {g.get('id')}: {g.get('status')} without a reason")
    return p


# ---------------------------------------------------------------------------- goals


# ---------------------------------------------------------------------------- markdown


def _header(res: dict[str, Any]) -> list[str]:
    m = res["machine"]
    libs = m["libraries"]
    mem = m.get("memory_bytes")
    lib_s = ", ".join(f"{k} {v}" for k, v in libs.items() if v)
    return [
        f"- Machine: {m.get('cpu_model')}, {m.get('logical_cpus')} logical cores "
        f"({m.get('usable_cpus')} usable), {mem / 2**30:.1f} GiB RAM, {m.get('platform')}; "
        f"load average at start {m.get('loadavg_at_start')}"
        if mem
        else f"- Machine: {m}",
        f"- Libraries: {lib_s}",
        f"- Seed: {res['seed']}; repeats: {res['config'].get('repeats')}; "
        f"sizes: {res['config'].get('sizes')}; "
        f"suites: {res['config'].get('suites')}; commit {m.get('git_commit')}",
        f"- Started {m.get('started_utc')}, took {res.get('duration_s', 0):.0f} s; "
        f"protocols registered: {', '.join(res['config'].get('registered_protocols') or [])}",
        *([f"- Note: {res['config']['note']}"] if res["config"].get("note") else []),
        "- Figures are medians with [min–max] over repeats; (×r) is the ratio to the physical bound "
        "measured in the same run.",
    ]


def _goals_md(goals: list[dict[str, Any]]) -> list[str]:
    icon = {"met": "✅ met", "missed": "❌ MISSED", "not measured": "⚪ not measured"}

    def status(g: dict[str, Any]) -> str:
        s = icon[g["status"]]
        if g["status"] != "met" and g.get("met_in"):  # the other oprf mode meets it
            s += " (met in " + " and ".join(g["met_in"]) + ")"
        return s

    return _table(
        ["goal", "status", "measured", "reason"],
        [[g["goal"], status(g), g["measured"], g.get("reason") or ""] for g in goals],
    )


def _micro_md(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if r["status"] in ("skipped", "failed"):
            out.append([r["group"], r["name"], f"{r['status']}: {r['reason']}", "", r.get("bound_for") or ""])
            continue
        vals = "; ".join(f"{k.replace('_', ' ')} {fmt_metric(m)}" for k, m in r["metrics"].items())
        notes = "; ".join(m["note"] for m in r["metrics"].values() if m.get("note"))
        out.append([r["group"], r["name"], vals, notes, r.get("bound_for") or ""])
    return _table(["group", "primitive", "median [min–max]", "note", "bound for"], out)


_PROTO_COLS = [
    ("setup_s", "server set-up"),
    ("download_bytes", "one-time download"),
    ("one_time_upload_bytes", "one-time upload"),
    ("client_cpu_s", "client CPU / image"),
    ("server_cpu_s", "server CPU / query"),
    ("bytes_per_query", "bytes / query"),
]


def _protocols_md(rows: list[dict[str, Any]]) -> list[str]:
    body = []
    formulas: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["status"] in ("skipped", "failed"):
            body.append(
                [
                    r["group"],
                    str(r["params"].get("n", r["name"])),
                    f"{r['status']}: {r['reason']}",
                    *[""] * (len(_PROTO_COLS) + 1),
                ]
            )
            continue
        for k, _ in _PROTO_COLS:
            b = (r["metrics"].get(k) or {}).get("bound")
            if b and b.get("formula"):
                formulas.setdefault(r["group"], {})[k] = b["formula"]
        p = r["params"]
        ver = f"{p['verdict_errors']}/{p['verdicts_checked']} wrong" if p.get("verdicts_checked") else "n/a"
        tag = " (extrapolated)" if r["status"] == "extrapolated" else ""
        body.append(
            [r["group"], f"{p['n']:,}{tag}", *[fmt_metric(r["metrics"].get(k)) for k, _ in _PROTO_COLS], ver]
        )
    out = _table(["protocol", "n", *[c for _, c in _PROTO_COLS], "verdicts"], body)
    if formulas:
        out += ["", "Bounds used for the ratios (primitives re-measured next to each cell):", ""]
        for proto, fs in formulas.items():
            out.append(f"- **{proto}**: " + "; ".join(f"{dict(_PROTO_COLS)[k]} ≥ {f}" for k, f in fs.items()))
    notes = [r for r in rows if r.get("reason") and r["status"] not in ("skipped", "failed")]
    if notes:
        out += ["", *[f"- {r['name']}: {r['reason']}" for r in notes]]
    return out


def _load_md(rows: list[dict[str, Any]]) -> list[str]:
    body = []
    for r in rows:
        if r["status"] == "skipped" or not r["metrics"]:
            body.append([r["name"], "", "", "", "", "", "", "", "", "", f"{r['status']}: {r.get('reason')}"])
            continue
        p, m = r["params"], r["metrics"]
        lat = m.get("latency", {}).get("stat", {})
        body.append(
            [
                f"{p.get('variant') or p['protocol']} {p['path']} batch={p['batch']}",
                str(p["workers"]),
                p["kind"],
                str(p["concurrency"]),
                fmt_stat(m["throughput_rps"]["stat"], False)
                + f" ({fmt_stat(m['items_per_s']['stat'], False)})",
                fmt_value(lat.get("median"), "s")
                + " / "
                + fmt_value(m.get("latency_p99", {}).get("stat", {}).get("median"), "s"),
                str(int(m["errors"]["stat"]["median"])),
                str(p.get("refused_429_503", 0))
                + (
                    ""
                    if not p.get("refused_429_503")
                    else f" (Retry-After missing: {p.get('retry_after_missing', 0)})"
                ),
                fmt_value(m["rss_before"]["stat"]["median"], "B")
                + " → "
                + fmt_value(m["rss_after"]["stat"]["median"], "B"),
                fmt_stat(m.get("server_cpu_per_item", {}).get("stat"), False),
                "; ".join(
                    x
                    for x in (
                        r.get("reason"),
                        f"keep-alive GET {p['keepalive_get_ms_median']:.1f} ms"
                        if p.get("keepalive_get_ms_median") is not None
                        else None,
                    )
                    if x
                ),
            ]
        )
    return _table(
        [
            "scenario",
            "workers",
            "kind",
            "conc.",
            "throughput req/s (items/s)",
            "p50 / p99",
            "errors",
            "429/503",
            "server RSS before → after",
            "server CPU / item",
            "note",
        ],
        body,
    )


_PSI_COLS = [
    ("setup_s", "set prep (wall)"),
    ("setup_cpu_s", "set prep CPU"),
    ("setup_bytes_per_element", "one-time download / element"),
    ("filter_bytes_per_element", "filter / element"),
    ("client_cpu_s", "client CPU / query"),
    ("client_api_cpu_s", "of which blind + finalize + lookup"),
    ("server_cpu_per_element_s", "server CPU / queried element"),
    ("server_setup_cpu_per_element_s", "server set-up CPU / element"),
    ("bytes_per_query", "bytes / query"),
]


def _psi_md(psi: list[dict[str, Any]]) -> list[str]:
    """The peer comparison table: each implementation, then each mode's ratio to each peer."""
    cols = _PSI_COLS
    body = []
    for r in psi:
        if r["status"] in ("skipped", "failed"):
            body.append([r["name"], f"{r['status']}: {r['reason']}", *[""] * (len(cols) - 1)])
            continue
        body.append([r["name"], *[fmt_metric(r["metrics"].get(k)) for k, _ in cols]])
        ratios = r["params"].get("ratio_oprf_over_peer") or {}
        mode = r["params"].get("mode") or PEER_PROTOCOL
        for peer in sorted({p for v in ratios.values() for p in v}):
            cells = ["—" if ratios[k].get(peer) is None else f"×{ratios[k][peer]:.3g}" for k, _ in cols]
            body.append([f"↳ {mode} ÷ {peer}", *cells])
    return [
        "### oprf vs openmined-psi 2.0.6 (same set, same per-lookup fpr)",
        "",
        "Both oprf modes, measured in the same run: VOPRF (default; every response carries a "
        "batched DLEQ proof that the client verifies) and OPRF mode (no proofs; the client opts in "
        "with `allow_unverified`). openmined-psi verifies nothing, so OPRF mode is the like-for-like "
        "row. Ratios < 1 mean oprf is cheaper or smaller.",
        "",
        *_table(["implementation", *[c for _, c in cols]], body),
        "",
    ]


def _peers_md(rows: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    psi = [r for r in rows if r["group"] in ("openmined-psi", "oprf vs openmined-psi")]
    if psi:
        out += _psi_md(psi)
    pp = [r for r in rows if r["group"] == "price of privacy (vs plain)"]
    if pp:
        keys = [
            ("client_cpu_s_ratio", "client CPU"),
            ("server_cpu_s_ratio", "server CPU"),
            ("bytes_per_query_ratio", "bytes / query"),
            ("query_wall_s_ratio", "query latency (in-process)"),
            ("client_per_image_incl_pdq_ratio", "client per image incl. PDQ 512²"),
        ]
        body = [
            [
                r["params"]["protocol"],
                f"{r['params']['n']:,}" + (" (extrapolated)" if r["status"] == "extrapolated" else ""),
                *[fmt_stat(r["metrics"].get(k, {}).get("stat"), False) for k, _ in keys],
                fmt_value(r["params"].get("download_bytes"), "B"),
            ]
            for r in pp
        ]
        out += [
            "### Price of privacy: protocol ÷ plain (numpy Hamming index, no privacy)",
            "",
            *_table(["protocol", "n", *[c for _, c in keys], "extra one-time download"], body),
            "",
        ]
    nv = [r for r in rows if r["group"].startswith("Hamming scan")]
    if nv:
        body = [
            [
                r["name"],
                fmt_metric(r["metrics"]["naive_s"]),
                fmt_metric(r["metrics"]["numpy_s"]),
                fmt_stat(r["metrics"]["speedup"]["stat"], False),
            ]
            for r in nv
        ]
        out += [
            "### Hamming nearest-neighbour scan: naive Python vs numpy index",
            "",
            *_table(["set", "naive Python", "numpy HammingIndex", "speed-up"], body),
            "",
        ]
    return out


def _mpc_reference_heading() -> str:
    ref = OWN_SUITE_REFERENCE["mpc"]
    return f"{ref.protocol} at 1e{ref.decade} (same run)"


def _mpc_md(rows: list[dict[str, Any]]) -> list[str]:
    def fig(m: dict[str, Any], scale: float = 1.0, digits: int = 2) -> str:
        st = m["stat"]
        lo, mid, hi = (st[k] * scale for k in ("min", "median", "max"))
        f = f"{mid:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]"
        return f + (f" (×{m['ratio']:.1f} bound)" if m.get("ratio") else "")

    body = []
    for r in rows:
        m = r["metrics"]
        ref = m.get(OWN_SUITE_REFERENCE["mpc"].metric)
        body.append([
            f"{r['params']['n']}, W = {r['params'].get('workers', 1)}"
            + (", count mode" if r["params"].get("output") == "count" else "")
            + (", shared set" if r["params"].get("set_sharing") == "shared" else ""),
            fig(m["query_wall"]) + " s",
            fig(m["party_cpu"]) + " s",
            fig(m["client_cpu"]) + " ms",
            fig(m["client_bytes"], 1 / 1024, 1) + " KiB",
            fig(m["party_bytes"], 1 / 2**20, 1) + " MiB",
            f"{r['params']['correct']}/{r['params']['queries']}",
            (fig(ref) + f" s; {ref['note']}") if ref else "—",
        ])
    return [
        *_table(["set, processes per party", "wall / query (×floor)", "3 parties' CPU / query", "client CPU",
                 "client up+down",
                 "party 0 → peers (×bound)", "verdicts right",
                 _mpc_reference_heading()], body),
        "",
        "Median [min–max] over the queries. The floor is one pass over the packed set plus the circuit's",
        "field multiplications per entry, for three parties on this machine's cores, measured in the",
        "same run; the party-bytes bound is multiplications per entry × 2 bytes × entries.",
    ]


def render_markdown(res: dict[str, Any], title: str = "blindmatch benchmark results") -> str:
    out = [f"# {title}", "", *_header(res), "", "## Goals", "", *_goals_md(res["goals"]), ""]
    suites = ("micro", "protocols", "load", "peers", "mpc")
    by = {s: [r for r in res["rows"] if r["suite"] == s] for s in suites}
    if by["micro"]:
        out += [
            "## micro: primitives (each the bound of the protocols that use it)",
            "",
            *_micro_md(by["micro"]),
            "",
        ]
    if by["protocols"]:
        out += [
            "## protocols: cost per registered protocol and set size (in-process, no HTTP)",
            "",
            *_protocols_md(by["protocols"]),
            "",
        ]
    if by["load"]:
        out += [
            "## load: real uvicorn on 127.0.0.1, clients in another process",
            "",
            *_load_md(by["load"]),
            "",
        ]
    if by["peers"]:
        out += ["## peers", "", *_peers_md(by["peers"])]
    if by["mpc"]:
        out += ["## mpc: three party processes on loopback, client over HTTP", "", *_mpc_md(by["mpc"]), ""]
    if res.get("errors"):
        out += ["## Errors during the run", ""]
        out += [f"- {e['suite']} / {e['where']}: `{e['error'][:300]}`" for e in res["errors"]]
        out.append("")
    return "\n".join(out) + "\n"


APSI_NOTE = """## Microsoft APSI (published numbers, not measured here)

APSI (`apsi` on PyPI) cannot be built offline on this machine (its build downloads sources), so it
is **not measured here**. Published figures, for orientation only (different machine, 32 cores, LAN):

| set size | query | online time | source |
|---|---|---|---|
| 1M items | 1 item | 0.49 s | APSI published benchmarks (LAN, 32 cores) |
| 16M items | 1 item | 2.67 s | APSI published benchmarks (LAN, 32 cores) |
| 16M vs 5K items | 5K items | 36 s online, 12.5 MB | Chen–Laine–Rindal, CCS 2017 |
"""

METHOD = """## How to read these numbers

- **Bounds.** Each protocol figure is followed by (×r), its ratio to a physical bound computed
  from primitives measured in the same run — re-measured right after each protocol×size cell,
  because on a shared machine a scalar multiplication can run 2× slower a few minutes later
  (results.json keeps them under `bound_primitives_s`; the micro table is the run's main
  measurement): e.g. `oprf` in OPRF mode (`oprf-unverified`): client ≥ hash-to-group + 2 scalar
  mults per element, server ≥ 1 scalar mult per evaluated element; `oprf` in VOPRF mode (default)
  adds RFC 9497's batched DLEQ proof: for one element the client ≥ hash-to-group + 7 scalar mults
  + 1 base mult + 2 adds + 2 hash-to-scalars, the server ≥ 4 scalar mults + 1 base mult + 2
  hash-to-scalars (libsodium has no multi-scalar multiplication);
  `tpsi` client ≥ hash-to-group + d × (3 scalar mults + 1 base mult + 2 adds) for d cuckoo
  locations; `he` server ≥ ⌈n × bits ÷ slots⌉ plaintext×ciphertext products in NTT form at the
  protocol's own BFV parameters; `plain` server ≥ one pass over the n × 32-byte matrix. Each
  protocol declares its floor (`Protocol.cost_floor`: which primitives, how many); the formulas
  are listed under the protocols table and the parameters each floor rests on are in
  results.json under `protocol_params`.
- **CPU.** `protocols` runs both halves in one process through a metering wrapper around
  `LocalTransport`: server CPU is the handlers' CPU (plus live pool workers), client CPU is the
  scan's CPU minus the handlers'. Bytes are message bodies as the transports count them; HTTP
  framing is not included. The one-time download is the first scan's extra download (manifest,
  filter, table); the one-time upload is the first scan's extra upload (e.g. `he` evaluation keys).
- **Paired rounds (peers).** Per-query figures in the openmined-psi comparison come from
  rounds in which every implementation, and the floor primitives, run one query each in turn
  (bench/paired.py). This machine's speed drifts by up to 1.6× over seconds; measuring one
  implementation after another would let that drift decide the ratio. "Client CPU / query" is
  the whole client side of a scan (in-process transport included); "blind + finalize + lookup"
  is the part the issue defines and the part comparable to openmined-psi's `CreateRequest` +
  `GetIntersectionSize` (which includes re-parsing its setup message each query); the goal is
  judged on it, and both are shown.
- **Load.** Request bodies are recorded from the real client halves (against an identical copy of
  the server state) and replayed by a separate driver process (h11 over asyncio; httpx's pool was
  the bottleneck). Throughput is wall-clock; "items per server-core second" divides items by the
  server process tree's CPU time, i.e. the capacity of one fully used core including HTTP.
- **oprf modes.** `oprf-unverified` is `oprf` with server option `{"mode": "oprf"}` (the HTTP
  server: `BLINDMATCH_OPRF_MODE=oprf`) and client option `allow_unverified`; it has its own cells,
  server state and load server, so the two modes never share a key epoch or a cached figure.
- **Extrapolation.** A cell whose predicted run time exceeds the cell budget is extrapolated
  linearly from the two largest measured sizes and marked "(extrapolated)"; it is never reported
  as measured, and goals are judged on measured cells only.
"""

KNOWN_ISSUES = """## Known measurement caveats

- The benchmark machine has 2 cores shared with other jobs; medians with [min–max] show the noise.
  The load driver runs on the same machine as the server, so with 2 workers the server, the driver
  and anything else running share 2 cores.
- Plain `uvicorn --workers N` (N > 1) leaves Nagle's algorithm on for accepted sockets
  (Kludex/uvicorn#3149: the pre-bound listener has `proto == 0`, so asyncio never sets
  TCP_NODELAY), and every keep-alive response then waits ~40 ms for the client's delayed ACK.
  blindmatch serves through `blindmatch.server.run`, which re-wraps the listener with
  `proto = IPPROTO_TCP` (`tests/test_server_run.py`). The load table's "keep-alive GET" note
  and the "throughput-delayed-ack" row measure it directly: values near 40 ms would mean the fix
  is not in effect.
"""


def render_benchmarks_md(res: dict[str, Any], results_path: str) -> str:
    """BENCHMARKS.md: latest results, machine, reproduce command, goals, APSI citation."""
    cfg = res["config"]
    sizes = ",".join(f"{s:g}" for s in cfg.get("sizes", []))
    cmd = (
        f"blindmatch bench --suite {cfg.get('suite', 'all')} --sizes {sizes} --repeats {cfg.get('repeats')} "
        f"--seed {res['seed']} --out runs/bench --publish BENCHMARKS.md"
    )
    body = render_markdown(res, "Benchmarks")
    head, _, rest = body.partition("\n## Goals")
    return (
        head
        + "\n## Reproduce\n\n```\n"
        + cmd
        + "\n```\n\n"
        + "`make bench` runs the default suite. "
        + "Regenerate this file from a results file without re-running:\n\n"
        + f"```\nblindmatch bench --from-results {results_path} --publish BENCHMARKS.md\n```\n\n"
        + "This file is generated; edit `bench/report.py`, not the tables.\n"
        + "\n## Goals"
        + rest
        + "\n"
        + METHOD
        + "\n"
        + APSI_NOTE
        + "\n"
        + KNOWN_ISSUES
    )


def write_results(res: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / "results.json", out / "results.md"
    j.write_text(json.dumps(res, indent=1, default=str) + "\n")
    m.write_text(render_markdown(res))
    return j, m
