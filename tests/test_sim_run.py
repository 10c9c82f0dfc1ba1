"""End to end: a tiny ``blindmatch sim run``: outputs, schema, resume, determinism, browser.

One tiny run (through the real CLI, shared per session: tests/sim_tiny.py) feeds most tests; the
determinism tests make three more runs of the same configuration on three
executors — in process, a local process pool, and a Dask ``LocalCluster`` — and
require identical deterministic digests.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from blindmatch.protocol import REGISTRY
from blindmatch.sim.config import SimConfigError, load_config
from blindmatch.sim.report.schema import SCHEMA, SCHEMA_VERSION, validate
from blindmatch.sim.runner import run_simulation

from tests.sim_tiny import TINY

# Runs that check determinism or special inputs: no HTTP, no figures, plain only.
NO_HTTP = (
    TINY.replace("verify_http = 3", "verify_http = 0")
    .replace("http_sizes = [200]", "http_sizes = []")
    .replace("chunk_images = 4", 'chunk_images = 4\nprotocols = ["plain"]')
    + "\n[report]\nfigures = false\n"
)


def _cfg_file(tmp: Path, text: str, name: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def tiny(sim_tiny: tuple[Path, dict[str, Any], str]) -> tuple[Path, dict[str, Any], str]:
    return sim_tiny


def test_cli_prints_headline_and_report_path(tiny: tuple[Path, dict[str, Any], str]) -> None:
    out, _, output = tiny
    assert "Headline" in output and "report:" in output
    assert str((out / "report.html").resolve()).split("/")[-1] in output


def test_outputs_exist(tiny: tuple[Path, dict[str, Any], str]) -> None:
    out, res, _ = tiny
    for f in ("results.json", "results.schema.json", "summary.md", "report.html"):
        assert (out / f).stat().st_size > 0, f
    for t in (
        "headline",
        "worked_examples",
        "fnmr",
        "fmr",
        "verification",
        "cost",
        "latency",
        "capacity",
        "population",
        "evasion",
        "corpus_distances",
    ):
        rows = list(csv.DictReader((out / "tables" / f"{t}.csv").open()))
        assert rows, t
    figs = list((out / "figures").glob("*.png"))
    assert len(figs) >= 10
    if res["accounts"]:  # a threshold protocol (tpsi) is registered
        assert (out / "figures" / "accounts.png").exists()
    for png in figs:
        assert png.with_suffix(".svg").stat().st_size > 0
    assert "What this means" in (out / "summary.md").read_text()


def test_results_match_schema(tiny: tuple[Path, dict[str, Any], str]) -> None:
    _, res, _ = tiny
    assert validate(res) == []
    assert res["schema"] == "blindmatch-sim-results" and res["schema_version"] == SCHEMA_VERSION
    try:
        import jsonschema_rs
    except ImportError:
        return
    assert jsonschema_rs.validator_for(SCHEMA).is_valid(res)


def test_schema_rejects_broken_results(tiny: tuple[Path, dict[str, Any], str]) -> None:
    _, res, _ = tiny
    bad = json.loads(json.dumps(res))
    del bad["headline"]
    bad["seed"] = "three"
    bad["verification"][0]["verdict_source"] = "guessed"
    bad["accuracy"]["fnmr"][0]["k"] = -1
    errs = validate(bad)
    assert any("headline" in e for e in errs)
    assert any("$.seed" in e for e in errs)
    assert any("verdict_source" in e for e in errs)
    assert any("minimum" in e for e in errs)


def test_every_registered_protocol_is_exercised(tiny: tuple[Path, dict[str, Any], str]) -> None:
    _, res, _ = tiny
    assert {h["protocol"] for h in res["headline"]} == set(REGISTRY)
    assert {r["protocol"] for r in res["verification"]} == set(REGISTRY)
    assert {c["protocol"] for c in res["cost"]["cells"]} == set(REGISTRY)
    plain = [r for r in res["verification"] if r["protocol"] == "plain"]
    assert {r["algo"] for r in plain} == {"pdq", "phash", "dhash", "sha256"}
    assert all(r["verified"] for r in plain), plain
    # every variant of every protocol, server-learns ones included, checked against its real code
    # in process and over HTTP (server verdicts are read back per account)
    unverified = [(r["variant"], r["algo"], r["local"]["note"], (r["http"] or {}).get("note"))
                  for r in res["verification"] if not r["verified"]]
    assert not unverified, unverified
    pdq = next(r for r in plain if r["algo"] == "pdq")
    assert pdq["http"]["agree"] > 0 and pdq["http"]["source"] == "client"
    ok = [c for c in res["cost"]["cells"] if c["protocol"] == "plain" and c["status"] == "ok"]
    assert {c["transport"] for c in ok} == {"local", "http"}
    assert all(c["bytes_up"] > 0 and c["requests"] >= 1 for c in ok)


def test_accuracy_facts(tiny: tuple[Path, dict[str, Any], str]) -> None:
    _, res, _ = tiny
    cells = {(c["variant"], c["algo"], c["perturbation"]): c for c in res["accuracy"]["fnmr"]}
    # the unchanged file always matches; any edit defeats SHA-256
    for a in ("pdq", "phash", "dhash", "sha256"):
        c = cells[("plain", a, "identity")]
        assert c["k"] == c["gated"], c  # only quality-gated copies can be missed
    for p in ("jpeg-70", "hflip"):
        c = cells[("plain", "sha256", p)]
        assert c["k"] == c["n"] > 0
    assert cells[("plain", "pdq", "hflip")]["rate"] > cells[("plain", "pdq", "jpeg-70")]["rate"]
    fmr = [c for c in res["accuracy"]["fmr"] if c["variant"] == "plain" and c["algo"] == "pdq"]
    assert [c["set_size"] for c in fmr] == [200, 2000]
    assert res["worked_examples"] and res["population"] and res["latency"]
    d = res["corpus"]["distances"]["pdq"]
    assert d["pairs"] == 14 * 13 // 2 and d["even_fraction"] == 1.0  # PDQ hashes have 128 ones


def test_resume_reuses_every_stage(tiny: tuple[Path, dict[str, Any], str], tmp_path: Path) -> None:
    out, res, _ = tiny
    copy = tmp_path / "resumed"
    shutil.copytree(out / "cache", copy / "cache")  # the stage caches are all a resume needs
    cfg = load_config(_cfg_file(tmp_path, TINY + "\n[report]\nfigures = false\n", "r.toml"), seed=3)
    again = run_simulation(cfg, copy, console=_quiet())
    for stage in (
        "hash corpus images",
        "perturb + hash known images",
        "adversarial evasion",
        "verify with real protocols",
    ):
        st = again["stages"][stage]
        assert st["cached_units"] == st["units"], (stage, st)
    assert again["deterministic_digest"] == res["deterministic_digest"]


def _quiet() -> Any:
    from rich.console import Console

    return Console(file=open("/dev/null", "w"), force_terminal=False)


@pytest.fixture(scope="module")
def no_http_cfg(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("cfg")
    return load_config(_cfg_file(tmp, NO_HTTP, "nohttp.toml"), seed=3)


@contextmanager
def _cpu_load(seconds: float = 600.0) -> Iterator[None]:
    """A bounded busy loop in another process, so the runs below compete for the CPU."""
    p = subprocess.Popen(
        [sys.executable, "-c", f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"]
    )
    try:
        yield
    finally:
        p.kill()
        p.wait()


def test_same_seed_same_results_in_process_pool_and_dask_under_load(
    no_http_cfg: dict[str, Any], tmp_path: Path, tiny: tuple[Path, dict[str, Any], str]
) -> None:
    """The serial run on a quiet CPU, the pool and Dask runs beside a busy loop: one digest."""
    from distributed import Client, LocalCluster

    pool_cfg = json.loads(json.dumps(no_http_cfg))
    pool_cfg["run"]["workers"] = 2
    serial = run_simulation(no_http_cfg, tmp_path / "serial", console=_quiet())  # unloaded
    with _cpu_load():
        a = run_simulation(pool_cfg, tmp_path / "pool", console=_quiet())
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            b = run_simulation(no_http_cfg, tmp_path / "dask", dask=client, console=_quiet())
    assert serial["executor"] == "in-process" and a["executor"].startswith("local process pool")
    assert b["executor"].startswith("dask tcp://127.0.0.1:")
    assert serial["deterministic_digest"] == a["deterministic_digest"] == b["deterministic_digest"]
    assert a["accuracy"] == b["accuracy"] and a["evasion"]["attempts"] == b["evasion"]["attempts"]
    # and accuracy equals the serial CLI run of the same seed (HTTP checks do not change it)
    mine = {p["name"] for p in a["protocols"]}
    for key in ("fnmr", "fmr"):
        serial = [c for c in tiny[1]["accuracy"][key] if c["protocol"] in mine]
        assert a["accuracy"][key] == serial
    assert a["accuracy"]["det"] == tiny[1]["accuracy"]["det"]


def test_different_seed_different_results(
    no_http_cfg: dict[str, Any], tmp_path: Path, tiny: tuple[Path, dict[str, Any], str]
) -> None:
    cfg = json.loads(json.dumps(no_http_cfg))
    cfg["run"]["seed"] = 4
    cfg["cost"]["sizes"] = [200]
    r = run_simulation(cfg, tmp_path / "s4", console=_quiet())
    assert r["deterministic_digest"] != tiny[1]["deterministic_digest"]


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(SimConfigError, match=r"unknown configuration key 'corpus\.imagez'"):
        load_config(_cfg_file(tmp_path, "[corpus]\nimagez = 3\n", "a.toml"))
    with pytest.raises(SimConfigError, match="verify_set_size"):
        load_config(_cfg_file(tmp_path, "[accuracy]\nverify_set_size = 7\n", "b.toml"))
    with pytest.raises(SimConfigError, match="not valid TOML"):
        load_config(_cfg_file(tmp_path, "[corpus\n", "c.toml"))
    with pytest.raises(SimConfigError, match="no such config"):
        load_config(tmp_path / "missing.toml")
    q = load_config(quick=True, seed=9)
    assert (
        q["run"]["seed"] == 9
        and q["run"]["quick"]
        and q["corpus"]["images"] < load_config()["corpus"]["images"]
    )
    bad = load_config(quick=True)
    bad["protocols"]["plain"] = {"probebits": [1]}
    from blindmatch.sim.decide.variants import protocol_variants

    with pytest.raises(SimConfigError, match="probebits"):
        protocol_variants(REGISTRY["plain"], bad)


# ------------------------------------------------------------------ browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_check(page: Path) -> tuple[dict[str, str], str]:
    """Load ``page`` in headless Chromium; return <body> attributes and Chromium's stderr."""
    assert CHROMIUM
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=15000",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
            text=True,
        )
    m = re.search(r"<body([^>]*)>", p.stdout)
    assert m, p.stderr[-2000:]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1))), p.stderr


