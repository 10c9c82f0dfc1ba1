"""``blindmatch sim run``: the stages, their caches and their progress bars.

Stage order and why:

0. hash the real copy pairs given with ``--pairs`` (a bad row stops the run before
   any long stage);
1. hash originals, 2. hash perturbed copies, 3. adversarial evasion — image work
   fanned out over the executor (local process pool or Dask), cached per chunk;
4. accuracy from the decision functions (this process, numpy);
5. verification of those functions against the real protocols;
6. cost of the real protocols, in process and over loopback HTTP — run after
   the pool is shut down, so nothing else of ours competes for the CPU;
7. derived numbers (latency, capacity, population), 8. the report.

Every stage's key digests the seed, its configuration and its inputs; a rerun
with the same ``--out`` reuses whatever is still valid.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from blindmatch.client import get_algo
from blindmatch.protocol import REGISTRY, atomic_write
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

import blindmatch
from blindmatch.machine import loadavg, machine_info

from .cache import StageCache
from .config import SimConfigError, config_digest
from .cost.measure import cost_queries, hash_cost_12mp, measure_protocol
from .coverage import corpus_skips, split_corpus, stage_skips
from .decide.accuracy import (
    HashData,
    PairHashes,
    QueryPool,
    analyse,
    build_pools,
    corpus_distances,
    real_copy_cells,
)
from .decide.variants import Variant, protocol_variants
from .derive import DERIVED_KEYS, derive, report_algo
from .executor import Executor, make_executor
from .hashing.images import (
    corpus_fingerprint,
    corpus_spec,
    empty_hashes,
    hash_originals_task,
    hash_perturbed_task,
)
from .hashing.pairs import CopyPair, hash_pair_files, pairs_fingerprint, read_pairs
from .perturb.edits import select
from .perturb.evasion import evasion_task
from .report.render import sanitize
from .report.schema import SCHEMA_VERSION
from .verify.checks import code_fingerprint, verify_protocol
from .verify.oracle import SimQuery

__all__ = ["run_simulation"]


class _Advance(Protocol):
    def __call__(self, n: int = 1, cached: bool = False) -> None: ...


class _Stages:
    """Progress bars and timings, one per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, dict[str, Any]] = {}

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[_Advance]:
        task = self.progress.add_task(name, total=max(1, total))
        t0 = time.perf_counter()
        state: dict[str, int] = {"cached": 0}

        def advance(n: int = 1, cached: bool = False) -> None:
            self.progress.advance(task, n)
            if cached:
                state["cached"] += n

        yield advance
        self.progress.update(task, completed=max(1, total))
        self.timings[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "cached_units": state["cached"],
            "units": total,
        }


def _chunks(idx: list[int], size: int) -> list[list[int]]:
    return [idx[s : s + size] for s in range(0, len(idx), size)]


def _cached_map(
    ex: Executor,
    cache: StageCache,
    prefix: str,
    tasks: list[dict[str, Any]],
    keys: list[str],
    fn: Callable[[dict[str, Any]], Any],
    advance: Callable[..., None],
    arrays: bool,
) -> list[Any]:
    out: list[Any] = [None] * len(tasks)
    todo = []
    for i, k in enumerate(keys):
        hit = cache.load_arrays(f"{prefix}-{i:05d}", k) if arrays else cache.load_json(f"{prefix}-{i:05d}", k)
        if hit is not None:
            out[i] = hit
            advance(1, cached=True)
        else:
            todo.append(i)

    def done(j: int) -> None:
        advance(1)

    results = ex.map(fn, [tasks[i] for i in todo], done)
    for i, r in zip(todo, results, strict=True):
        if arrays:
            cache.save_arrays(f"{prefix}-{i:05d}", keys[i], r)
        else:
            cache.save_json(f"{prefix}-{i:05d}", keys[i], r)
        out[i] = r
    return out


