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
with the same ``--out`` reuses whatever is still valid. A corpus too small for a
measurement does not stop the run: ``coverage`` lists what was skipped and why.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from blindmatch.client import get_algo
from blindmatch.protocol import REGISTRY
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

from .cache import StageCache, atomic_write_text
from .config import SimConfigError, config_digest
from .cost.measure import cost_queries, hash_cost_12mp, measure_protocol
from .coverage import corpus_skips, split_corpus, stage_skips
from .decide.accuracy import HashData, PairHashes, analyse, build_pools, corpus_distances, real_copy_cells
from .decide.variants import protocol_variants
from .derive.derive import derive
from .executor import Executor, make_executor
from .hashing.images import (
    corpus_fingerprint,
    corpus_spec,
    empty_hashes,
    hash_originals_task,
    hash_perturbed_task,
)
from .hashing.pairs import CopyPair, hash_pair_files, pairs_fingerprint, read_pairs
from .machine import loadavg, machine_info
from .perturb.edits import select
from .perturb.evasion import evasion_task
from .report.render import sanitize
from .report.schema import SCHEMA_VERSION
from .verify.checks import code_fingerprint, verify_protocol

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
            q, r, ref_of = hash_pair_files(pairs, algos, csv_path)
            hit = {
                **{f"q_{k}": v for k, v in q.items()},
                **{f"r_{k}": v for k, v in r.items()},
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
    seed = int(cfg["run"]["seed"])
    cache = StageCache(out, enabled=not fresh)
    spec = corpus_spec(seed, int(cfg["corpus"]["images"]), corpus_dir)
    fingerprint = corpus_fingerprint(spec)
    n_images = spec["count"] if spec["kind"] == "embedded" else len(spec["paths"])
    algos = [get_algo(a).name for a in cfg["hashes"]["algos"]]
    perts = select(list(cfg["perturb"]["names"]))
    pert_names = [p.name for p in perts]
    pipeline = {
        "resolution": str(cfg["perturb"]["resolution"]),
        "max_side": int(cfg["perturb"]["max_side"]),
    }
    chunk = int(cfg["run"]["chunk_images"])
    pairs = read_pairs(Path(pairs_csv)) if pairs_csv is not None else []
    machine = machine_info()
    ex = make_executor(int(cfg["run"]["workers"]), dask)
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
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    st = _Stages(progress)
    console.print(f"[bold]blindmatch simulation[/] seed={seed} corpus={fingerprint} out={out}")
    console.print(
        f"protocols: {', '.join(f'{n} ({len(v)} variant(s))' for n, v in variants.items())}; "
        f"algorithms: {', '.join(algos)}; executor: {ex.name}"
    )
    try:
        with progress:
            # real copy pairs first: a bad row stops the run before the long stages
            pair_hashes = _hash_pairs(st, cache, pairs, algos, Path(pairs_csv) if pairs_csv else None)
            # 1. originals
            idx_chunks = _chunks(list(range(n_images)), chunk)
            with st.stage("hash corpus images", len(idx_chunks)) as adv:
                tasks: list[dict[str, Any]] = [
                    {"spec": spec, "indices": c, "algos": algos} for c in idx_chunks
                ]
                keys = [config_digest("orig", fingerprint, algos, c) for c in idx_chunks]
                orig = _concat(_cached_map(ex, cache, "orig", tasks, keys, hash_originals_task, adv, True))
            min_q = int(cfg["corpus"]["min_quality"])
            usable = [i for i in range(n_images) if orig["ok"][i]]
            eligible = [i for i in usable if "pdq" not in algos or orig["quality"][i] >= min_q]
            known_idx, unrelated_idx = split_corpus(usable, eligible, int(cfg["corpus"]["known"]))
            skipped = corpus_skips(n_images, usable, eligible, known_idx, unrelated_idx, min_q, algos)
            # 2. perturbed copies of known images
            kc = _chunks(known_idx.tolist(), max(1, chunk // 2))
            with st.stage("perturb + hash known images", len(kc)) as adv:
                tasks = [
                    {
                        "spec": spec,
                        "indices": c,
                        "algos": algos,
                        "perturbations": pert_names,
                        "seed": seed,
                        "resolution": pipeline["resolution"],
                        "max_side": pipeline["max_side"],
                    }
                    for c in kc
                ]
                keys = [config_digest("pert", fingerprint, algos, pert_names, seed, pipeline, c) for c in kc]
                pert = _concat(
                    _cached_map(ex, cache, "pert", tasks, keys, hash_perturbed_task, adv, True),
                    empty=empty_hashes(0, algos, (0, len(perts))),
                )
            n_set = len(known_idx) + (len(pair_hashes.ref[f"hash_{algos[0]}"]) if pair_hashes else 0)
            if n_set > int(cfg["database"]["sizes"][0]):
                raise SimConfigError(
                    f"{n_set} known images and pair references do not fit the smallest set "
                    f"(database.sizes[0] = {cfg['database']['sizes'][0]})"
                )
            data = HashData(algos, perts, [], known_idx, unrelated_idx, orig, pert, pair_hashes)
            digests = [_digest_arrays(orig), _digest_arrays(pert)]
            if pair_hashes:
                digests += [_digest_arrays(pair_hashes.query), _digest_arrays(pair_hashes.ref)]
            hash_digest = hashlib.sha256("".join(digests).encode()).hexdigest()
            # 3. evasion
            ev_cfg = cfg["evasion"]
            ev_algos = [a for a in ev_cfg["algos"] if a in algos and get_algo(a).name != "sha256"]
            ev_idx = known_idx[: int(ev_cfg["images"])].tolist()
            with st.stage("adversarial evasion", len(ev_idx)) as adv:
                tasks = [
                    {
                        "spec": spec,
                        "index": i,
                        "algos": ev_algos,
                        "seed": seed,
                        **{x: ev_cfg[x] for x in ("max_side", "max_queries", "step", "min_psnr_db")},
                    }
                    for i in ev_idx
                ]
                keys = [
                    config_digest("evasion", fingerprint, t["algos"], ev_cfg, seed, i)
                    for t, i in zip(tasks, ev_idx, strict=True)
                ]
                evasion = [
                    r
                    for rs in _cached_map(ex, cache, "evasion", tasks, keys, evasion_task, adv, False)
                    for r in rs
                ]
            ex.close()
            # 4. accuracy
            with st.stage("accuracy (decision functions)", len(algos)) as adv:
                dihedral = any(v.dihedral for vs in variants.values() for v in vs) and "pdq" in algos
                pools = build_pools(data, cfg, seed, dihedral=dihedral)
                acc = analyse(data, pools, variants, proto_algos)
                real_copies = (
                    {
                        "file": str(pairs_csv),
                        "pairs": len(pairs),
                        "references": n_set - len(known_idx),
                        "labels": dict(sorted(Counter(p.label for p in pairs).items())),
                        "cells": real_copy_cells(pools, variants, proto_algos),
                    }
                    if pair_hashes
                    else None
                )
                rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0]))
                corpus_stats = {
                    a: corpus_distances(orig[f"hash_{a}"][usable], a, int(cfg["corpus"]["pair_sample"]), rng)
                    for a in algos
                }
                adv(len(algos))
            # 5. verification against the real protocols
            cells = [(name, a) for name in variants for a in proto_algos[name]]
            verification: list[dict[str, Any]] = []
            with st.stage("verify with real protocols", len(cells)) as adv:
                for name, a in cells:
                    proto = REGISTRY[name]
                    key = config_digest(
                        "verify",
                        code_fingerprint(proto),
                        [v.to_dict() for v in variants[name]],
                        hash_digest,
                        cfg["accuracy"],
                        cfg["database"],
                        cfg["corpus"],
                        seed,
                        a,
                    )
                    hit = cache.load_json(f"verify-{name}-{a}", key)
                    if hit is None:
                        hit = verify_protocol(
                            proto,
                            variants[name],
                            a,
                            pools[a],
                            cfg,
                            out / "work" / "verify",
                            seed,
                            http=(a == cfg["cost"]["algo"] and int(cfg["accuracy"]["verify_http"]) > 0),
                            pert_names=pert_names,
                            n_algos=len(proto_algos[name]),
                        )
                        cache.save_json(f"verify-{name}-{a}", key, hit)
                        adv(1)
                    else:
                        adv(1, cached=True)
                    verification.extend(hit)
            # 6. cost
            calgo = str(cfg["cost"]["algo"])
            cq = cost_queries(pools[calgo], pert_names)
            load_before = loadavg()
            n_cells = (
                sum(len(set(cfg["cost"]["sizes"]) | set(cfg["cost"]["http_sizes"])) for _ in variants) + 1
            )
            cost_cells: list[dict[str, Any]] = []
            with st.stage("cost on this machine", n_cells) as adv:
                key = config_digest("hash12", algos, seed, cfg["run"]["quick"])
                h12 = cache.load_json("hash-12mp", key)
                if h12 is None:
                    h12 = hash_cost_12mp(algos, 1 if cfg["run"]["quick"] else 3, seed)
                    cache.save_json("hash-12mp", key, h12)
                adv(1)
                for name in variants:
                    proto = REGISTRY[name]
                    if calgo not in proto_algos[name]:
                        continue
                    key = config_digest(
                        "cost",
                        code_fingerprint(proto),
                        [v.to_dict() for v in variants[name]],
                        hash_digest,
                        cfg["cost"],
                        cfg["database"],
                        seed,
                    )
                    hit = cache.load_json(f"cost-{name}", key)
                    if hit is None:
                        hit = measure_protocol(
                            proto,
                            variants[name],
                            pools[calgo],
                            cq,
                            cfg,
                            out / "work" / "cost",
                            done=lambda: adv(1),
                        )
                        cache.save_json(f"cost-{name}", key, hit)
                    else:
                        adv(
                            len(set(cfg["cost"]["sizes"]) | set(cfg["cost"]["http_sizes"])),
                            cached=True,
                        )
                    cost_cells.extend(hit)
            hash_corpus = {
                a: {
                    "mean": float(np.mean(orig[f"ms_{a}"])),
                    "p50": float(np.median(orig[f"ms_{a}"])),
                    "p95": float(np.percentile(orig[f"ms_{a}"], 95)),
                }
                for a in algos
            }
            cost = {
                "algo": calgo,
                "cells": cost_cells,
                "hash_12mp": h12,
                "hash_corpus_ms": hash_corpus,
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
                "note": "2 shared cores: other processes on this machine add noise to every timing",
            }
            # 7. derived numbers
            with st.stage("latency, capacity, population", 1) as adv:
                derived = derive(cfg, variants, corpus_stats, acc, verification, cost, evasion, seed)
                adv(1)
            deterministic = {
                "hashes": hash_digest,
                "corpus": corpus_stats,
                "accuracy": acc,
                # only each sample's fixed prefix: how far a time budget let a check run
                # depends on the machine's load, so budget-cut verdicts stay out of the digest
                "verification": [
                    (r["variant"], r["algo"], [r[k]["fixed"] if r[k] else None for k in ("local", "http")])
                    for r in verification
                ],
                "evasion": evasion,
                "real_copies": real_copies["cells"] if real_copies else None,
            }
            results: dict[str, Any] = {
                "schema": "blindmatch-sim-results",
                "schema_version": SCHEMA_VERSION,
                "blindmatch_version": blindmatch.__version__,
                "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": command,
                "seed": seed,
                "quick": bool(cfg["run"]["quick"]),
                "config": cfg,
                "executor": ex.name,
                "machine": machine,
                "deterministic_digest": config_digest(deterministic),
                "corpus": {
                    "source": spec["kind"],
                    "fingerprint": fingerprint,
                    "root": spec.get("root"),
                    "images": n_images,
                    "known": len(known_idx),
                    "unrelated": len(unrelated_idx),
                    "unreadable": n_images - len(usable),
                    "below_quality_gate": int(
                        sum(1 for i in usable if "pdq" in algos and orig["quality"][i] < min_q)
                    ),
                    "min_quality": min_q,
                    "distances": corpus_stats,
                },
                "perturbations": [p.describe() for p in perts],
                "perturbation_pipeline": {
                    **pipeline,
                    "set_hashed_from": "original files, decoded and hashed as `blindmatch db build` does",
                },
                "protocols": [
                    {
                        **_protocol_info(n),
                        "variants": [v.to_dict() for v in variants[n]],
                        "algos": proto_algos[n],
                    }
                    for n in variants
                ],
                "database": {
                    "sizes": [int(s) for s in cfg["database"]["sizes"]],
                    "verify_set_size": int(cfg["accuracy"]["verify_set_size"]),
                    "filler": "uniform random hashes (see docs/simulation-report.md)",
                },
                "accuracy": acc,
                "real_copies": real_copies,
                "verification": verification,
                "cost": cost,
                "evasion": {"attempts": evasion, "config": ev_cfg},
                **{
                    k: derived[k]
                    for k in (
                        "latency",
                        "capacity",
                        "population",
                        "accounts",
                        "headline",
                        "worked_examples",
                    )
                },
                "network_profiles": derived["profiles"],
                "skipped": skipped + stage_skips(acc, verification, cost_cells, real_copies),
            }
            with st.stage("report", 1) as adv:
                results["stages"] = st.timings
                results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
                write_outputs(results, out)
                adv(1)
    finally:
        ex.close()
    results["stages"] = st.timings
    results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    clean: dict[str, Any] = sanitize(results)
    atomic_write_text(out / "results.json", json.dumps(clean, indent=1))
    return clean