def _console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "rror" in ln)]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_opens_in_chromium_with_every_figure(tiny: tuple[Path, dict[str, Any], str]) -> None:
    out, _, _ = tiny
    html = (out / "report.html").read_text()
    assert not re.search(r'<(img|script|link)[^>]+(src|href)="(https?:|//)', html), (
        "report must be self-contained"
    )
    attrs, stderr = chromium_check(out / "report.html")
    assert attrs.get("data-check") == "done", attrs
    n = int(attrs["data-figures-total"])
    assert n >= 10 and attrs["data-figures-loaded"] == str(n), attrs
    assert attrs["data-errors"] == "0", attrs.get("data-error-text")
    assert _console_errors(stderr) == []


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_browser_check_detects_broken_pages(tiny: tuple[Path, dict[str, Any], str], tmp_path: Path) -> None:
    """The check must be able to fail: a broken figure and a script error are both seen."""
    out, _, _ = tiny
    html = (out / "report.html").read_text()
    html = html.replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
    html = html.replace("</body>", "<script>undefinedFunction();</script></body>")
    broken = tmp_path / "broken.html"
    broken.write_text(html)
    attrs, stderr = chromium_check(broken)
    assert int(attrs["data-figures-loaded"]) == int(attrs["data-figures-total"]) - 1
    assert attrs["data-errors"] != "0" or _console_errors(stderr)