def _concat(
    parts: list[dict[str, npt.NDArray[Any]]], empty: dict[str, npt.NDArray[Any]] | None = None
) -> dict[str, npt.NDArray[Any]]:
    """Task results joined in task order; ``empty`` (the right shapes, no rows) when there were none."""
    if not parts:
        if empty is None:
            raise ValueError("no task results to join")
        return empty
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _digest_arrays(d: dict[str, npt.NDArray[Any]]) -> str:
    h = hashlib.sha256()
    for k in sorted(d):
        if k.startswith("ms_"):
            continue  # timings are not results
        h.update(k.encode())
        h.update(np.ascontiguousarray(d[k]).tobytes())
    return h.hexdigest()


def _protocol_info(name: str) -> dict[str, Any]:
    p = REGISTRY[name]
    return {
        "name": name,
        "protocol_id": p.protocol_id,
        "learner": p.learner.value,
        "matching": p.matching.value,
        "private": bool(p.private),
        "supported_algos": list(p.supported_algos),
        "leakage": {
            "client": list(p.leakage.client),
            "server": list(p.leakage.server),
            "network": list(p.leakage.network),
            "server_sees_hash": p.leakage.server_sees_hash,
            "client_sees_set": p.leakage.client_sees_set,
        },
        "code_fingerprint": code_fingerprint(p),
    }


@dataclass
class _Run:
    """What every stage reads: the configuration, the corpus and the protocol variants."""

    cfg: dict[str, Any]
    out: Path
    seed: int
    cache: StageCache
    spec: dict[str, Any]
    fingerprint: str
    n_images: int
    algos: list[str]
    perts: list[Any]
    chunk: int
    ex: Executor
    variants: dict[str, list[Variant]]
    proto_algos: dict[str, list[str]]
    pairs: list[CopyPair]
    pairs_csv: Path | None
    pipeline: dict[str, Any]

    @property
    def pert_names(self) -> list[str]:
        return [p.name for p in self.perts]


def _prepare(
    cfg: dict[str, Any],
    out: Path,
    corpus_dir: Path | None,
    dask: Any | None,
    fresh: bool,
    pairs_csv: Path | None = None,
) -> _Run:
    seed = int(cfg["run"]["seed"])
    pairs = read_pairs(Path(pairs_csv)) if pairs_csv is not None else []
    spec = corpus_spec(seed, int(cfg["corpus"]["images"]), corpus_dir)
    algos = [get_algo(a).name for a in cfg["hashes"]["algos"]]
    wanted = [str(p) for p in cfg["run"]["protocols"]]
    names = sorted(REGISTRY) if wanted == ["*"] else wanted
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise SimConfigError(f"run.protocols: {unknown} not registered; registered: {sorted(REGISTRY)}")
    variants = {name: protocol_variants(REGISTRY[name], cfg) for name in names}
    proto_algos = {}
    for name in variants:
        allowed = cfg.get("protocols", {}).get(name, {}).get("algos")
        proto_algos[name] = [
            a for a in algos if a in REGISTRY[name].supported_algos and (allowed is None or a in allowed)
        ]
    return _Run(
        cfg,
        out,
        seed,
        StageCache(out, enabled=not fresh),
        spec,
        corpus_fingerprint(spec),
        spec["count"] if spec["kind"] == "embedded" else len(spec["paths"]),
        algos,
        select(list(cfg["perturb"]["names"])),
        int(cfg["run"]["chunk_images"]),
        make_executor(int(cfg["run"]["workers"]), dask),
        variants,
        proto_algos,
        pairs,
        None if pairs_csv is None else Path(pairs_csv),
        {"resolution": str(cfg["perturb"]["resolution"]), "max_side": int(cfg["perturb"]["max_side"])},
    )


@dataclass
class _Hashes:
    orig: dict[str, npt.NDArray[Any]]
    usable: list[int]
    known_idx: npt.NDArray[np.int64]
    unrelated_idx: npt.NDArray[np.int64]
    data: HashData
    digest: str
    skipped: list[dict[str, str]]
    pairs: PairHashes | None


