# ruff: noqa: E501  (report prose and HTML)
"""Writes a run's outputs: results.json, CSV tables, figures, summary.md and report.html.

Why a self-contained HTML file: it is mailed around and opened offline by
policy teams, so figures are embedded as data URIs and there is no external
script, font or stylesheet. It opens with what the numbers mean in plain
language and the side-by-side headline table, then a worked table that answers
"what would deploying protocol X at volume V with set size N cost, and how many
innocent images would it flag?", then the details and every assumption.

A small inline script records script errors and checks that every figure
decoded; the browser test reads the result from ``<body data-…>``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from ..cache import atomic_write_text
from .copies import pipeline_sentence, real_copy_rows, real_copy_sentence, skipped_lines
from .plots import make_figures
from .schema import SCHEMA, validate

__all__ = [
    "console_rows",
    "fmt_big",
    "fmt_bytes",
    "fmt_rate",
    "headline_rows",
    "sanitize",
    "write_outputs",
]


# ---------------------------------------------------------------- formatting


def sanitize(o: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): sanitize(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [sanitize(v) for v in o]
    if hasattr(o, "item") and callable(o.item):  # numpy scalar
        return sanitize(o.item())
    return o


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(float(x)) else None


def fmt_rate(c: dict[str, Any] | None, ci: bool = True) -> str:
    if not c or c.get("n", 0) == 0 or c.get("rate") is None:
        return "—"
    lo, hi = c["wilson"]
    s = f"{100 * c['rate']:.1f}%"
    return f"{s} ({100 * lo:.1f}–{100 * hi:.1f})" if ci else s


def fmt_bytes(x: Any) -> str:
    v = _num(x)
    if v is None:
        return "—"
    for unit, div in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.0f} B"


def fmt_ms(x: Any) -> str:
    v = _num(x)
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v / 1000:.3g} s"
    return f"{v:.3g} ms"


def fmt_sci(x: Any, digits: int = 2) -> str:
    v = _num(x)
    if v is None:
        return "—"
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e6:
        return f"{v:.{digits + 1}g}"
    e = math.floor(math.log10(abs(v)))
    return f"{v / 10**e:.{digits}g}×10^{e}"


def fmt_count_log(x: Any, log10: Any) -> str:
    """A count that may underflow: shown as a power of ten from its logarithm."""
    v, lg = _num(x), _num(log10)
    if v is not None and v > 1e-300:
        return fmt_count(v)
    if lg is not None:
        return f"10^{lg:.0f}"
    return "0" if v == 0 else "—"


def fmt_big(x: Any) -> str:
    """Volumes and set sizes in words a policy reader uses: 10,000 / 1 million / 1 billion."""
    v = _num(x)
    if v is None:
        return "—"
    for word, div in (("trillion", 1e12), ("billion", 1e9), ("million", 1e6)):
        if v >= div:
            return f"{v / div:g} {word}"
    return f"{v:,.0f}"


def fmt_count(x: Any) -> str:
    """Counts of events per day/year: tiny expectations are shown as powers of ten."""
    v = _num(x)
    if v is None:
        return "—"
    if v >= 1:
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    return fmt_sci(v)


# ---------------------------------------------------------------- tables


def _privacy(h: dict[str, Any]) -> str:
    if not h["private"]:
        return "Not private: the server sees every hash"
    who = {
        "both": "the provider, which tells the client",
        "client": "the client's device",
        "server": "the provider",
        "nobody": "nobody",
        "client-or-server": "client or provider",
    }.get(h["learner"], h["learner"])
    if h.get("server_trust") == "semi-honest":
        return (f"Hash hidden from a server that follows the protocol (a cheating one reads "
                f"bits of it); verdict goes to {who}")
    return f"Hash hidden from the server; verdict goes to {who}"


def headline_rows(res: dict[str, Any]) -> list[dict[str, str]]:
    """The side-by-side table, as display strings (used by HTML, Markdown and the console)."""
    rows = []
    lat_prof = "4G" if any("4G" in h["latency"] for h in res["headline"]) else None
    for h in res["headline"]:
        prof = lat_prof or next(iter(h["latency"]), None)
        lat = h["latency"].get(prof) if prof else None
        ca = h["cores_at"]
        rows.append(
            {
                "Protocol": h["variant"],
                "Privacy": _privacy(h),
                "Matching": h["matching"],
                "Misses JPEG-70 copies": fmt_rate(h["fnmr_jpeg70"]),
                "Misses everyday edits": fmt_rate(h["fnmr_everyday"]),
                f"Innocent image falsely matched (model, N = {fmt_big(ca['set_size'])})": fmt_sci(
                    h["fmr_model"]
                ),
                f"Latency p50 / p95 ({prof})": f"{fmt_ms(lat['p50_ms'])} / {fmt_ms(lat['p95_ms'])}"
                if lat
                else "—",
                "Bytes per image": fmt_bytes(h["bytes_per_image"]),
                f"One-time download (N={h['reference_set_size']:,})": fmt_bytes(h["one_time_download_bytes"]),
                f"Server CPU / image (N={h['reference_set_size']:,})": fmt_ms(h["server_cpu_ms"])
                + (
                    f" (at N={h['server_cpu_at']:,})"
                    if h.get("server_cpu_at") not in (None, h["reference_set_size"])
                    else ""
                ),
                f"Server cores for {fmt_big(ca['daily_images'])} images/day, N = {fmt_big(ca['set_size'])}": (
                    str(ca["cores"]) + (" *" if ca["extrapolated"] else "")
                    if ca["cores"] and ca["cores"] > 0
                    else "—"
                ),
                "Checked against real code": ("yes (" + ", ".join(h["verified_algos"]) + ")")
                if h["verified"]
                else ("partly: " + ", ".join(h["verified_algos"]) if h["verified_algos"] else "NO"),
            }
        )
    return rows


def console_rows(res: dict[str, Any]) -> list[dict[str, str]]:
    """A narrow version of the headline for terminals (no intervals, short headers)."""
    rows = []
    for h in res["headline"]:
        lat = h["latency"].get("4G") or next(iter(h["latency"].values()), None)
        ca = h["cores_at"]
        rows.append(
            {
                "protocol": h["variant"],
                "private": "yes" if h["private"] else "no",
                "verdict to": h["learner"],
                "miss JPEG70": fmt_rate(h["fnmr_jpeg70"], False),
                "miss everyday": fmt_rate(h["fnmr_everyday"], False),
                "FMR model": f"{h['fmr_model']:.1e}" if _num(h["fmr_model"]) is not None else "—",
                "p50 4G": fmt_ms(lat["p50_ms"]) if lat else "—",
                "bytes/img": fmt_bytes(h["bytes_per_image"]),
                "download": fmt_bytes(h["one_time_download_bytes"]),
                "server CPU": fmt_ms(h["server_cpu_ms"]),
                "cores": (str(ca["cores"]) + ("*" if ca["extrapolated"] else ""))
                if ca["cores"] and ca["cores"] > 0
                else "—",
                "verified": "yes" if h["verified"] else ("part" if h["verified_algos"] else "NO"),
            }
        )
    return rows


def _worked_rows(res: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for w in res["worked_examples"]:
        rows.append(
            {
                "Protocol": w["variant"],
                "Images per day": fmt_big(w["daily_images"]),
                "Set size": fmt_big(w["set_size"]),
                "Server cores": (str(w["cores"]) + (" *" if w["extrapolated"] else ""))
                if w["cores"] and w["cores"] > 0
                else "—",
                "Client↔server traffic per day": fmt_bytes(w["traffic_gb_per_day"] * 1e9)
                if w["traffic_gb_per_day"] is not None
                else "—",
                "One-time download per client": fmt_bytes(w["one_time_download_bytes"])
                + ("" if w.get("download_source") == "measured" else " (predicted)"),
                "Innocent images falsely matched per day (model)": fmt_count(
                    w["innocent_flagged_per_day_model"]
                ),
                "… 95% upper bound from direct measurement": fmt_count(w["innocent_flagged_per_day_upper95"]),
                "Innocent accounts flagged per year (threshold)": _accounts_cell(w),
            }
        )
    return rows


def _accounts_cell(w: dict[str, Any]) -> str:
    if "accounts_flagged_per_year_model" not in w:
        return "n/a"
    out = fmt_count_log(w["accounts_flagged_per_year_model"], w.get("accounts_flagged_per_year_model_log10"))
    if "accounts_flagged_per_year_reference" in w:
        ref = fmt_count_log(
            w["accounts_flagged_per_year_reference"], w.get("accounts_flagged_per_year_reference_log10")
        )
        out += f" (model); {ref} if the per-image rate were {w['reference_rate']:g}"
    return out + f" — {w['account_assumption']}"


def _table_html(rows: list[dict[str, str]], cls: str = "") -> str:
    if not rows:
        return "<p><em>No rows.</em></p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f'<div class="tw"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _table_md(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_No rows._\n"
    keys = list(rows[0])
    out = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
    for r in rows:
        out += "| " + " | ".join(str(r[k]).replace("|", "/") for k in keys) + " |\n"
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _flat_rate(c: dict[str, Any]) -> dict[str, Any]:
    d = {k: v for k, v in c.items() if k not in ("wilson", "clopper_pearson")}
    d["wilson_low"], d["wilson_high"] = c["wilson"]
    d["cp_low"], d["cp_high"] = c["clopper_pearson"]
    return d


def _csvs(res: dict[str, Any], out: Path) -> list[str]:
    tables: dict[str, list[dict[str, Any]]] = {
        "headline.csv": [dict(r) for r in headline_rows(res)],
        "worked_examples.csv": res["worked_examples"],
        "fnmr.csv": [_flat_rate(c) for c in res["accuracy"]["fnmr"]],
        "fmr.csv": [_flat_rate(c) for c in res["accuracy"]["fmr"]],
        "verification.csv": [
            {k: v for k, v in r.items() if k not in ("local", "http")}
            | {
                f"{t}_{k}": (r[t] or {}).get(k)
                for t in ("local", "http")
                for k in ("n", "agree", "disagree", "unavailable", "source", "note")
            }
            for r in res["verification"]
        ],
        "cost.csv": [{k: v for k, v in c.items() if k != "samples"} for c in res["cost"]["cells"]],
        "latency.csv": res["latency"],
        "capacity.csv": res["capacity"],
        "population.csv": [{k: v for k, v in r.items() if k != "fmr_measured"} for r in res["population"]],
        "accounts.csv": res["accounts"],
        "evasion.csv": res["evasion"]["attempts"],
        "real_copies.csv": [_flat_rate(c) for c in (res.get("real_copies") or {}).get("cells", [])],
        "corpus_distances.csv": [
            {k: v for k, v in d.items() if k not in ("histogram",)}
            for d in res["corpus"]["distances"].values()
        ],
    }
    tdir = out / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        _write_csv(tdir / name, rows)
    return [f"tables/{n}" for n in tables]


# ---------------------------------------------------------------- plain language


def _pooled(res: dict[str, Any], label: str, algo: str, family: str) -> dict[str, Any] | None:
    names = {p["name"] for p in res["perturbations"] if p["family"] == family}
    cells = [
        c
        for c in res["accuracy"]["fnmr"]
        if c["variant"] == label and c["algo"] == algo and c["perturbation"] in names
    ]
    if not cells:
        return None
    k, n = sum(c["k"] for c in cells), sum(c["n"] for c in cells)
    return {"k": k, "n": n, "rate": k / n if n else None}


def _meaning(res: dict[str, Any]) -> list[str]:
    algo = res["cost"]["algo"]
    hl = res["headline"]
    out: list[str] = []
    measured = [h for h in hl if h["fnmr_jpeg70"] and h["fnmr_jpeg70"]["rate"] is not None]
    fuzzy = [h for h in measured if h["matching"] == "fuzzy"]
    exact = [h for h in measured if h["matching"] == "exact"]
    if fuzzy:
        f = min(fuzzy, key=lambda h: h["fnmr_jpeg70"]["rate"])
        out.append(
            f"Fuzzy matching ({', '.join(sorted({h['protocol'] for h in fuzzy}))}) recognises re-saved copies "
            f"of known images: it missed {fmt_rate(f['fnmr_jpeg70'], False)} of JPEG-70 copies and "
            f"{fmt_rate(f['fnmr_everyday'], False)} across everyday edits ({algo}, default threshold)."
        )
        geo = _pooled(res, f["variant"], algo, "geometry")
        if geo and geo["rate"] is not None:
            out.append(
                f"Geometric edits defeat it: crops, rotations and mirroring were missed "
                f"{100 * geo['rate']:.0f}% of the time by the same matcher."
            )
    if exact:
        e = max(exact, key=lambda h: h["fnmr_jpeg70"]["rate"])
        best = min(exact, key=lambda h: ((h["fnmr_everyday"] or {}).get("rate") or 1.0))
        out.append(
            f"Exact private matching ({', '.join(sorted({h['protocol'] for h in exact}))}) only finds copies "
            f"whose hash is unchanged: {e['variant']} missed {fmt_rate(e['fnmr_jpeg70'], False)} of "
            f"JPEG-70 copies; the best exact variant ({best['variant']}) still missed "
            f"{fmt_rate(best['fnmr_everyday'], False)} of everyday edits."
        )
    att = res["evasion"]["attempts"]
    if att:
        ok = [a for a in att if a["success"]]
        psnr = sorted(a["psnr_db"] for a in ok if a["psnr_db"] is not None)
        med = psnr[len(psnr) // 2] if psnr else None
        out.append(
            f"Matching is easy to evade on purpose: a simple search using only the public hash function "
            f"pushed {len(ok)} of {len(att)} known images out of range"
            + (f", with changes too faint to notice (median PSNR {med:.0f} dB)" if med else "")
            + "."
        )
    fm = [h for h in hl if h["fmr_model"] is not None]
    pop = {(p["variant"], p["set_size"]): p for p in res["population"]}
    filt = [h for h in fm if (pop.get((h["variant"], h["fmr_model_at"])) or {}).get("filter_false_positive")]
    coll = [h for h in fm if h not in filt] or fm
    if fm:
        worst = max(coll, key=lambda h: h["fmr_model"])
        n = worst["fmr_model_at"]
        out.append(
            f"False matches of innocent images depend on the set size and on the hash. Under the model fitted "
            f"to this corpus, an innocent {algo} hash collides with a set of {n:,.0f} with probability "
            f"{fmt_sci(worst['fmr_model'])} ({worst['variant']}); real photo collections contain "
            "near-duplicates the model cannot see, so treat this as a floor."
        )
    if filt:
        f = max(filt, key=lambda h: h["fmr_model"])
        vol = max(res["config"]["population"]["daily_volumes"])
        out.append(
            f"Compressed filters add their own false positives: {f['protocol']}'s filter falsely matches an "
            f"innocent image with probability {fmt_sci(f['fmr_model'])} ({f['variant']}: one lookup per probe), "
            f"about {fmt_count(vol * f['fmr_model'])} innocent images a day at {fmt_big(vol)} images a day."
        )
    if fm:
        meas = worst.get("fmr_measured")
        if meas and meas["n"] and meas["k"] == 0:
            out.append(
                f"Directly, none of the {meas['n']} unrelated images in this run matched a set of "
                f"{meas['set_size']:,} ({worst['variant']}); a sample that size only rules out per-image rates "
                f"above {100 * meas['wilson'][1]:.2g}%, which is why the worked examples show a loose upper bound "
                "beside the model."
            )
    for a, label in (("phash", "pHash"), ("dhash", "dHash")):
        cells = [c for c in res["accuracy"]["fmr"] if c["algo"] == a and c["k"] > 0]
        if cells:
            c = max(cells, key=lambda c: c["rate"])
            out.append(
                f"64-bit {label} is much weaker: {c['k']} of {c['n']} unrelated images falsely matched a "
                f"set of {c['set_size']:,} ({c['variant']})."
            )
    cost = [h for h in hl if h["server_cpu_ms"] is not None and h["bytes_per_image"] is not None]
    if len(cost) >= 2:
        cheap = min(cost, key=lambda h: h["server_cpu_ms"])
        dear = max(cost, key=lambda h: h["server_cpu_ms"])
        heavy = max(cost, key=lambda h: h["bytes_per_image"])
        out.append(
            f"Privacy has a price in server time and bandwidth: per image, {dear['variant']} needs "
            f"{fmt_ms(dear['server_cpu_ms'])} of server CPU against {fmt_ms(cheap['server_cpu_ms'])} for "
            f"{cheap['variant']}, and {heavy['variant']} moves {fmt_bytes(heavy['bytes_per_image'])} per image "
            f"(set of {(dear.get('server_cpu_at') or dear['reference_set_size']):,})."
        )
    unver = [f"{r['variant']} ({r['algo']})" for r in res["verification"] if not r["verified"]]
    if unver:
        out.append(
            "Not every number could be checked against the real protocol code: "
            + ", ".join(unver[:8])
            + (" …" if len(unver) > 8 else "")
            + ". Those accuracy figures come from an unverified decision "
            "function; see 'Verification'."
        )
    else:
        out.append(
            "Every accuracy figure comes from a decision function that agreed with the real client and "
            "server code on every sampled query, "
            + (
                "in process and over HTTP."
                if any(r.get("http") for r in res["verification"])
                else "in process (this run exercised HTTP in the cost stage only)."
            )
        )
    src = res["corpus"]["source"]
    out.append(
        "The images are "
        + (
            "procedurally generated stand-ins for photographs"
            if src == "embedded"
            else "the folder given with --corpus"
        )
        + "; results on real photographs can differ (see "
        "'Corpus realism')."
    )
    if res.get("quick"):
        out.append(
            "This is a quick run: samples are small and the intervals wide. Run without --quick for "
            "decision-grade numbers."
        )
    return out


# ---------------------------------------------------------------- documents

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#1d2733;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2em;margin-top:2em}
.meaning{background:#f3f7fb;border-left:4px solid #2f6fa7;padding:.6em 1.2em}.meaning li{margin:.35em 0}
.tw{overflow-x:auto}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #d5dbe2;padding:.3em .5em;vertical-align:top}th{background:#eef2f6;text-align:left}
tr:nth-child(even) td{background:#fafbfc}figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #e3e7ec}
figcaption{font-size:.85em;color:#4a5866}.note{font-size:.85em;color:#4a5866}code{background:#f1f3f5;padding:0 .2em}
.bad{color:#b03a2e;font-weight:bold}
"""

