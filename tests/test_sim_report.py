"""The report stage: the frontier leads, false matches are measured first, no cell is blank, labels
follow the configured sizes, and every figure survives empty, all-zero, single-value and NaN inputs.

All tests read the session's one tiny run (tests/sim_tiny.py) and re-derive or re-render from its
results in process; none runs the simulator again.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from blindmatch.protocol import REGISTRY
from blindmatch.sim.decide.variants import protocol_variants
from blindmatch.sim.derive import DERIVED_KEYS, derive
from blindmatch.sim.derive.frontier import frontier_rows
from blindmatch.sim.report.plots import FIGURES
from blindmatch.sim.report.render import write_outputs
from blindmatch.sim.report.tables import frontier_table, headline_rows, worked_rows

Run = tuple[Path, dict[str, Any], str]


def _rederive(res: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Derived tables again from a run's measurements under another configuration (no new run)."""
    variants = {p["name"]: protocol_variants(REGISTRY[p["name"]], cfg) for p in res["protocols"]}
    algos = {p["name"]: p["algos"] for p in res["protocols"]}
    cost = res["cost"]
    return derive(
        cfg,
        variants,
        res["corpus"]["distances"],
        res["accuracy"],
        res["verification"],
        cost,
        res["evasion"]["attempts"],
        res["seed"],
        algos,
    )