def _hash_stages(r: _Run, st: _Stages) -> _Hashes:
    """0. real copy pairs, 1. originals, 2. perturbed copies of the known images."""
    pair_hashes = _hash_pairs(st, r.cache, r.pairs, r.algos, r.pairs_csv)
    idx_chunks = _chunks(list(range(r.n_images)), r.chunk)
    with st.stage("hash corpus images", len(idx_chunks)) as adv:
        tasks: list[dict[str, Any]] = [{"spec": r.spec, "indices": c, "algos": r.algos} for c in idx_chunks]
        keys = [config_digest("orig", r.fingerprint, r.algos, c) for c in idx_chunks]
        orig = _concat(_cached_map(r.ex, r.cache, "orig", tasks, keys, hash_originals_task, adv, True))
    min_q = int(r.cfg["corpus"]["min_quality"])
    usable = [i for i in range(r.n_images) if orig["ok"][i]]
    eligible = [i for i in usable if "pdq" not in r.algos or orig["quality"][i] >= min_q]
    known_idx, unrelated_idx = split_corpus(usable, eligible, int(r.cfg["corpus"]["known"]))
    skipped = corpus_skips(r.n_images, usable, eligible, known_idx, unrelated_idx, min_q, r.algos)
    n_set = len(known_idx) + (len(pair_hashes.ref[f"hash_{r.algos[0]}"]) if pair_hashes else 0)
    if n_set > int(r.cfg["database"]["sizes"][0]):
        raise SimConfigError(
            f"{n_set} known images and pair references do not fit the smallest set "
            f"(database.sizes[0] = {r.cfg['database']['sizes'][0]})"
        )
    kc = _chunks(known_idx.tolist(), max(1, r.chunk // 2))
    with st.stage("perturb + hash known images", len(kc)) as adv:
        tasks = [
            {
                "spec": r.spec,
                "indices": c,
                "algos": r.algos,
                "perturbations": r.pert_names,
                "seed": r.seed,
                **r.pipeline,
            }
            for c in kc
        ]
        keys = [
            config_digest("pert", r.fingerprint, r.algos, r.pert_names, r.seed, r.pipeline, c) for c in kc
        ]
        pert = _concat(
            _cached_map(r.ex, r.cache, "pert", tasks, keys, hash_perturbed_task, adv, True),
            empty=empty_hashes(0, r.algos, (0, len(r.perts))),
        )
    data = HashData(r.algos, r.perts, [], known_idx, unrelated_idx, orig, pert, pair_hashes)
    digests = [_digest_arrays(orig), _digest_arrays(pert)]
    if pair_hashes:
        digests += [_digest_arrays(pair_hashes.query), _digest_arrays(pair_hashes.ref)]
    digest = hashlib.sha256("".join(digests).encode()).hexdigest()
    return _Hashes(orig, usable, known_idx, unrelated_idx, data, digest, skipped, pair_hashes)


def _evasion_stage(r: _Run, st: _Stages, h: _Hashes) -> list[dict[str, Any]]:
    """3. black-box evasion of the first known images."""
    ev_cfg = r.cfg["evasion"]
    ev_algos = [a for a in ev_cfg["algos"] if a in r.algos and get_algo(a).name != "sha256"]
    ev_idx = h.known_idx[: int(ev_cfg["images"])].tolist()
    with st.stage("adversarial evasion", len(ev_idx)) as adv:
        tasks = [
            {
                "spec": r.spec,
                "index": i,
                "algos": ev_algos,
                "seed": r.seed,
                **{x: ev_cfg[x] for x in ("max_side", "max_queries", "step", "min_psnr_db")},
            }
            for i in ev_idx
        ]
        keys = [
            config_digest("evasion", r.fingerprint, t["algos"], ev_cfg, r.seed, i)
            for t, i in zip(tasks, ev_idx, strict=True)
        ]
        done = _cached_map(r.ex, r.cache, "evasion", tasks, keys, evasion_task, adv, False)
    return [x for rs in done for x in rs]


def _accuracy_stage(
    r: _Run, st: _Stages, h: _Hashes
) -> tuple[dict[str, QueryPool], dict[str, Any], dict[str, Any]]:
    """4. accuracy from the decision functions, and the corpus's unrelated-pair distances."""
    with st.stage("accuracy (decision functions)", len(r.algos)) as adv:
        dihedral = any(v.dihedral for vs in r.variants.values() for v in vs) and "pdq" in r.algos
        pools = build_pools(h.data, r.cfg, r.seed, dihedral=dihedral)
        acc = analyse(h.data, pools, r.variants, r.proto_algos)
        if h.pairs is not None:  # the pooled cells, which the frontier reads
            cells = real_copy_cells(pools, r.variants, r.proto_algos)
            acc["real_copies"] = [c for c in cells if c["label"] == "all real copies"]
            acc["real_copies_by_label"] = cells
        rng = np.random.default_rng(np.random.SeedSequence([r.seed, 0xC0]))
        pair_sample = int(r.cfg["corpus"]["pair_sample"])
        corpus_stats = {
            a: corpus_distances(h.orig[f"hash_{a}"][h.usable], a, pair_sample, rng) for a in r.algos
        }
        adv(len(r.algos))
    return pools, acc, corpus_stats


def _verify_stage(r: _Run, st: _Stages, h: _Hashes, pools: dict[str, QueryPool]) -> list[dict[str, Any]]:
    """5. the decision functions against the real protocols."""
    cells = [(name, a) for name in r.variants for a in r.proto_algos[name]]
    verification: list[dict[str, Any]] = []
    with st.stage("verify with real protocols", len(cells)) as adv:
        for name, a in cells:
            proto = REGISTRY[name]
            key = config_digest(
                "verify",
                code_fingerprint(proto),
                [v.to_dict() for v in r.variants[name]],
                h.digest,
                r.cfg["accuracy"],
                r.cfg["database"],
                r.cfg["corpus"],
                r.seed,
                a,
            )
            hit = r.cache.load_json(f"verify-{name}-{a}", key)
            if hit is None:
                hit = verify_protocol(
                    proto,
                    r.variants[name],
                    a,
                    pools[a],
                    r.cfg,
                    r.out / "work" / "verify",
                    r.seed,
                    http=(a == r.cfg["cost"]["algo"] and int(r.cfg["accuracy"]["verify_http"]) > 0),
                    pert_names=r.pert_names,
                    n_algos=len(r.proto_algos[name]),
                )
                r.cache.save_json(f"verify-{name}-{a}", key, hit)
                adv(1)
            else:
                adv(1, cached=True)
            verification.extend(hit)
    return verification


def _cost_stage(r: _Run, st: _Stages, h: _Hashes, pools: dict[str, QueryPool]) -> dict[str, Any]:
    """6. cost of the real protocols, after the pool is shut down."""
    cfg = r.cfg
    calgo = str(cfg["cost"]["algo"])
    cq: dict[str, list[SimQuery]] = {}  # the cost query mix, per hash that is costed
    load_before = loadavg()
    per_variant = len(set(cfg["cost"]["sizes"]) | set(cfg["cost"]["http_sizes"]))
    cost_cells: list[dict[str, Any]] = []
    with st.stage("cost on this machine", per_variant * len(r.variants) + 1) as adv:
        key = config_digest("hash12", r.algos, r.seed, cfg["run"]["quick"])
        h12 = r.cache.load_json("hash-12mp", key)
        if h12 is None:
            h12 = hash_cost_12mp(r.algos, 1 if cfg["run"]["quick"] else 3, r.seed)
            r.cache.save_json("hash-12mp", key, h12)
        adv(1)
        for name in r.variants:
            proto = REGISTRY[name]
            algo = report_algo(calgo, r.proto_algos[name])
            if algo not in pools:
                continue
            vdicts = [v.to_dict() for v in r.variants[name]]
            key = config_digest(
                "cost", code_fingerprint(proto), vdicts, h.digest, cfg["cost"], cfg["database"], r.seed, algo
            )
            hit = r.cache.load_json(f"cost-{name}", key)
            if hit is None:
                workdir = r.out / "work" / "cost"
                if algo not in cq:
                    cq[algo] = cost_queries(pools[algo], r.pert_names)
                hit = measure_protocol(
                    proto, r.variants[name], pools[algo], cq[algo], cfg, workdir, algo, done=lambda: adv(1)
                )
                r.cache.save_json(f"cost-{name}", key, hit)
            else:
                adv(per_variant, cached=True)
            cost_cells.extend(hit)
    ms = {a: h.orig[f"ms_{a}"] for a in r.algos}
    return {
        "algo": calgo,
        "cells": cost_cells,
        "hash_12mp": h12,
        "hash_corpus_ms": {
            a: {"mean": float(np.mean(x)), "p50": float(np.median(x)), "p95": float(np.percentile(x, 95))}
            for a, x in ms.items()
        },
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "note": "2 shared cores: other processes on this machine add noise to every timing",
    }


def _corpus_record(r: _Run, h: _Hashes, corpus_stats: dict[str, Any]) -> dict[str, Any]:
    min_q = int(r.cfg["corpus"]["min_quality"])
    gated = sum(1 for i in h.usable if "pdq" in r.algos and h.orig["quality"][i] < min_q)
    return {
        "source": r.spec["kind"],
        "fingerprint": r.fingerprint,
        "root": r.spec.get("root"),
        "images": r.n_images,
        "known": len(h.known_idx),
        "unrelated": len(h.unrelated_idx),
        "unreadable": r.n_images - len(h.usable),
        "below_quality_gate": int(gated),
        "min_quality": min_q,
        "distances": corpus_stats,
    }


def _results(r: _Run, parts: dict[str, Any], command: str, machine: dict[str, Any]) -> dict[str, Any]:
    """results.json, without the stage timings (added when the report is written)."""
    cfg, h = r.cfg, parts["hashes"]
    return {
        "schema": "blindmatch-sim-results",
        "schema_version": SCHEMA_VERSION,
        "blindmatch_version": blindmatch.__version__,
        "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "seed": r.seed,
        "quick": bool(cfg["run"]["quick"]),
        "config": cfg,
        "executor": r.ex.name,
        "machine": machine,
        "deterministic_digest": config_digest(_deterministic(parts)),
        "corpus": _corpus_record(r, h, parts["corpus_stats"]),
        "perturbations": [p.describe() for p in r.perts],
        "perturbation_pipeline": {
            **r.pipeline,
            "set_hashed_from": "original files, decoded and hashed as `blindmatch db build` does",
        },
        "real_copies": _real_copies_record(r, h, parts["acc"]),
        "skipped": h.skipped
        + stage_skips(
            parts["acc"], parts["verification"], parts["cost"]["cells"], parts["acc"].get("real_copies")
        ),
        "protocols": [
            {**_protocol_info(n), "variants": [v.to_dict() for v in r.variants[n]], "algos": r.proto_algos[n]}
            for n in r.variants
        ],
        "database": {
            "sizes": [int(s) for s in cfg["database"]["sizes"]],
            "verify_set_size": int(cfg["accuracy"]["verify_set_size"]),
            "filler": "uniform random hashes (see docs/simulation-report.md)",
        },
        "accuracy": parts["acc"],
        "verification": parts["verification"],
        "cost": parts["cost"],
        "evasion": {"attempts": parts["evasion"], "config": cfg["evasion"]},
        **{k: parts["derived"][k] for k in DERIVED_KEYS},
        "network_profiles": parts["derived"]["profiles"],
    }


def _real_copies_record(r: _Run, h: _Hashes, acc: dict[str, Any]) -> dict[str, Any] | None:
    if h.pairs is None:
        return None
    n_ref = len(h.pairs.ref[f"hash_{r.algos[0]}"])
    return {
        "file": str(r.pairs_csv),
        "pairs": len(r.pairs),
        "references": n_ref,
        "labels": dict(sorted(Counter(p.label for p in r.pairs).items())),
        "cells": acc["real_copies_by_label"],
    }


def _hash_pairs(
    st: _Stages, cache: StageCache, pairs: list[CopyPair], algos: list[str], csv_path: Path | None
) -> PairHashes | None:
    """Hash the real copy pairs' files (in this process: a few hundred files at most)."""
    if not pairs or csv_path is None:
        return None
    with st.stage("hash real copy pairs", 1) as adv:
        key = config_digest("pairs", pairs_fingerprint(pairs), algos)
        hit = cache.load_arrays("pairs", key)
        if hit is None:
            q, ref, ref_of = hash_pair_files(pairs, algos, csv_path)
            hit = {
                **{f"q_{k}": v for k, v in q.items()},
                **{f"r_{k}": v for k, v in ref.items()},
                "ref_of": ref_of,
            }
            cache.save_arrays("pairs", key, hit)
            adv(1)
        else:
            adv(1, cached=True)
    return PairHashes(
        [p.label for p in pairs],
        hit["ref_of"].astype(np.int64),
        {k[2:]: v for k, v in hit.items() if k.startswith("q_")},
        {k[2:]: v for k, v in hit.items() if k.startswith("r_")},
    )


def _deterministic(parts: dict[str, Any]) -> dict[str, Any]:
    """What the deterministic digest covers: everything but timings."""
    return {
        "hashes": parts["hashes"].digest,
        "corpus": parts["corpus_stats"],
        "accuracy": parts["acc"],
        # only each check's fixed prefix: how far a time budget let a check run
        # depends on the machine's load, so budget-cut verdicts stay out of the digest
        "verification": [
            (x["variant"], x["algo"], [x[k]["fixed"] if x[k] else None for k in ("local", "http")])
            for x in parts["verification"]
        ],
        "evasion": parts["evasion"],
    }


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_simulation(
    cfg: dict[str, Any],
    out: Path,
    corpus_dir: Path | None = None,
    dask: Any | None = None,
    fresh: bool = False,
    console: Console | None = None,
    command: str = "",
    pairs_csv: Path | None = None,
) -> dict[str, Any]:
    """Run every stage; write results.json, CSVs, plots, summary.md and report.html into ``out``."""
    from .report.render import write_outputs

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    r = _prepare(cfg, out, corpus_dir, dask, fresh, pairs_csv)
    machine = machine_info()
    progress = _progress(console)
    st = _Stages(progress)
    console.print(f"[bold]blindmatch simulation[/] seed={r.seed} corpus={r.fingerprint} out={out}")
    console.print(
        f"protocols: {', '.join(f'{n} ({len(v)} variant(s))' for n, v in r.variants.items())}; "
        f"algorithms: {', '.join(r.algos)}; executor: {r.ex.name}"
    )
    try:
        with progress:
            parts: dict[str, Any] = {"hashes": _hash_stages(r, st)}
            parts["evasion"] = _evasion_stage(r, st, parts["hashes"])
            r.ex.close()
            pools, parts["acc"], parts["corpus_stats"] = _accuracy_stage(r, st, parts["hashes"])
            parts["verification"] = _verify_stage(r, st, parts["hashes"], pools)
            parts["cost"] = _cost_stage(r, st, parts["hashes"], pools)
            with st.stage("latency, capacity, population", 1) as adv:
                parts["derived"] = derive(
                    cfg,
                    r.variants,
                    parts["corpus_stats"],
                    parts["acc"],
                    parts["verification"],
                    parts["cost"],
                    parts["evasion"],
                    r.seed,
                    r.proto_algos,
                )
                adv(1)
            results = _results(r, parts, command, machine)
            with st.stage("report", 1) as adv:
                results["stages"] = st.timings
                results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
                write_outputs(results, out)
                adv(1)
    finally:
        r.ex.close()
    results["stages"] = st.timings
    results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    clean: dict[str, Any] = sanitize(results)
    atomic_write(out / "results.json", json.dumps(clean, indent=1))
    return clean