_JS_HEAD = """
window.__bmErrors=[];
window.addEventListener('error',function(e){var t=e.target;window.__bmErrors.push(t&&t.tagName?('resource failed: '+
(t.src||t.href||t.tagName)):String(e.message));},true);
(function(){var ce=console.error;console.error=function(){window.__bmErrors.push(Array.prototype.join.call(arguments,' '));
return ce.apply(console,arguments);};})();
"""

_JS_TAIL = """
function __bmCheck(){var imgs=Array.prototype.slice.call(document.images);
var ok=imgs.filter(function(i){return i.complete&&i.naturalWidth>0;});
var b=document.body;b.setAttribute('data-figures-total',imgs.length);b.setAttribute('data-figures-loaded',ok.length);
b.setAttribute('data-errors',window.__bmErrors.length);b.setAttribute('data-error-text',window.__bmErrors.join(' | '));
b.setAttribute('data-check','done');}
if(document.readyState==='complete'){__bmCheck();}else{window.addEventListener('load',__bmCheck);}
"""


def _figure_html(fig: dict[str, str], out: Path) -> str:
    data = base64.b64encode((out / fig["png"]).read_bytes()).decode()
    return (
        f'<figure id="fig-{html.escape(fig["id"])}"><img alt="{html.escape(fig["title"])}" '
        f'src="data:image/png;base64,{data}"><figcaption><b>{html.escape(fig["title"])}.</b> '
        f'{html.escape(fig["caption"])} (<a href="{html.escape(fig["svg"])}">SVG</a>)</figcaption></figure>'
    )


