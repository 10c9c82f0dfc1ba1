"""Figures for the report: matplotlib (Agg), each saved as PNG and SVG.

Why both formats: PNG is embedded in the self-contained ``report.html``; SVG is
for slides and papers. Every figure states its set size and sample size in the
caption so it is never quoted without them.

Why every figure guards its inputs: the figures are drawn after every
measurement is done, on whatever corpus the user brought. Empty, all-zero,
single-value and NaN inputs draw what exists (log axes only over positive
values); a figure that still cannot be drawn is listed as skipped with the
reason, and the report is written without it.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from blindmatch.client import get_algo
from blindmatch.protocol import REGISTRY
from scipy import stats as st

from .tables import row_label

__all__ = ["FIGURES", "make_figures"]

plt.rcParams.update(
    {
        # one resolution for layout and PNG: text measured by tight_layout is reused when drawing
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "font.size": 9,
        "axes.titlesize": 10,
        "svg.hashsalt": "blindmatch",
        "axes.grid": True,
        "grid.alpha": 0.3,
    }
)


def _flat(values: Any) -> Any:
    """Numbers from nested lists and arrays; None and non-numbers are dropped."""
    if isinstance(values, int | float | np.number):
        yield float(values)
    elif isinstance(values, list | tuple | np.ndarray):
        for v in values:
            yield from _flat(v)


def _log_if_positive(ax: Any, axis: str, values: Any) -> bool:
    """Log scale on ``axis`` only when some value is positive and finite (otherwise linear)."""
    v = np.asarray(list(_flat(values)), dtype=float)
    if not np.any(np.isfinite(v) & (v > 0)):
        return False
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    return True


def _save(fig: Any, figdir: Path, stem: str, title: str, caption: str) -> dict[str, str]:
    figdir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figdir / f"{stem}.png")
    fig.savefig(figdir / f"{stem}.svg", metadata={"Date": None})
    plt.close(fig)
    return {
        "id": stem,
        "title": title,
        "caption": caption,
        "png": f"figures/{stem}.png",
        "svg": f"figures/{stem}.svg",
    }


def _corpus(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    dist = {a: d for a, d in res["corpus"]["distances"].items() if get_algo(a).perceptual}
    if not dist:
        return []
    fig, axes = plt.subplots(2, len(dist), figsize=(4.2 * len(dist), 5.6), squeeze=False)
    for j, (a, d) in enumerate(dist.items()):
        bits = d["bits"]
        ks = np.arange(bits + 1)
        h = np.asarray(d["histogram"], dtype=float)
        emp = h / max(1.0, h.sum())
        binom = st.binom.pmf(ks, bits, 0.5)
        bb = d["beta_binomial"]
        fit = (
            st.betabinom.pmf(ks, bits, bb["alpha"], bb["beta"])
            if bb["alpha"]
            else st.binom.pmf(ks, bits, bb["mean"] / bits)
        )
        # median-thresholded hashes (PDQ, pHash) have even distances only: use 2-bit bins
        width = 2 if d.get("even_fraction", 0) > 0.99 else 1
        edges = np.arange(0, bits + 2 + width, width)[: (bits + width) // width + 1] - 0.5
        if width == 2:
            emp, binom, fit = (
                np.append(x, 0.0 if len(x) % 2 else [])[: 2 * (len(edges) - 1)].reshape(-1, 2).sum(axis=1)
                for x in (emp, binom, fit)
            )
            ks = edges[:-1] + 1.0
        for i, log in enumerate((False, True)):
            ax = axes[i][j]
            ax.stairs(
                emp,
                edges,
                fill=True,
                color="#7aa6c2",
                label=f"corpus ({d['pairs']:,} pairs)",
            )
            ax.plot(ks, binom, "k--", lw=1, label="binomial(bits, ½)")
            ax.plot(ks, fit, color="#c0392b", lw=1, label="beta-binomial fit")
            ax.axvline(d["threshold"], color="#e67e22", lw=1, label=f"match threshold {d['threshold']}")
            if log:
                ax.set_yscale("log")
                ax.set_ylim(1e-12, 1)
            ax.set_title(f"{a}: unrelated-pair distance" + (" (log scale)" if log else ""))
            ax.set_xlabel("Hamming distance (bits)")
            ax.set_ylabel("fraction of pairs" + (" per 2-bit bin" if width == 2 else ""))
            if i == 0:
                ax.legend(fontsize=7)
    return [
        _save(
            fig,
            figdir,
            "corpus_distances",
            "Unrelated images: hash distances vs binomial(bits, ½)",
            "Distance between hashes of unrelated corpus images, with the fair-coin binomial model and "
            "the over-dispersed beta-binomial fitted to the corpus. Real photographs can differ.",
        )
    ]


def _heatmaps(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    out = []
    cells = res["accuracy"]["fnmr"]
    rows = [p["name"] for p in res["perturbations"]] + ["everyday edits", "all edits"]
    for a in res["corpus"]["distances"]:
        labels = list(dict.fromkeys(c["variant"] for c in cells if c["algo"] == a))
        if not labels:
            continue
        m = np.full((len(rows), len(labels)), np.nan)
        for c in cells:
            if c["algo"] == a and c["perturbation"] in rows:
                m[rows.index(c["perturbation"]), labels.index(c["variant"])] = c["rate"]
        fig, ax = plt.subplots(figsize=(max(5.5, 2.4 + 0.9 * len(labels)), 0.28 * len(rows) + 1.6))
        im = ax.imshow(m, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.grid(False)
        for i in range(len(rows)):
            for j in range(len(labels)):
                if not np.isnan(m[i, j]):
                    ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, label="false non-match rate")
        n = next((c["n"] for c in cells if c["algo"] == a), 0)
        ax.set_title(f"{a}: % of edited copies missed")
        out.append(
            _save(
                fig,
                figdir,
                f"fnmr_{a}",
                f"Misses per edit ({a})",
                f"False non-match rate (%) of each protocol variant on edited copies of known images, "
                f"{a} hashes, {n} images per cell, set of {res['database']['verify_set_size']:,}. "
                "Confidence intervals are in fnmr.csv.",
            )
        )
    return out


def _det(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    out = []
    for a, d in res["accuracy"]["det"].items():
        if not get_algo(a).perceptual:
            continue
        taus = np.asarray(d["thresholds"])
        vsize = str(res["database"]["verify_set_size"])
        fmr = np.asarray(d["fmr"][vsize])
        floor_n = 0.5 / max(1, d["n_negative"])
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for fam, fn in d["fnmr"].items():
            fn = np.asarray(fn)
            lw = 2.0 if fam == "all edits" else 1.0
            ax1.plot(
                np.maximum(fmr, floor_n),
                np.maximum(fn, 0.5 / max(1, d["n_positive"])),
                lw=lw,
                label=fam,
            )
            ax2.plot(taus, fn, lw=lw, label=f"FNMR {fam}")
        t0 = d["default_threshold"]
        all_fn = np.asarray(d["fnmr"]["all edits"])
        ax1.plot(
            [max(fmr[t0], floor_n)],
            [max(all_fn[t0], 0.5 / max(1, d["n_positive"]))],
            "ko",
            label=f"default threshold {t0}",
        )
        _log_if_positive(ax1, "x", np.maximum(fmr, floor_n))
        _log_if_positive(
            ax1, "y", [0.5 / max(1, d["n_positive"])] + [v for fn in d["fnmr"].values() for v in fn]
        )
        ax1.set_xlabel(f"false-match rate (unrelated images, set of {int(vsize):,})")
        ax1.set_ylabel("false non-match rate (edited known images)")
        ax1.set_title(f"{a}: DET curve over the threshold (fuzzy matching)")
        ax1.legend(fontsize=7)
        for size, f in d["fmr"].items():
            ax2.plot(taus, f, "--", lw=1.2, label=f"FMR, set of {int(size):,}")
        ax2.axvline(t0, color="k", lw=0.8)
        ax2.set_xlabel("threshold (Hamming distance)")
        ax2.set_ylabel("rate")
        ax2.set_title(f"{a}: error rates vs threshold")
        ax2.legend(fontsize=6, ncol=2)
        out.append(
            _save(
                fig,
                figdir,
                f"det_{a}",
                f"DET curve and error rates vs threshold ({a})",
                f"Left: trade-off between misses and false matches as the fuzzy threshold moves "
                f"({d['n_positive']} edited images, {d['n_negative']} unrelated images; zero rates are "
                f"drawn at half a count). Right: the same rates against the threshold, FMR for every "
                "simulated set size.",
            )
        )
    return out


def _distances(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    out = []
    fam_of = {p["name"]: p["family"] for p in res["perturbations"]}
    for a, h in res["accuracy"]["histograms"].items():
        if not get_algo(a).perceptual:
            continue
        bits = get_algo(a).bits
        fig, ax = plt.subplots(figsize=(8, 3.8))
        fams: dict[str, np.ndarray] = {}
        for name, counts in h["own_by_perturbation"].items():
            if fam_of[name] == "control":
                continue
            fams[fam_of[name]] = fams.get(fam_of[name], np.zeros(bits + 1)) + np.asarray(counts)
        ks = np.arange(bits + 1)
        for fam, c in fams.items():
            ax.step(
                ks,
                c / max(1, c.sum()),
                where="mid",
                lw=1.2,
                label=f"edited copy vs original: {fam}",
            )
        u = np.asarray(h["unrelated_nearest_verify"], dtype=float)
        ax.fill_between(
            ks,
            u / max(1, u.sum()),
            step="mid",
            alpha=0.3,
            color="grey",
            label="unrelated image vs nearest set entry",
        )
        ax.axvline(get_algo(a).default_threshold, color="k", lw=1, label="default threshold")
        ax.set_xlabel("Hamming distance (bits)")
        ax.set_ylabel("fraction")
        ax.set_title(f"{a}: how far edits move the hash")
        ax.legend(fontsize=7, ncol=2)
        out.append(
            _save(
                fig,
                figdir,
                f"distances_{a}",
                f"Distance histograms ({a})",
                "Distance from each edited copy's hash to its original's, by family of edit, and from "
                "unrelated images to their nearest set entry. Anything left of the line matches a fuzzy "
                "protocol; only distance 0 matches an exact one.",
            )
        )
    return out


def _cost(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    cells = [c for c in res["cost"]["cells"] if c.get("status") == "ok"]
    if not cells:
        return []
    out = []
    fig, ax = plt.subplots(figsize=(7, 4))
    grid = np.logspace(3, 6, 13)
    for name in dict.fromkeys(c["protocol"] for c in cells):
        p = REGISTRY.get(name)
        if p is not None:
            pred = [max(1, p.download_bytes(int(n), get_algo(res["cost"]["algo"]))) for n in grid]
            ax.plot(grid, pred, "--", lw=1, label=f"{name} (protocol's prediction)")
        pts = [(c["set_size"], max(1, c["one_time_download_bytes"])) for c in cells if c["protocol"] == name]
        if pts:
            ax.plot(*zip(*sorted(pts), strict=True), "o", label=f"{name} (measured)")
    ax.set_xscale("log")
    _log_if_positive(ax, "y", [ln.get_ydata() for ln in ax.get_lines()] or [0])
    ax.set_xlabel("set size (hashes)")
    ax.set_ylabel("one-time download (bytes; 1 = none)")
    ax.set_title("One-time client download vs set size")
    ax.legend(fontsize=7)
    out.append(
        _save(
            fig,
            figdir,
            "cost_download",
            "One-time download vs set size",
            "Bytes a new client downloads once (filter, table, keys, manifest): measured on the first "
            "query, and the protocol's own prediction across set sizes.",
        )
    )
    fig, ax = plt.subplots(figsize=(7, 4))
    for label in dict.fromkeys(c["variant"] for c in cells):
        for tr, mk in (("local", "o-"), ("http", "s:")):
            pts = sorted(
                (c["set_size"], c["server_cpu_ms"])
                for c in cells
                if c["variant"] == label and c["transport"] == tr and c["server_cpu_ms"] > 0
            )
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    mk,
                    label=f"{label} ({'handler' if tr == 'local' else 'HTTP server'})",
                )
    if not ax.get_lines():
        plt.close(fig)
        return out
    ax.set_xscale("log")
    _log_if_positive(ax, "y", np.concatenate([ln.get_ydata() for ln in ax.get_lines()]))
    ax.set_xlabel("set size (hashes)")
    ax.set_ylabel("server CPU per query (ms)")
    ax.set_title("Server CPU per query vs set size")
    ax.legend(fontsize=6, ncol=2)
    out.append(
        _save(
            fig,
            figdir,
            "cost_server_cpu",
            "Server CPU per query",
            "Protocol handler CPU in process (circles) and the whole uvicorn server process over "
            "loopback HTTP (squares), per query.",
        )
    )
    return out


def _latency(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    rows = res["latency"]
    if not rows:
        return []
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    labels = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(
        1,
        len(profiles),
        figsize=(3.6 * len(profiles), 0.35 * len(labels) + 1.8),
        sharey=True,
        squeeze=False,
    )
    for ax, prof in zip(axes[0], profiles, strict=True):
        y = np.arange(len(labels))
        get = {r["variant"]: r for r in rows if r["profile"] == prof}
        p50 = [get[lab]["p50_ms"] if lab in get else np.nan for lab in labels]
        p95 = [get[lab]["p95_ms"] if lab in get else np.nan for lab in labels]
        p99 = [get[lab]["p99_ms"] if lab in get else np.nan for lab in labels]
        ax.barh(y, p50, color="#5b8db8", label="p50")
        ax.errorbar(p95, y, fmt="|", color="k", ms=10, label="p95")
        ax.plot(p99, y, "x", color="#c0392b", label="p99")
        ax.set_yticks(y, labels)
        _log_if_positive(ax, "x", p50 + p95 + p99)
        ax.set_xlabel("ms per image (warm)")
        ax.set_title(prof)
        ax.legend(fontsize=6)
    out = [
        _save(
            fig,
            figdir,
            "latency",
            "End-to-end latency per image",
            "Modelled warm latency per image (hash + crypto + round trips + transfer + server) from this "
            "run's measurements; see the latency model section.",
        )
    ]
    return out


def _evasion(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    att = res["evasion"]["attempts"]
    if not att:
        return []
    algos = list(dict.fromkeys(a["algo"] for a in att))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    rates = [float(np.mean([bool(x["success"]) for x in att if x["algo"] == a])) for a in algos]
    ax1.bar(algos, rates, color="#c0392b")
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("share of images evaded")
    ax1.set_title("Black-box evasion success")
    for i, a in enumerate(algos):
        ok = [
            x
            for x in att
            if x["algo"] == a and x["success"] and x["psnr_db"] is not None and math.isfinite(x["psnr_db"])
        ]
        ax2.scatter(
            [x["queries"] for x in ok],
            [x["psnr_db"] for x in ok],
            s=14,
            label=a,
            marker="os^d"[i % 4],
        )
    _log_if_positive(ax2, "x", [x["queries"] for x in att if x["success"]])
    ax2.set_xlabel("hash queries needed")
    ax2.set_ylabel("PSNR at success (dB; higher = less visible)")
    ax2.set_title("Cost and visibility of successful evasions")
    if ax2.collections:
        ax2.legend(fontsize=7)
    return [
        _save(
            fig,
            figdir,
            "evasion",
            "Adversarial evasion",
            f"{len(att)} attacks on {len({x['image'] for x in att})} known images: a random search "
            "adds faint low-frequency patterns until the hash moves past the match threshold.",
        )
    ]


def _accounts(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    rows = res["accounts"]
    if not rows:
        return []
    label = rows[0]["variant"]
    rows = [r for r in rows if r["variant"] == label]
    fig, ax = plt.subplots(figsize=(7, 4))
    for (src, t), grp in _group(rows, ("per_image_rate_source", "threshold")).items():
        grp = sorted(grp, key=lambda r: r["images_per_year"])
        ys = [r["log10_binomial"] if r["log10_binomial"] is not None else -320 for r in grp]
        if max(ys) < -300:
            continue
        ax.plot([r["images_per_year"] for r in grp], ys, "o-", ms=3, label=f"t={t}, rate {src}")
    ax.axhline(-12, color="k", lw=0.8, ls=":", label="10⁻¹² (Apple's stated target)")
    ax.set_xscale("log")
    ax.set_xlabel("innocent images per account per year")
    ax.set_ylabel("log₁₀ P(account falsely flagged)")
    ax.set_title(f"{label}: innocent account reaching the threshold")
    ax.legend(fontsize=6)
    return [
        _save(
            fig,
            figdir,
            "accounts",
            "Innocent accounts flagged at threshold t",
            "Binomial tail P(X ≥ t), X ~ Binomial(images per year, per-image false-match rate); curves "
            "below 10⁻³⁰⁰ are omitted.",
        )
    ]


def _group(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    g: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        g.setdefault(tuple(r[k] for k in keys), []).append(r)
    return g


_MARK = {"client": "o", "server": "s", "both": "X", "nobody": "D", "client-or-server": "^"}


def _label_slots(xs: list[float], ys: list[float], log_x: bool) -> list[int]:
    """A vertical slot per point label: labels of points that nearly coincide stack upwards
    instead of printing over each other (variants of one protocol often cost the same)."""
    if log_x:  # a log axis cannot show x ≤ 0: such a point's label sits at the lowest shown x
        low = min((x for x in xs if x > 0), default=1.0)
        us = [math.log10(max(x, low)) for x in xs]
    else:
        us = list(xs)
    span = (max(us) - min(us) if us else 0.0) or 1.0
    placed: list[tuple[float, float, int]] = []
    for u, y in zip(us, ys, strict=True):
        taken = {k for pu, py, k in placed if abs(pu - u) / span < 0.25 and abs(py - y) < 0.06}
        placed.append((u, y, next(k for k in itertools.count() if k not in taken)))
    return [k for _, _, k in placed]


def _frontier(res: dict[str, Any], figdir: Path) -> list[dict[str, str]]:
    """Recall on everyday edits against server CPU at 10^6 entries and bytes per query."""
    pts = [
        f
        for f in res.get("frontier", [])
        if f["recall_everyday"] is not None and f["server_cpu_ms_at_1e6"] is not None
    ]
    if not pts:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, key, label in (
        (axes[0], "server_cpu_ms_at_1e6", "server CPU per query at 10^6 entries (ms)"),
        (axes[1], "bytes_per_query", "bytes per query"),
    ):
        shown = [f for f in pts if f[key] is not None and math.isfinite(f[key])]
        log_x = _log_if_positive(ax, "x", [f[key] for f in shown])
        slots = _label_slots([f[key] for f in shown], [f["recall_everyday"]["rate"] for f in shown], log_x)
        for f, slot in zip(shown, slots, strict=True):
            x = f[key]
            hollow = key == "server_cpu_ms_at_1e6" and f["server_cpu_basis"] in (
                "extrapolated",
                "lower bound",
            )
            r = f["recall_everyday"]
            ax.errorbar(
                [x],
                [r["rate"]],
                yerr=[[r["rate"] - r["low"]], [r["high"] - r["rate"]]],
                fmt=_MARK.get(f["learner"], "o"),
                mfc="none" if hollow else None,
                ms=7,
                capsize=2,
            )
            ax.annotate(
                row_label(f, res),
                (x, r["rate"]),
                fontsize=6,
                xytext=(4, 3 + 7 * slot),
                textcoords="offset points",
            )
            if f.get("recall_real_copies"):
                ax.plot([x], [f["recall_real_copies"]["rate"]], "k*", ms=6)
        ax.set_xlabel(label)
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("recall on everyday edits (95% interval)")
    for who, m in _MARK.items():
        axes[1].plot([], [], m, color="grey", label=f"verdict to {who}")
    axes[1].legend(fontsize=6, loc="center right")  # the mid-recall, high-traffic corner is usually empty
    fig.suptitle("The trade-off: recall against server cost and traffic")
    return [
        _save(
            fig,
            figdir,
            "frontier",
            "Recall against cost, per protocol variant",
            "Each point is a protocol variant (marker: who learns the verdict; hollow: server CPU "
            "extrapolated or a lower bound; ★: recall on real copies, when given). The table beside "
            "it adds the adversary model, trust assumption and bits of the hash revealed.",
        )
    ]


FIGURES = (_frontier, _corpus, _heatmaps, _det, _distances, _cost, _latency, _evasion, _accounts)


def make_figures(res: dict[str, Any], out: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Draw every figure into ``out/figures``; returns their descriptions and what was skipped, and why."""
    figdir = out / "figures"
    figs: list[dict[str, str]] = []
    skipped: list[str] = []
    for fn in FIGURES:
        name = fn.__name__.strip("_")
        try:
            made = fn(res, figdir)
        except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError) as e:
            plt.close("all")
            skipped.append(f"figure '{name}' ({type(e).__name__}: {str(e)[:120]})")
            continue
        if not made:
            skipped.append(f"figure '{name}' (nothing to draw in this run)")
        figs.extend(made)
    return figs, skipped
