"""Check each decision function against its real protocol on a sample.

For every protocol, algorithm and variant, a deterministic sample of queries is
run through the real client and server halves in process, and a smaller subset
through a real server on loopback (for the cost algorithm, PDQ by default). The
sample is stratified: half of it predicted "match", half "no match", and within
each half, half of the queries are the ones closest to the decision boundary
(distance near the radius; for exact matching, the nearest non-members), where
an implementation difference would show first. Queries stopped by the PDQ
quality gate are not sampled: the gate runs before any protocol.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from blindmatch.client import dihedral_floats, get_algo
from blindmatch.protocol import BlindmatchError, HashAlgo, Protocol
from blindmatch.server import SetDir

from ..decide.accuracy import QueryPool
from ..decide.database import build_set_dir
from ..decide.variants import Variant
from .oracle import RealOutcome, Session, SimQuery, http_session, local_session, real_verdicts

__all__ = ["choose_sample", "code_fingerprint", "sim_queries", "verify_protocol"]


def code_fingerprint(proto: Protocol) -> str:
    """Digest of the protocol module's source: cached verdicts are reused only for the same code."""
    try:
        src = Path(inspect.getsourcefile(type(proto)) or "").read_bytes()
    except (OSError, TypeError):
        src = repr(type(proto)).encode()
    return hashlib.sha256(src).hexdigest()[:16]