def _sec(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _fmt(x: Any, spec: str, unit: str = "") -> str:
    """``x`` formatted, or "—" where the corpus gave nothing to measure."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}{unit}"


def _details(res: dict[str, Any], figs: dict[str, dict[str, str]], out: Path) -> str:
    def fig(i: str) -> str:
        return _figure_html(figs[i], out) if i in figs else ""

    parts = []
    c = res["corpus"]
    rows = [
        {
            "hash": d["algo"],
            "pairs": f"{d['pairs']:,}",
            "mean": _fmt(d["mean"], ".1f"),
            "binomial mean": f"{d['binomial_mean']:.0f}",
            "sd": _fmt(d["sd"], ".2f"),
            "binomial sd": f"{d['binomial_sd']:.2f}",
            "over-dispersion ρ": _fmt((d["beta_binomial"] or {}).get("rho"), ".4f"),
            "total variation vs binomial (2-bit bins)": _fmt(d["total_variation_vs_binomial"], ".3f"),
            "even distances": _fmt(None if d["even_fraction"] is None else 100 * d["even_fraction"], ".0f", "%"),
            "closest pair": str(d["min_distance"]),
            "pairs within threshold": f"{d['pairs_within_threshold']} (model {fmt_sci(d['pair_rate_beta_binomial'])}"
            f" per pair; binomial {fmt_sci(d['pair_rate_binomial'])})",
        }
        for d in c["distances"].values()
    ]
    parts.append(
        _sec(
            "Corpus realism",
            _p(
                f"{c['images']} images ({'embedded procedural corpus' if c['source'] == 'embedded' else 'folder ' + str(c['root'])}); "
                f"{c['known']} known (in the set), {c['unrelated']} unrelated; {c['below_quality_gate']} fall below PDQ "
                f"quality {c['min_quality']} and are never matched. Hashes of unrelated photographs should look like "
                "independent fair coins (binomial(bits, ½)); the table shows how far this corpus departs from that. "
                "Results on real photographs can differ: real collections have near-duplicates, flat images and shared "
                "templates that a procedural corpus lacks. PDQ and pHash set each bit by comparing with the median, so "
                "every hash has exactly half its bits set and distances between two hashes are always even; for them the "
                "comparison uses bins of two distances."
            )
            + _table_html(rows)
            + fig("corpus_distances"),
            "corpus",
        )
    )
    # accuracy
    pooled = [c2 for c2 in res["accuracy"]["fnmr"] if c2["family"] == "pooled"]
    rows = [
        {
            "variant": x["variant"],
            "hash": x["algo"],
            "edits": x["perturbation"],
            "missed": f"{x['k']}/{x['n']}",
            "FNMR (95% Wilson)": fmt_rate(x),
            "quality-gated": str(x["gated"]),
        }
        for x in pooled
    ]
    fm = [
        {
            "variant": x["variant"],
            "hash": x["algo"],
            "set size": f"{x['set_size']:,}",
            "false matches": f"{x['k']}/{x['n']}",
            "FMR (95% Wilson)": fmt_rate(x),
        }
        for x in res["accuracy"]["fmr"]
    ]
    acc = (
        _p(
            "False non-match rate (FNMR): share of edited copies of known images a protocol fails to match. "
            "False-match rate (FMR): share of unrelated images it matches. Intervals are 95% Wilson; "
            "fnmr.csv/fmr.csv add Clopper–Pearson. Perturbations: "
            + "; ".join(f"{p['name']} = {p['label']}" for p in res["perturbations"])
            + ". "
            + pipeline_sentence(res)
        )
        + _table_html(rows)
        + "".join(fig(f"fnmr_{a}") for a in c["distances"])
        + "".join(fig(f"det_{a}") + fig(f"distances_{a}") for a in c["distances"])
        + "<h3>False matches by set size</h3>"
        + _table_html(fm)
    )
    parts.append(_sec("Accuracy", acc, "accuracy"))
    # verification
    vrows = []
    for r in res["verification"]:
        for t in ("local", "http"):
            x = r[t]
            if x is None:
                continue
            vrows.append(
                {
                    "variant": r["variant"],
                    "hash": r["algo"],
                    "transport": "in process" if t == "local" else "HTTP (uvicorn)",
                    "decision function": r["decision"],
                    "sampled": str(x["n"]),
                    "agree": str(x["agree"]),
                    "disagree": str(x["disagree"]),
                    "no verdict": str(x["unavailable"]),
                    "verdict read from": x["source"],
                    "note": x["note"][:200],
                    "verified": "yes" if r["verified"] else "NO",
                }
            )
    parts.append(
        _sec(
            "Verification: decision functions vs the real protocols",
            _p(
                "Accuracy at scale comes from decision functions; each was run against the real client and server code "
                "on a stratified sample (half predicted matches, half non-matches, weighted towards the decision "
                "boundary), in process and through a real uvicorn server on loopback. Server-learns protocols are read "
                "through the operator's reveal interface after priming the account to its threshold."
            )
            + _table_html(vrows),
            "verification",
        )
    )
    # cost
    crow = []
    for x in res["cost"]["cells"]:
        if x.get("status") != "ok":
            crow.append(
                {
                    "variant": x["variant"],
                    "transport": x["transport"],
                    "set size": f"{x['set_size']:,}",
                    "status": x["status"],
                }
            )
            continue
        crow.append(
            {
                "variant": x["variant"],
                "transport": x["transport"],
                "set size": f"{x['set_size']:,}",
                "status": "ok",
                "queries": str(x["queries"]),
                "client crypto / image": fmt_ms(x["crypto_ms"]["mean"]),
                "client CPU / image": fmt_ms(x["client_cpu_ms"]["mean"]),
                "server CPU / image": fmt_ms(x["server_cpu_ms"]),
                "round trips": f"{x['requests']:.1f}",
                "bytes up": fmt_bytes(x["bytes_up"]),
                "bytes down": fmt_bytes(x["bytes_down"]),
                "one-time download": fmt_bytes(x["one_time_download_bytes"]),
                "predicted download": fmt_bytes(x["predicted_download_bytes"]),
                "server set-up": f"{x['setup_s']:.2f} s",
                "wall / image": fmt_ms(x["wall_ms"]["mean"]),
            }
        )
    m = res["machine"]
    h12 = res["cost"]["hash_12mp"]
    hc = res["cost"]["hash_corpus_ms"]
    hash_rows = [
        {
            "hash": a,
            "12 MP JPEG file (decode + hash)": fmt_ms(h12.get(a, {}).get("mean")),
            "corpus image (≤ 640 px, decoded)": fmt_ms(hc[a]["p50"]),
        }
        for a in hc
    ]
    parts.append(
        _sec(
            "Cost on this machine",
            _p(
                f"Measured on {m['cpu_model']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), Python "
                f"{m['python']}; load average before/after the cost stage {res['cost']['loadavg_before']} / "
                f"{res['cost']['loadavg_after']}. {res['cost']['note']}. In process: the protocol handler's CPU. HTTP: CPU "
                "of the whole uvicorn server process tree from /proc, so it includes HTTP parsing; at 100 ticks/s its "
                "resolution per query is 10 ms divided by the number of queries."
            )
            + _table_html(hash_rows)
            + _table_html(crow)
            + fig("cost_download")
            + fig("cost_server_cpu"),
            "cost",
        )
    )
    # latency
    lrow = [
        {
            "variant": x["variant"],
            "network": x["profile"],
            "p50": fmt_ms(x["p50_ms"]),
            "p95": fmt_ms(x["p95_ms"]),
            "p99": fmt_ms(x["p99_ms"]),
            "cold first image (p50)": fmt_ms(x["cold_p50_ms"]),
            "round trips": str(x["round_trips"]),
            "transfer": fmt_ms(x["transfer_ms"]),
        }
        for x in res["latency"]
    ]
    prow = [
        {
            "profile": p["name"],
            "RTT": f"{p['rtt_ms']:.0f} ms",
            "down": f"{p['down_mbps']} Mbit/s",
            "up": f"{p['up_mbps']} Mbit/s",
            "mean jitter": f"{p['jitter_ms']:.0f} ms",
            "source": p["source"],
        }
        for p in res["network_profiles"]
    ]
    parts.append(
        _sec(
            "End-to-end latency",
            _p(
                "Model: latency = hashing a 12 MP JPEG + client crypto + server CPU (+ HTTP overhead) + per round trip "
                "(RTT + exponential jitter) + (bytes + headers) / bandwidth, each cost drawn from this run's per-query "
                "measurements. The connection is warm and the server unloaded; a cold first image adds TCP and TLS "
                "handshakes and the one-time download. Slow start, loss and radio wake-up are not modelled."
            )
            + _table_html(prow)
            + _table_html(lrow)
            + fig("latency"),
            "latency",
        )
    )
    # capacity
    cap = res["config"]["capacity"]
    crows = [
        {
            "variant": x["variant"],
            "set size": f"{x['set_size']:,}",
            "server CPU / image": fmt_ms(x["server_cpu_ms"]),
            "images/s per core": fmt_sci(x["qps_per_core"]),
            **{f"cores for {k}/day": str(v) if v > 0 else "—" for k, v in x["cores"].items()},
            "basis": x["source"] + (" — extrapolated" if x["extrapolated"] else ""),
        }
        for x in res["capacity"]
    ]
    parts.append(
        _sec(
            "Server capacity",
            _p(
                f"Cores = images per day ÷ 86 400 × peak-to-mean {cap['peak_to_mean']} × CPU per image ÷ target "
                f"utilisation {cap['target_utilisation']}. CPU per image is fitted as a + b·N over the measured set sizes "
                "(the slope is kept only where it exceeds twice its standard error; the 'basis' column says which); "
                "sizes beyond the largest measured one are extrapolated (marked *), at most "
                f"{cap['max_extrapolation']:g}× beyond it and never from a single measured size (— = not estimated). Memory, disk and network limits are "
                "not modelled."
            )
            + _table_html(crows),
            "capacity",
        )
    )
    # population
    prow2 = [
        {
            "variant": x["variant"],
            "set size": f"{x['set_size']:,.0f}",
            "per-pair rate (model)": fmt_sci(x["pair_rate_model"]),
            "filter false positives": fmt_sci(x.get("filter_false_positive")),
            "per-image FMR (model)": fmt_sci(x["fmr_model"]),
            "measured FMR": fmt_rate(x["fmr_measured"])
            if x["fmr_measured"]
            else "not simulated at this size",
        }
        for x in res["population"]
    ]
    arows = [
        {
            "variant": x["variant"],
            "per-image rate": f"{fmt_sci(x['per_image_rate'])} ({x['per_image_rate_source']})",
            "images / account / year": f"{x['images_per_year']:,}",
            "threshold t": str(x["threshold"]),
            "P(flag) binomial": fmt_sci(x["binomial"])
            if x["binomial"]
            else (f"10^{x['log10_binomial']:.0f}" if x["log10_binomial"] is not None else "0"),
            "P(flag) Poisson": fmt_sci(x["poisson"])
            if x["poisson"]
            else (f"10^{x['log10_poisson']:.0f}" if x["log10_poisson"] is not None else "0"),
            "accounts flagged / year": fmt_count(x["accounts_flagged_per_year"]),
        }
        for x in res["accounts"]
    ]
    pop = res["config"]["population"]
    parts.append(
        _sec(
            "Population extrapolation",
            _p(
                "Per-image false-match rate FMR(N) = 1 − (1 − p)^N, with p the per-pair rate of the beta-binomial fitted "
                "to this corpus's unrelated pairs (exact matchers: the chance that a random unrelated hash equals one of "
                "the 2^k probes), plus, for approximate-filter protocols, 2^k × the filter's false-positive rate per lookup "
                "(the 'filter false positives' column). Assumes independent comparisons: near-duplicates in real collections break it, so these "
                "are floors. Innocent images falsely matched per day = daily volume × FMR(N). For threshold reporting an "
                f"account with n innocent images per year is flagged if X ≥ t, X ~ Binomial(n, FMR); {pop['accounts']:.0e} "
                "accounts assumed. Apple's 2021 threat-model review targeted below 10⁻¹² per account per year with t = 30."
            )
            + _table_html(prow2)
            + _table_html(arows)
            + fig("accounts"),
            "population",
        )
    )
    # evasion
    ev = res["evasion"]
    erows = []
    for a in dict.fromkeys(x["algo"] for x in ev["attempts"]):
        xs = [x for x in ev["attempts"] if x["algo"] == a]
        ok = [x for x in xs if x["success"]]
        ps = sorted(x["psnr_db"] for x in ok if x["psnr_db"] is not None)
        ss = sorted(x["ssim"] for x in ok)
        erows.append(
            {
                "hash": a,
                "evaded": f"{len(ok)}/{len(xs)}",
                "median queries": str(sorted(x["queries"] for x in ok)[len(ok) // 2]) if ok else "—",
                "median PSNR at success": f"{ps[len(ps) // 2]:.1f} dB" if ps else "—",
                "worst PSNR at success": f"{ps[0]:.1f} dB" if ps else "—",
                "median SSIM at success": f"{ss[len(ss) // 2]:.3f}" if ss else "—",
            }
        )
    parts.append(
        _sec(
            "Adversarial evasion",
            _p(
                f"Black-box random search (only hash outputs are used) on {ev['config']['max_side']}-px copies of known "
                f"images, at most {ev['config']['max_queries']} hash queries, each step a faint low-frequency pattern of "
                f"±{ev['config']['step']} grey levels, giving up below {ev['config']['min_psnr_db']} dB PSNR. Success = the "
                "hash moved beyond the default match threshold, so every protocol in this report misses the image. "
                "PSNR above about 35 dB and SSIM above 0.95 are generally invisible to a casual viewer."
            )
            + _table_html(erows)
            + fig("evasion"),
            "evasion",
        )
    )
    # method / run
    stage_rows = [
        {
            "stage": k,
            "seconds": str(v["seconds"]),
            "cached units": f"{v['cached_units']}/{v['units']}",
        }
        for k, v in res["stages"].items()
    ]
    parts.append(
        _sec(
            "This run",
            _p(
                f"Seed {res['seed']}; executor {res['executor']}; deterministic digest {res['deterministic_digest']} "
                "(identical for the same seed, configuration and corpus, wherever it runs). Schema "
                f"{res['schema']} {res['schema_version']} (docs/simulation-report.md). Command: {res['command']}"
            )
            + _table_html(stage_rows)
            + "<details><summary>Configuration</summary><pre>"
            + html.escape(json.dumps(res["config"], indent=1))
            + "</pre></details><details><summary>Machine</summary><pre>"
            + html.escape(json.dumps(res["machine"], indent=1))
            + "</pre></details>",
            "run",
        )
    )
    return "".join(parts)


def _html(res: dict[str, Any], figs: list[dict[str, str]], out: Path) -> str:
    byid = {f["id"]: f for f in figs}
    meaning = "".join(f"<li>{html.escape(s)}</li>" for s in _meaning(res))
    prot_rows = [
        {
            "protocol": p["name"],
            "who learns the verdict": p["learner"],
            "matching": p["matching"],
            "private": "yes" if p["private"] else "no",
            "server learns": "; ".join(p["leakage"]["server"]),
            "client learns": "; ".join(p["leakage"]["client"]),
        }
        for p in res["protocols"]
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>blindmatch simulation report</title><style>{_CSS}</style><script>{_JS_HEAD}</script></head>
<body data-check="pending">
<h1>Client-side hash matching: what each protocol costs and how often it errs</h1>
<p class="note">blindmatch simulation, {html.escape(res["generated_utc"])}, seed {res["seed"]}{" — QUICK RUN" if res.get("quick") else ""}.
Protocols: {html.escape(", ".join(p["name"] for p in res["protocols"]))}.</p>
{_sec("What this means", f'<ul class="meaning">{meaning}</ul>', "meaning")}
{_sec("Skipped on this corpus", "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped_lines(res)) + "</ul>", "skipped") if skipped_lines(res) else ""}
{_sec("Headline: protocols side by side", _p("Accuracy on " + res["cost"]["algo"] + " hashes (95% Wilson intervals in brackets); latency from the network model; server CPU measured on this machine. * = extrapolated beyond the measured set sizes; — = not estimated (beyond capacity.max_extrapolation × the largest measured size, or only one size measured).") + _table_html(headline_rows(res), "headline") + _table_html(prot_rows), "headline")}
{_sec("Real copies", _p(real_copy_sentence(res)) + _table_html(real_copy_rows(res), "copies"), "copies") if res.get("real_copies") else ""}
{_sec("Worked examples: deploying protocol X at volume V with set size N", _p("Each row answers: what would it cost, and how many innocent images would it flag? The model count assumes independent hashes (a floor; see Population extrapolation); the upper bound comes from this run’s direct measurement and is loose when the sample is small. * = server cost extrapolated.") + _table_html(_worked_rows(res), "worked"), "worked")}
{_details(res, byid, out)}
<script>{_JS_TAIL}</script>
</body></html>
"""


def _summary_md(res: dict[str, Any], csvs: list[str], figs: list[dict[str, str]]) -> str:
    lines = [
        "# blindmatch simulation summary",
        "",
        f"Seed {res['seed']}{' (quick run)' if res.get('quick') else ''}; corpus {res['corpus']['source']} "
        f"({res['corpus']['images']} images); machine {res['machine']['cpu_model']} × "
        f"{res['machine']['logical_cpus']}; wall time {res.get('wall_seconds', '?')} s; deterministic digest "
        f"`{res['deterministic_digest']}`.",
        "",
        "## What this means",
        "",
    ]
    lines += [f"- {s}" for s in _meaning(res)]
    if skipped_lines(res):
        lines += ["", "## Skipped on this corpus", ""] + [f"- {s}" for s in skipped_lines(res)]
    lines += [
        "",
        "## Headline",
        "",
        _table_md(headline_rows(res)),
        *(
            ["## Real copies", "", real_copy_sentence(res), "", _table_md(real_copy_rows(res))]
            if res.get("real_copies")
            else []
        ),
        "## Worked examples",
        "",
        _table_md(_worked_rows(res)),
        "## Files",
        "",
        "- `report.html` — the full report (self-contained)",
        "- `results.json` — every number "
        f"(schema {res['schema_version']}, documented in docs/simulation-report.md)",
    ]
    lines += [f"- `{c}`" for c in csvs] + [f"- `{f['png']}` / `{f['svg']}` — {f['title']}" for f in figs]
    return "\n".join(lines) + "\n"


def write_outputs(res: dict[str, Any], out: Path) -> None:
    """Validate, then write every output file of a run into ``out``."""
    figs = make_figures(res, out) if res["config"]["report"]["figures"] else []
    clean = sanitize(res)
    errors = validate(clean)
    if errors:
        raise ValueError("results do not match their schema: " + "; ".join(errors[:10]))
    atomic_write_text(out / "results.json", json.dumps(clean, indent=1))
    atomic_write_text(out / "results.schema.json", json.dumps(SCHEMA, indent=1))
    csvs = _csvs(clean, out)
    atomic_write_text(out / "summary.md", _summary_md(clean, csvs, figs))
    atomic_write_text(out / "report.html", _html(clean, figs, out))