def test_new_protocols_are_picked_up_and_classified(tmp_path: Path) -> None:
    """Protocols registered after the simulator was written are run, verified and reported.

    ``test-exact`` (exact, client learns, multi-probe) has the shape of ``oprf``;
    ``test-reveal`` (server learns after a threshold) the shape of ``tpsi``.
    """
    from tests.sim_test_protocols import ExactPlain, RevealPlain, registered

    text = (
        NO_HTTP.replace('protocols = ["plain"]', 'protocols = ["plain", "test-exact", "test-reveal"]')
        + '\n[hashes]\nalgos = ["pdq", "phash"]\n'
        + "\n[protocols.test-reveal]\nserver_options = { threshold = 3 }\n"
    )
    cfg = load_config(_cfg_file(tmp_path, text, "new.toml"), seed=3)
    with registered(ExactPlain(), RevealPlain()):
        res = run_simulation(cfg, tmp_path / "out", console=_quiet())
    labels = {h["variant"] for h in res["headline"]}
    assert {"plain", "test-exact k=0", "test-exact k=4", "test-reveal"} <= labels
    ver = {(r["variant"], r["algo"]): r for r in res["verification"]}
    for a in ("pdq", "phash"):
        assert ver[("test-reveal", a)]["verdict_source"] == "server-reveal"
        assert ver[("test-reveal", a)]["verified"], ver[("test-reveal", a)]
        assert ver[("test-exact k=4", a)]["verified"], ver[("test-exact k=4", a)]
    fn = {(c["variant"], c["algo"], c["perturbation"]): c for c in res["accuracy"]["fnmr"]}
    exact0 = fn[("test-exact k=0", "pdq", "everyday edits")]["rate"]
    exact4 = fn[("test-exact k=4", "pdq", "everyday edits")]["rate"]
    assert fn[("plain", "pdq", "everyday edits")]["rate"] < exact4 <= exact0
    threshold_variants = {v["label"] for p in res["protocols"] for v in p["variants"] if v["threshold"] > 0}
    assert "test-reveal" in {r["variant"] for r in res["accounts"]}
    assert {r["variant"] for r in res["accounts"]} == threshold_variants
    assert all(
        "accounts_flagged_per_year_bound" in w
        for w in res["worked_examples"]
        if w["variant"] == "test-reveal"
    )
    ok = {(c["variant"], c["transport"]) for c in res["cost"]["cells"] if c["status"] == "ok"}
    assert ("test-exact k=4", "local") in ok and ("test-reveal", "local") in ok
    assert "Exact private matching" in (tmp_path / "out" / "summary.md").read_text()


