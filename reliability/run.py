"""Measure robustness and write RELIABILITY.md: ``python -m blindmatch.reliability --out DIR``.

Everything is generic over the protocol registry (see ``harness``): bad inputs
per decoder, per endpoint handler and per client response slot (count, crashes,
slowest input); atheris executions per fuzz family (``fuzz/run.py``); SIGKILL
cycles with acknowledged vouchers lost (tpsi, 50 cycles); and a 10-minute soak of 64
concurrent clients over plain, oprf and tpsi with he beside them at a small set, with
its errors, latency and RSS growth. ``--quick`` shrinks every budget (about 4 minutes);
the defaults take about 35 minutes on 2 cores. Every stage has a fixed budget, so the
command stops on its own; the exit code is 1 if any row failed, so CI can run it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from blindmatch.protocol import REGISTRY

from blindmatch.machine import machine_info

from . import faults
from . import harness as H

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent


def decoder_rows(base: Path, budget: float, seed: int, n_random: int = 64) -> list[dict[str, Any]]:
    """Every decoder, endpoint handler and client response slot against its mutation battery."""
    _, recs = H.load_prepared(base)
    decs = H.discover_decoders()
    samples = H.samples_for(decs, list(recs.values()))
    rows: list[dict[str, Any]] = []
    rng = random.Random(seed)  # noqa: S311 — mutation choice, not cryptography
    for d in decs:
        r = H.battery_decoder(d, samples.get(d.name, [])[:4], rng, budget_s=budget, n_random=n_random)
        rows.append(
            {
                "kind": "decoder",
                "target": d.name.removeprefix("blindmatch."),
                "samples": len(samples.get(d.name, [])),
                **_res(r),
            }
        )
    for name, rec in sorted(recs.items()):
        if not rec.in_process:
            rows.append(_over_http_row(name))
            continue
        for ep in rec.endpoints():
            r = H.battery_endpoint(rec, ep, rng, budget_s=budget, n_random=n_random)
            rows.append(
                {
                    "kind": "endpoint",
                    "target": f"{name} {ep.method} {ep.path}",
                    "samples": len(rec.requests(ep.method, ep.path)),
                    **_res(r),
                }
            )
        for t in H.client_targets(rec):
            r = H.battery_client(rec, t, rng, budget_s=budget)
            rows.append(
                {
                    "kind": "client",
                    "target": f"{name} client ← {t[0]} {t[1]}",
                    "samples": len(rec.responses(*t)),
                    **_res(r),
                }
            )
        rec.close()
    return rows


def _over_http_row(name: str) -> dict[str, Any]:
    """The row for a protocol whose endpoints answer only from its real server processes."""
    note = (
        "multi-process protocol: its endpoints run only in its real party processes; bad inputs "
        "reach them over HTTP in tests/test_limits.py and tests/test_api_schemathesis.py"
    )
    return {"kind": "endpoint", "target": f"{name} (all)", "samples": 0, "tried": 0, "bad": 0,
            "outcomes": {}, "slowest_s": 0.0, "failures": [], "note": note}


def _res(r: H.BatteryResult) -> dict[str, Any]:
    return {
        "tried": r.tried,
        "bad": r.bad,
        "outcomes": r.kinds,
        "slowest_s": round(r.max_seconds, 3),
        "failures": r.failures[:5],
        "note": r.note,
    }


def fuzz_rows(base: Path, seconds: int, out: Path) -> list[dict[str, Any]]:
    runner = ROOT / "fuzz" / "run.py"
    if not runner.exists():
        return [
            {
                "family": "(fuzz/ not found: run from a source checkout)",
                "executions": 0,
                "findings": 0,
                "seconds": 0,
                "slots": "-",
            }
        ]
    js = out / "fuzz.json"
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            str(runner),
            "--seconds",
            str(seconds),
            "--json",
            str(js),
            "--prepared",
            str(base),
            "--artifacts",
            str(out / "fuzz-artifacts"),
        ],
        check=False,
    )
    return json.loads(js.read_text()) if js.exists() else []


def write_report(out: Path, data: dict[str, Any]) -> Path:
    """RELIABILITY.md from the raw results, so the published numbers are exactly the measured ones."""
    lines = [
        *_report_header(data),
        *_summary_rows(data),
        *_input_sections(data),
        *_kill_and_soak_sections(data),
    ]
    path = out / "RELIABILITY.md"
    path.write_text("\n".join(lines))
    return path


def _report_header(data: dict[str, Any]) -> list[str]:
    """Title, machine and commit first: timings mean nothing without where they were taken."""
    m = data["machine"]
    quick = " --quick" if data["mode"] == "quick" else ""
    return [
        "# RELIABILITY — measured, not assumed",
        "",
        f"Produced by `python -m blindmatch.reliability --out DIR{quick}` ({data['mode']} budgets). "
        "Machine caveat: shared cores, noisy timings.",
        "",
        f"- machine: {m['cpu_model']} × {m['logical_cpus']} ({m['usable_cpus']} usable); "
        f"Python {m['python']}; {m['platform']}; load average at start {m['loadavg_at_start']}",
        f"- commit {m['git_commit']}, {m['started_utc']}",
        f"- {', '.join(f'{k} {v}' for k, v in m['libraries'].items() if v)}",
        f"- protocols: {', '.join(data['protocols'])}",
        *([f"- note: {data['note']}"] if data.get("note") else []),
        "",
        "## Summary",
        "",
        "| measure | value | pass |",
        "|---|---|---|",
    ]


def _summary_rows(data: dict[str, Any]) -> list[str]:
    """One pass/fail row per reliability measure, for a reader who reads only the table."""
    lines: list[str] = []
    dec = data["decoders"]
    tried = sum(r["tried"] for r in dec)
    bad = sum(r["bad"] for r in dec)
    lines.append(
        f"| bad inputs tried (decoders + endpoints + clients, {len(dec)} targets) | {tried:,} "
        f"| {'✅' if bad == 0 else '❌'} {bad} crashes/5xx/accepted bad points |"
    )
    fz = data["fuzz"]
    lines.append(
        f"| atheris executions ({len(fz)} families × {data['fuzz_seconds']} s) | "
        f"{sum(r['executions'] for r in fz):,} | {'✅' if not any(r['findings'] for r in fz) else '❌'} "
        f"{sum(r['findings'] for r in fz)} findings |"
    )
    k = data.get("kill")
    if k:
        lines.append(
            f"| SIGKILL–restart cycles (tpsi) | {k['cycles']} cycles, {k['vouchers_acked']:,} vouchers "
            f"acknowledged, {k['vouchers_stored']:,} stored | {'✅' if k['ok'] else '❌'} "
            f"{len(k['lost_acked'])} acknowledged lost, {k['partial_batches']} partial batches |"
        )
    else:
        lines.append("| SIGKILL–restart cycles | tpsi not registered | skipped |")
    s = data["soak"]
    mix = " + ".join(
        f"{ld['clients']} clients over {'/'.join(ld['protocols'])} (set {ld['set_size']}, RSS "
        f"{ld.get('rss_start_mb', 0):.0f}→{ld.get('rss_end_mb', 0):.0f} MB)"
        for ld in s["loads"]
    )
    lines.append(
        f"| soak {s['seconds']:.0f} s, {s['clients']} concurrent clients: {mix} | "
        f"{s['scans']:,} scans, p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms, RSS "
        f"{s['rss_start_mb']:.0f}→{s['rss_end_mb']:.0f} MB | {'✅' if s['ok'] else '❌'} "
        f"{sum(s['errors'].values())} errors{_soak_errors(s['errors'])} |"
    )
    return lines


def _input_sections(data: dict[str, Any]) -> list[str]:
    """Per-target bad-input outcomes and per-family fuzzing counts, with any failures listed."""
    dec = data["decoders"]
    fz = data["fuzz"]
    lines: list[str] = []
    lines += [
        "",
        "## Bad inputs per target",
        "",
        "| kind | target | samples | tried | crashes | outcomes | slowest (s) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in dec:
        oc = ", ".join(f"{k2} {v}" for k2, v in sorted(r["outcomes"].items()))
        lines.append(
            f"| {r['kind']} | `{r['target']}` | {r['samples']} | {r['tried']:,} | {r['bad']} | {oc} | "
            f"{r['slowest_s']} | {r['note']} |"
        )
        lines += [f"|  | ↳ {f[:150]} | | | | | | |" for f in r["failures"]]
    lines += [
        "",
        "## Fuzzing (atheris / libFuzzer)",
        "",
        "| family | slots | executions | seconds | findings |",
        "|---|---|---|---|---|",
    ]
    for r in fz:
        lines.append(
            f"| {r['family']} | {r['slots']} | {r['executions']:,} | {r['seconds']} | {r['findings']} |"
        )
    lines += ["", "Longer campaign: `python fuzz/run.py --seconds 600 [--only FAMILY]`.", ""]
    return lines


def _kill_and_soak_sections(data: dict[str, Any]) -> list[str]:
    """The raw kill-drill audit, soak latency per protocol and the pass criteria used above."""
    k = data.get("kill")
    s = data["soak"]
    lines: list[str] = []
    if k:
        lines += [
            "## Kill drill",
            "",
            "```",
            json.dumps({x: y for x, y in k.items() if x != "restart_seconds"}, indent=1),
            "```",
            "",
        ]
    lines += ["## Soak per protocol", "", "| protocol | scans | p50 ms | p99 ms | max ms |"]
    lines += ["|---|---|---|---|---|"]
    for name, v in s["per_protocol"].items():
        lines.append(
            f"| {name} | {v['scans']:,.0f} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['max_ms']:.1f} |"
        )
    lines += [
        "",
        f"Pass criteria: zero 5xx/transport/client errors; p99 < {data['p99_limit_ms']:.0f} ms for "
        f"{', '.join(data['p99_gated'])} (he's latency is reported, not gated: one scan is seconds of "
        f"homomorphic work on 2 shared cores); RSS growth of the servers' process trees after "
        f"{s['warmup']:.0f} s of warm-up < {data['rss_limit_mb']:.0f} MB.",
        "",
    ]
    return lines


def _soak_errors(errors: dict[str, int]) -> str:
    return f" ({', '.join(f'{k} {v}' for k, v in sorted(errors.items()))})" if errors else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for RELIABILITY.md and raw JSON")
    ap.add_argument("--quick", action="store_true", help="small budgets (about 4 minutes)")
    ap.add_argument("--decoder-budget", type=float, help="seconds per decoder/endpoint/client target")
    ap.add_argument("--fuzz-seconds", type=int, help="atheris seconds per family")
    ap.add_argument("--kill-cycles", type=int, help="SIGKILL/restart cycles")
    ap.add_argument("--soak-seconds", type=float, help="soak duration")
    ap.add_argument("--clients", type=int, help="soak clients over plain/oprf/tpsi (he keeps its own)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--note", default="", help="a line for the report header (e.g. which branches)")
    a = ap.parse_args(argv)
    q = a.quick
    budget = a.decoder_budget or (2.0 if q else 10.0)
    fuzz_s = a.fuzz_seconds or (5 if q else 30)
    cycles = a.kill_cycles or (3 if q else 50)
    soak_s = a.soak_seconds or (20.0 if q else 600.0)
    warmup = min(60.0, max(3.0, soak_s / 10))
    light, heavy = faults.SOAK_LOADS
    loads = [
        faults.SoakLoad(light.protocols, a.clients or (6 if q else light.clients), light.set_size),
        faults.SoakLoad(heavy.protocols, 1 if q else heavy.clients, heavy.set_size),
    ]
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="reliability-"))
    p99_limit, rss_limit = 5000.0, 40.0
    try:
        t0 = time.monotonic()
        print("recording real traffic of every protocol …", flush=True)
        H.prepare_set_dir(work / "prepared")
        print(f"  {time.monotonic() - t0:.0f}s; bad-input batteries …", flush=True)
        dec = decoder_rows(work / "prepared", budget, a.seed, n_random=64 if q else 1000)
        print(f"  {sum(r['tried'] for r in dec):,} inputs; fuzzing …", flush=True)
        fz = fuzz_rows(work / "prepared", fuzz_s, out)
        kill = None
        if "tpsi" in REGISTRY:
            print("kill drill …", flush=True)
            kr = faults.kill_cycles(work / "kill", cycles=cycles, seed=a.seed)
            kill = {**asdict(kr), "ok": kr.ok}
        print("soak …", flush=True)
        sr = faults.soak(work / "soak", loads, seconds=soak_s, warmup=warmup, seed=a.seed)
        gated = [p for p in light.protocols if p in sr.per_protocol]
        soak_ok = (
            sr.server_errors == 0
            and not sr.errors
            and all(sr.per_protocol[p]["p99_ms"] < p99_limit for p in gated)
            and sr.rss_growth_mb < rss_limit
        )
        data = {
            "mode": "quick" if q else "full",
            "note": a.note,
            "machine": machine_info(),
            "protocols": sorted(REGISTRY),
            "decoders": dec,
            "fuzz": fz,
            "fuzz_seconds": fuzz_s,
            "kill": kill,
            "soak": {**asdict(sr), "ok": soak_ok, "warmup": warmup},
            "p99_limit_ms": p99_limit,
            "p99_gated": gated,
            "rss_limit_mb": rss_limit,
        }
        (out / "reliability.json").write_text(json.dumps(data, indent=1, default=str))
        path = write_report(out, data)
        print(f"wrote {path} in {time.monotonic() - t0:.0f}s", flush=True)
        failed = (
            any(r["bad"] for r in dec)
            or any(r["findings"] for r in fz)
            or (kill is not None and not kill["ok"])
            or not soak_ok
        )
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