def _with(res: dict[str, Any], derived: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(res)
    for k in DERIVED_KEYS:
        out[k] = derived[k]
    return out


def test_frontier_comes_first_with_one_point_per_variant(sim_tiny: Run) -> None:
    out, res, _ = sim_tiny
    labels = [h["variant"] for h in res["headline"]]
    assert [f["variant"] for f in res["frontier"]] == labels
    html = (out / "report.html").read_text()
    assert html.index('id="frontier"') < html.index('id="headline"') < html.index('id="worked"')
    assert 'id="fig-frontier"' in html
    md = (out / "summary.md").read_text()
    assert md.index("## The trade-off") < md.index("## Headline")
    for f in res["frontier"]:
        assert f["recall_everyday"] is not None and 0 <= f["recall_everyday"]["rate"] <= 1
        assert f["adversary"] and f["trust"] and f["revealed"]
    plain = next(f for f in res["frontier"] if f["variant"] == "plain")
    assert plain["revealed"] == "all 256 bits to the server" and plain["learner"] == "both"


def test_a_protocol_without_the_cost_hash_is_reported_on_its_own(sim_tiny: Run) -> None:
    """he runs pHash only in the tiny run: it is costed, headlined and plotted on pHash, and says so."""
    out, res, _ = sim_tiny
    assert res["cost"]["algo"] == "pdq"
    for rows in (res["headline"], res["frontier"], res["cost"]["cells"]):
        assert {r["protocol"] for r in rows} == set(REGISTRY)
        assert all(r["algo"] == ("phash" if r["protocol"] == "he" else "pdq") for r in rows)
    labels = [r["Protocol"] for r in headline_rows(res)]
    assert "he client-learns (pHash)" in labels and "plain" in labels
    assert "he server-learns (pHash)" in (out / "summary.md").read_text()


def test_each_cost_cell_is_measured_once(sim_tiny: Run) -> None:
    """One cell per variant, hash, transport and set size; a multi-process protocol (mpc), whose
    in-process session is loopback HTTP too, is not measured twice at a size in both lists."""
    _, res, _ = sim_tiny
    keys = [(c["variant"], c["algo"], c["transport"], c["set_size"]) for c in res["cost"]["cells"]]
    assert len(keys) == len(set(keys))
    mpc = {k[3] for k in keys if k[0].startswith("mpc ")}
    assert mpc == {200, 400}  # every configured size, over HTTP


def test_headline_false_matches_are_measured_bounds(sim_tiny: Run) -> None:
    _, res, _ = sim_tiny
    d = res["corpus"]["distances"]["pdq"]
    for h in res["headline"]:
        m = h["fmr_pair"]
        assert m["n"] == d["pairs"] and h["fmr_bound_label"] == f"upper bound from {d['pairs']:,} pairs"
        # a dihedral variant makes 8 comparisons per pair: 1 - (1 - p)^8 of the measured bound
        looks = 8 if h["variant"].endswith("dihedral") else 1
        assert h["fmr_pair_upper95"] == pytest.approx(1 - (1 - m["clopper_pearson"][1]) ** looks)
        if h["fmr_model_status"] != "accepted":
            assert h["fmr_model"] is None
    rows = headline_rows(res)
    assert any(k.startswith("Unrelated pairs falsely matched (measured") for k in rows[0])
    statuses = {r["calibration"]["status"] for r in res["false_matches"]}
    assert statuses <= {"accepted", "rejected", "not checked"}
    for r in res["false_matches"]:
        assert (r["model_pair_rate"] is None) == (r["calibration"]["status"] != "accepted"), r
        assert r["pairs_needed"]["1e-06"] == 3_688_878


def test_population_figures_come_from_the_bound(sim_tiny: Run) -> None:
    _, res, _ = sim_tiny
    for p in res["population"]:
        up = p["pair_rate_upper95"]
        expect = 1 - (1 - up) ** p["set_size"]
        assert math.isclose(
            p["fmr_upper95"], expect + p["filter_false_positive"] * (1 - expect), rel_tol=1e-9
        )
    for w in res["worked_examples"]:
        assert w["innocent_flagged_per_day_bound"] is not None and w["bound_label"].startswith("upper bound")


def _blank(v: str) -> bool:
    return v.strip() in ("", "—", "-", "nan", "None")


def test_no_blank_cells(sim_tiny: Run) -> None:
    _, res, _ = sim_tiny
    for rows in (headline_rows(res), worked_rows(res), frontier_table(res)):
        for r in rows:
            assert not [k for k, v in r.items() if _blank(v)], r
    for c in res["capacity"]:
        assert c["server_cpu_ms"] is not None or c["note"], c


def test_costs_beyond_the_measured_sizes_are_extrapolated_not_blank(sim_tiny: Run) -> None:
    _, res, _ = sim_tiny
    cfg = copy.deepcopy(res["config"])
    cfg["capacity"]["max_extrapolation"] = 2.0  # 10^6 entries is far beyond this run's 400
    new = _with(res, _rederive(res, cfg))
    for h in new["headline"]:
        ca = h["cores_at"]
        assert ca["cores"] is not None or ca["basis"] == "not estimated", ca
        if ca["cores"] is not None and ca["basis"] == "extrapolated":
            assert "beyond capacity.max_extrapolation" in ca["note"]
    cells = [r[next(k for k in r if k.startswith("Server cores"))] for r in headline_rows(new)]
    assert all(c[0].isdigit() or c.startswith(("≥", "not estimated:")) for c in cells), cells


def test_labels_follow_the_configured_sizes(sim_tiny: Run) -> None:
    """A run whose reference size was never measured labels its columns with the size it used."""
    _, res, _ = sim_tiny
    cfg = copy.deepcopy(res["config"])
    cfg["network"]["reference_set_size"] = 10_000  # the cost stage measured 200 and 400 only
    new = _with(res, _rederive(res, cfg))
    assert {h["reference_set_size"] for h in new["headline"]} == {400}
    header = " ".join(headline_rows(new)[0])
    assert "10,000" not in header and "N = 400" in header


def test_frontier_takes_real_copies_and_new_variants(sim_tiny: Run, tmp_path: Path) -> None:
    """Hooks for real copy pairs (accuracy.real_copies) and variants added later (e.g. dihedral)."""
    res = copy.deepcopy(sim_tiny[1])
    extra = copy.deepcopy(next(h for h in res["headline"] if h["variant"] == "plain"))
    extra["variant"] = "plain dihedral"
    res["headline"].append(extra)
    res["accuracy"]["real_copies"] = [
        {"variant": "plain", "algo": "pdq", "label": "screenshot", "k": 3, "n": 10},
        {"variant": "plain dihedral", "algo": "pdq", "label": "screenshot", "k": 1, "n": 10},
    ]
    variants = {v["label"]: v for p in res["protocols"] for v in p["variants"]}
    res["frontier"] = frontier_rows(res["headline"], res["accuracy"], variants, "pdq")
    real = {f["variant"]: f["recall_real_copies"] for f in res["frontier"]}
    assert math.isclose(real["plain"]["rate"], 0.7) and math.isclose(real["plain dihedral"]["rate"], 0.9)
    assert real["oprf k=0"] is None
    rows = frontier_table(res)
    assert rows[-1]["Variant"] == "plain dihedral" and "Recall, real copies (95%)" in rows[0]
    # the frontier is the one figure that reads these hooks (the others are drawn as in the run)
    frontier = next(f for f in FIGURES if f.__name__ == "_frontier")
    assert [f["id"] for f in frontier(res, tmp_path / "figures")] == ["frontier"]
    assert (tmp_path / "figures" / "frontier.png").stat().st_size > 0
    res["config"]["report"]["figures"] = False
    write_outputs(res, tmp_path)
    assert "Recall, real copies" in (tmp_path / "report.html").read_text()


def _degenerate(res: dict[str, Any], kind: str) -> dict[str, Any]:
    r = json.loads(json.dumps(res))
    if kind == "empty":
        r["cost"]["cells"], r["latency"], r["accounts"], r["frontier"] = [], [], [], []
        r["evasion"]["attempts"] = []
        r["accuracy"]["fnmr"], r["accuracy"]["det"], r["accuracy"]["histograms"] = [], {}, {}
    elif kind == "all-zero":
        for c in r["cost"]["cells"]:
            if c.get("status") == "ok":
                c["server_cpu_ms"], c["one_time_download_bytes"] = 0.0, 0
        for x in r["latency"]:
            x["p50_ms"] = x["p95_ms"] = x["p99_ms"] = 0.0
        for d in r["corpus"]["distances"].values():
            d["histogram"] = [0] * len(d["histogram"])
        for f in r["frontier"]:
            f["server_cpu_ms_at_1e6"], f["bytes_per_query"] = 0.0, 0
    elif kind == "single-value":
        r["evasion"]["attempts"] = r["evasion"]["attempts"][:1]
        r["headline"], r["frontier"] = r["headline"][:1], r["frontier"][:1]
        r["latency"] = r["latency"][:1]
    elif kind == "nan":
        for x in r["latency"]:
            x["p50_ms"] = None
        for f in r["frontier"]:
            f["server_cpu_ms_at_1e6"] = None
        for a in r["evasion"]["attempts"]:
            a["psnr_db"] = None
    elif kind == "evasion-4":
        # four evasion images, none with a positive query count (the figure once crashed on it)
        base = r["evasion"]["attempts"][0]
        r["evasion"]["attempts"] = [
            base | {"image": i, "success": i % 2 == 0, "queries": 0, "psnr_db": None} for i in range(4)
        ]
    return r


@pytest.mark.parametrize("kind", ["empty", "all-zero", "single-value", "nan", "evasion-4"])
def test_figures_and_report_survive_degenerate_inputs(sim_tiny: Run, tmp_path: Path, kind: str) -> None:
    _, res, _ = sim_tiny
    r = _degenerate(res, kind)
    write_outputs(r, tmp_path)  # draws every figure it can (make_figures) and lists the rest
    for name in ("report.html", "summary.md", "results.json"):
        assert (tmp_path / name).stat().st_size > 0
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert all(p.stat().st_size > 0 for p in pngs)
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"`figures/{p.name}`" in summary for p in pngs)  # every drawn figure is listed
    if kind == "empty":
        assert "Not drawn:" in (tmp_path / "report.html").read_text()
        assert "figure 'evasion'" in summary and "figure 'latency'" in summary


def test_frontier_labels_of_coinciding_points_stack() -> None:
    """Variants with the same cost and recall get one label slot each, not one on another."""
    from blindmatch.sim.report.plots import _label_slots

    xs, ys = [3300.0, 3400.0, 27000.0, 28000.0, 60.0, 3300.0], [0.72, 0.72, 0.72, 0.72, 0.72, 0.17]
    assert _label_slots(xs, ys, log_x=True) == [0, 1, 0, 1, 0, 0]
    assert _label_slots([], [], log_x=True) == []