def _slug(s: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", s).strip("-").lower()


def choose_sample(pool: QueryPool, variant: Variant, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` queries, ordered so that any prefix mixes predicted matches and non-matches,
    near-boundary and random ones (a time budget may cut the sample short)."""
    spec = variant.decision(get_algo(pool.algo))
    verd = pool.verdicts[variant.label]
    pair = pool.is_pair if pool.is_pair is not None else np.zeros_like(pool.gated)
    eligible = np.flatnonzero(~pool.gated & ~pair)
    nearest = pool.dih_nearest_verify if variant.dihedral else pool.nearest_verify
    assert nearest is not None
    if spec.kind == "fuzzy":
        score = np.abs(nearest.astype(np.int64) - spec.radius)
    else:
        score = nearest.astype(np.int64)
    streams: list[list[int]] = []
    copies = np.flatnonzero(~pool.gated & pair)  # real copy pairs: a stream of their own
    for group in (eligible[verd[eligible]], eligible[~verd[eligible]], *([copies] if len(copies) else [])):
        perm = rng.permutation(group)
        near = perm[np.argsort(score[perm], kind="stable")].tolist()
        rand = perm.tolist()
        seen: set[int] = set()
        merged: list[int] = []
        for a, b in zip(near, rand, strict=True):
            for x in (a, b):
                if x not in seen:
                    seen.add(x)
                    merged.append(int(x))
        streams.append(merged)
    out: list[int] = []
    i = 0
    while len(out) < n and any(i < len(st) for st in streams):
        for st in streams:
            if i < len(st) and len(out) < n:
                out.append(st[i])
        i += 1
    return out


def sim_queries(pool: QueryPool, idx: list[int], dihedral: bool = False) -> list[SimQuery]:
    """Pool rows as queries; with ``dihedral``, each carries its 8 transforms (PDQ floats included)."""
    out = []
    for i in idx:
        q = None if pool.quality[i] < 0 else int(pool.quality[i])
        dih: tuple[SimQuery, ...] = ()
        if dihedral and pool.dih_raw is not None and pool.floats is not None:
            fl = dihedral_floats(pool.floats[i])
            dih = tuple(
                SimQuery(i, pool.dih_raw[i, t].tobytes(), tuple(float(x) for x in fl[t]), q) for t in range(8)
            )
        out.append(SimQuery(i, pool.raw[i].tobytes(), pool.floats_of(i), q, dih))
    return out


def _compare(
    pool: QueryPool,
    label: str,
    idx: list[int],
    out: RealOutcome,
    pert_names: list[str],
    n_fixed: int,
) -> dict[str, Any]:
    """Agreement over the whole sample, and over its fixed prefix (the part no budget can cut)."""
    expected: npt.NDArray[np.bool_] = pool.verdicts[label]
    agree = disagree = unavailable = 0
    diffs = []
    fixed = {"n": min(n_fixed, len(idx)), "agree": 0, "disagree": 0, "unavailable": 0}
    kinds: dict[str, int] = {}
    for i in idx:
        kinds[_kind(pool, i)] = kinds.get(_kind(pool, i), 0) + 1
    for j, (i, got) in enumerate(zip(idx, out.verdicts, strict=False)):
        outcome = "unavailable" if got is None else "agree" if bool(got) == bool(expected[i]) else "disagree"
        if j < fixed["n"]:
            fixed[outcome] += 1
        if got is None:
            unavailable += 1
        elif bool(got) == bool(expected[i]):
            agree += 1
        else:
            disagree += 1
            diffs.append(
                {
                    "query": int(i),
                    "kind": _kind(pool, i),
                    "perturbation": pert_names[int(pool.pert_of[i])] if pool.is_pos[i] else None,
                    "nearest_distance": int(pool.nearest_verify[i]),
                    "expected": bool(expected[i]),
                    "protocol_said": bool(got),
                }
            )
    unavailable += max(0, len(idx) - len(out.verdicts))
    fixed["unavailable"] += max(0, fixed["n"] - len(out.verdicts))
    return {
        "n": len(idx),
        "agree": agree,
        "disagree": disagree,
        "unavailable": unavailable,
        "source": out.source,
        "note": out.note,
        "truncated": out.truncated,
        "seconds": round(out.seconds, 3),
        "errors": out.errors[:5],
        "disagreements": diffs[:20],
        "fixed": fixed,
        "kinds": kinds,
    }


def _kind(pool: QueryPool, i: int) -> str:
    if pool.is_pos[i]:
        return "perturbed known"
    return "real copy" if pool.is_pair is not None and pool.is_pair[i] else "unrelated"


def verify_protocol(
    proto: Protocol,
    variants: list[Variant],
    algo_name: str,
    pool: QueryPool,
    cfg: dict[str, Any],
    workdir: Path,
    seed: int,
    http: bool,
    pert_names: list[str],
    n_algos: int = 1,
) -> list[dict[str, Any]]:
    """One record per variant: the decision function and its agreement with the real protocol."""
    acc = cfg["accuracy"]
    pconf = cfg.get("protocols", {}).get(proto.name, {})
    n_local = int(pconf.get("verify_local", acc["verify_local"]))
    n_http = int(pconf.get("verify_http", acc["verify_http"]))
    n_fixed = int(acc["verify_min"])
    kinds = ("local", "http") if http else ("local",)
    budget = min(
        float(acc["verify_budget_s"]),
        float(acc["protocol_budget_s"]) / max(1, len(kinds) * len(variants) * int(n_algos)),
    )
    algo = get_algo(algo_name)
    variants = [v for v in variants if v.runs_on(algo_name)]
    if not variants:
        return []
    rows = pool.rows(pool.verify_size)
    primers = _primers(pool)
    samples = {}
    for v in variants:
        rng = np.random.default_rng(
            np.random.SeedSequence([seed, 0x5EED, *v.label.encode(), *algo_name.encode()])
        )
        samples[v.label] = choose_sample(pool, v, n_local, rng)
    records = _empty_records(proto, variants, algo_name, algo, pool)
    # A protocol served by several processes is on loopback HTTP in both kinds: one start serves both.
    groups = [kinds] if proto.server_processes > 1 else [(k,) for k in kinds]
    for group in groups:
        base = workdir / _slug(proto.name) / algo_name / group[-1]
        shutil.rmtree(base, ignore_errors=True)
        try:
            sd = build_set_dir(base / "set", algo, rows, f"simulator verification set ({group[-1]})")
            with _session(proto, sd, variants[0], group, cfg, base) as sess:
                for kind in group:
                    for v in variants:
                        idx = samples[v.label] if kind == "local" else samples[v.label][:n_http]
                        account = f"bmsim-{_slug(v.label)}-{algo_name}-{kind}"
                        out = real_verdicts(
                            sess,
                            v,
                            algo,
                            sim_queries(pool, idx, v.dihedral),
                            primers,
                            account,
                            base / "client" / kind / _slug(v.label),
                            budget,
                            min_queries=n_fixed,
                        )
                        records[v.label][kind] = _compare(pool, v.label, idx, out, pert_names, n_fixed)
        except (BlindmatchError, RuntimeError, OSError, ValueError) as e:
            for kind in group:
                for v in variants:
                    records[v.label][kind] = _unavailable_check(e)
    for r in records.values():
        _mark_verified(r)
    return list(records.values())


def _session(
    proto: Protocol, sd: SetDir, variant: Variant, kinds: tuple[str, ...], cfg: dict[str, Any], base: Path
) -> AbstractContextManager[Session]:
    """In process for the local kind alone; on loopback otherwise."""
    if kinds == ("local",):
        return local_session(proto, sd, variant)
    return http_session(proto, sd, variant, float(cfg["cost"]["setup_timeout_s"]), base / "server.log")


def _primers(pool: QueryPool) -> list[SimQuery]:
    """Exact set members the server-side read-out needs before any real query counts."""
    return [
        SimQuery(
            -1 - j,
            pool.known_rows[j].tobytes(),
            None if pool.known_floats is None else tuple(float(x) for x in pool.known_floats[j]),
            None if pool.known_quality is None else int(pool.known_quality[j]),
        )
        for j in range(min(64, len(pool.known_rows)))
    ]


def _empty_records(
    proto: Protocol, variants: list[Variant], algo_name: str, algo: HashAlgo, pool: QueryPool
) -> dict[str, dict[str, Any]]:
    """One record per variant with its decision rule; the transports fill in their checks."""
    return {
        v.label: {
            "protocol": proto.name,
            "variant": v.label,
            "algo": algo_name,
            "decision": v.decision(algo).describe(algo),
            "decision_spec": v.decision(algo).to_dict(),
            "set_size": pool.verify_size,
            "local": None,
            "http": None,
        }
        for v in variants
    }


def _unavailable_check(e: Exception) -> dict[str, Any]:
    """A check that could not run, shaped like a real one so the report keeps its columns."""
    return {
        "n": 0,
        "agree": 0,
        "disagree": 0,
        "unavailable": 0,
        "source": "unavailable",
        "note": f"{type(e).__name__}: {e}"[:500],
        "truncated": False,
        "seconds": 0.0,
        "errors": [],
        "disagreements": [],
        "fixed": {"n": 0, "agree": 0, "disagree": 0, "unavailable": 0},
    }


def _mark_verified(r: dict[str, Any]) -> None:
    """A variant counts as verified only if every transport that ran agreed on every verdict."""
    checks = [r[k] for k in ("local", "http") if r[k] is not None]
    r["verified"] = bool(checks) and all(
        c["source"] != "unavailable" and c["disagree"] == 0 and c["agree"] > 0 for c in checks
    )
    r["verdict_source"] = checks[0]["source"] if checks else "unavailable"