def test_corpus_folder_of_real_files(tmp_path: Path) -> None:
    """--corpus DIR: JPEG, PNG and WebP files are used; a corrupt file is excluded, not fatal."""
    from blindmatch.corpus import generate_image

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(12):
        fmt, ext = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")][i % 3]
        generate_image(100 + i).save(folder / ("sub" if i % 2 else ".") / f"p{i}.{ext}", fmt)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("ignored")
    text = NO_HTTP + '\n[hashes]\nalgos = ["pdq", "sha256"]\n'
    cfg = load_config(_cfg_file(tmp_path, text, "dir.toml"), seed=3)
    cfg["corpus"]["known"] = 5
    res = run_simulation(cfg, tmp_path / "out", corpus_dir=folder, console=_quiet())
    c = res["corpus"]
    assert c["source"] == "dir" and c["images"] == 13 and c["unreadable"] == 1
    assert c["known"] == 5 and c["known"] + c["unrelated"] + c["unreadable"] == 13
    ident = next(
        x
        for x in res["accuracy"]["fnmr"]
        if x["variant"] == "plain" and x["algo"] == "sha256" and x["perturbation"] == "identity"
    )
    assert ident["k"] == 0  # the unchanged file's SHA-256 is in the set
    none = tmp_path / "none"  # a folder without images (small corpora run: tests/test_sim_truth.py)
    none.mkdir()
    (none / "notes.txt").write_text("no images here")
    with pytest.raises(SimConfigError, match="found no JPEG/PNG/WebP images"):
        run_simulation(cfg, tmp_path / "out2", corpus_dir=none, console=_quiet())
    with pytest.raises(SimConfigError, match="not a folder"):
        run_simulation(cfg, tmp_path / "out3", corpus_dir=none / "notes.txt", console=_quiet())
