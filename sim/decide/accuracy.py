"""Accuracy from the decision functions: FNMR per perturbation, FMR per set size, DET, histograms.

Inputs are the hashes computed by the real client hashers (``imagework``); the
database is the known images' original hashes plus uniform filler
(``database``). Positives are perturbed copies of known images, negatives are
unrelated corpus images. The PDQ quality gate is applied exactly as
``blindmatch scan`` applies it: a query below the gate is not sent and counts as
"not matched" (a miss for a positive, a correct rejection for a negative).

FNMR is computed against the set of ``accuracy.verify_set_size`` hashes — the
size the real protocols are verified at. Larger sets can only add matches, and
only by chance collisions with filler, so FNMR at larger N is lower by at most
FMR(N) (reported beside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from blindmatch.client import dihedral_floats, dihedral_hashes, get_algo
from blindmatch.protocol import HashAlgo

from ..perturb.edits import Perturbation
from ..stats import rate
from .database import filler_hashes, set_rows
from .rules import ExactIndex, nearest_distances, prefix_nearest, to_words
from .variants import Variant

__all__ = ["HashData", "PairHashes", "QueryPool", "analyse", "build_pools", "real_copy_cells"]


@dataclass
class PairHashes:
    """Real copy pairs: hashes of the query files and of the reference files that join the set."""

    labels: list[str]  # one per query
    ref_of: npt.NDArray[np.int64]  # query -> row of ``ref``
    query: dict[str, npt.NDArray[Any]]
    ref: dict[str, npt.NDArray[Any]]


@dataclass
class HashData:
    """Every hash the run computed. Positive query (k, p) is perturbation p of known image k."""

    algos: list[str]
    perts: list[Perturbation]
    names: list[str]
    known_idx: npt.NDArray[np.int64]
    unrelated_idx: npt.NDArray[np.int64]
    orig: dict[str, npt.NDArray[Any]]
    pert: dict[str, npt.NDArray[Any]]
    pairs: PairHashes | None = None


@dataclass
class QueryPool:
    """All queries for one algorithm, with what the decision functions and the sampler need.

    Rows are the perturbed copies of known images, then unrelated images, then the
    query files of real copy pairs (``is_pair``). For PDQ, ``dih_*`` hold the hashes
    of every row's 8 rotations/flips and their nearest distances (dihedral variants).
    """

    algo: str
    raw: npt.NDArray[np.uint8]
    floats: npt.NDArray[np.float32] | None
    quality: npt.NDArray[np.int16]
    is_pos: npt.NDArray[np.bool_]
    pert_of: npt.NDArray[np.int64]  # perturbation index, -1 for negatives and real copies
    gated: npt.NDArray[np.bool_]
    nearest_verify: npt.NDArray[np.uint16]
    d_own: npt.NDArray[np.uint16]  # positives: distance to their own original
    neg_nearest: npt.NDArray[np.uint16]  # negatives x sizes
    known_rows: npt.NDArray[np.uint8]
    filler: npt.NDArray[np.uint8]
    sizes: list[int]
    verify_size: int
    verdicts: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)  # at verify size
    known_floats: npt.NDArray[np.float32] | None = None  # PDQ float values of the known originals
    known_quality: npt.NDArray[np.int16] | None = None
    is_pair: npt.NDArray[np.bool_] | None = None
    pair_labels: list[str] = field(default_factory=list)
    pair_d_own: npt.NDArray[np.uint16] | None = None  # real copies: distance to their own reference
    dih_raw: npt.NDArray[np.uint8] | None = None  # rows x 8 x nbytes
    dih_nearest_verify: npt.NDArray[np.uint16] | None = None
    dih_neg_nearest: npt.NDArray[np.uint16] | None = None

    def rows(self, size: int) -> npt.NDArray[np.uint8]:
        return set_rows(self.known_rows, self.filler, size)

    def floats_of(self, i: int) -> tuple[float, ...] | None:
        return None if self.floats is None else tuple(float(x) for x in self.floats[i])

    @property
    def negatives(self) -> npt.NDArray[np.intp]:
        pair = self.is_pair if self.is_pair is not None else np.zeros_like(self.is_pos)
        return np.flatnonzero(~self.is_pos & ~pair)

    @property
    def pair_rows(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.is_pair) if self.is_pair is not None else np.zeros(0, dtype=np.intp)


def _pair_parts(
    data: HashData, a: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[Any], npt.NDArray[Any] | None]:
    """(reference rows, query rows, query quality, query floats) of the real copy pairs."""
    nb = get_algo(a).nbytes
    if data.pairs is None:
        empty = np.zeros((0, nb), dtype=np.uint8)
        return empty, empty, np.zeros(0, dtype=np.int16), np.zeros((0, 256), np.float32)
    pq = data.pairs.query
    return data.pairs.ref[f"hash_{a}"], pq[f"hash_{a}"], pq["quality"], pq.get("floats")


def _dihedral_nearest(
    dih: npt.NDArray[np.uint8], kw: npt.NDArray[np.uint64], fw: npt.NDArray[np.uint64], vfill: int,
    neg: npt.NDArray[np.intp], bounds: list[int],
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    """Nearest distance over the 8 transforms: at the verify size (all rows), per size (negatives)."""
    nv = np.full(dih.shape[0], np.iinfo(np.uint16).max, dtype=np.uint16)
    nn = np.full((len(neg), len(bounds)), np.iinfo(np.uint16).max, dtype=np.uint16)
    for t in range(dih.shape[1]):
        qw = to_words(dih[:, t])
        dk = nearest_distances(kw, qw)
        nv = np.minimum(nv, np.minimum(dk, nearest_distances(fw[:vfill], qw)))
        nt = np.minimum(prefix_nearest(fw, qw[neg], bounds), dk[neg, None])
        nn = np.minimum(nn, nt)
    return nv, nn


def build_pools(
    data: HashData, cfg: dict[str, Any], seed: int, dihedral: bool = False
) -> dict[str, QueryPool]:
    sizes = [int(s) for s in cfg["database"]["sizes"]]
    vsize = int(cfg["accuracy"]["verify_set_size"])
    min_q = int(cfg["corpus"]["min_quality"])
    pools = {}
    k, p = len(data.known_idx), len(data.perts)
    n_neg = len(data.unrelated_idx)
    for a in data.algos:
        algo = get_algo(a)
        refs, pq_raw, pq_quality, pq_floats = _pair_parts(data, a)
        known_rows = np.concatenate([data.orig[f"hash_{a}"][data.known_idx], refs])
        n_set = len(known_rows)
        filler = filler_hashes(algo, sizes[-1] - n_set, seed)
        pos = data.pert[f"hash_{a}"].reshape(k * p, algo.nbytes)
        neg = data.orig[f"hash_{a}"][data.unrelated_idx]
        raw = np.concatenate([pos, neg, pq_raw])
        n_pair = len(pq_raw)
        if a == "pdq":
            floats = np.concatenate(
                [
                    data.pert["floats"].reshape(k * p, 256),
                    data.orig["floats"][data.unrelated_idx],
                    np.asarray(pq_floats, dtype=np.float32).reshape(n_pair, 256),
                ]
            )
            quality = np.concatenate(
                [data.pert["quality"].reshape(-1), data.orig["quality"][data.unrelated_idx], pq_quality]
            )
            gated = quality < min_q
        else:
            floats = None
            quality = np.full(raw.shape[0], -1, dtype=np.int16)
            gated = np.zeros(raw.shape[0], dtype=np.bool_)
        kw, fw = to_words(known_rows), to_words(filler)
        qw = to_words(raw)
        d_known = nearest_distances(kw, qw)
        d_fill_v = nearest_distances(fw[: vsize - n_set], qw)
        nearest_v = np.minimum(d_known, d_fill_v)
        own_rows = np.concatenate(
            [np.repeat(np.arange(k), p), k + (data.pairs.ref_of if data.pairs else np.zeros(0, np.int64))]
        )
        mine = np.concatenate([np.arange(k * p), k * p + n_neg + np.arange(n_pair)]).astype(np.intp)
        d_mine = np.bitwise_count(qw[mine] ^ kw[own_rows]).sum(axis=1).astype(np.uint16)
        d_own, pair_d_own = d_mine[: k * p], d_mine[k * p :]
        neg_rows = np.arange(k * p, k * p + n_neg)
        bounds = [s - n_set for s in sizes]
        neg_near = np.minimum(prefix_nearest(fw, qw[neg_rows], bounds), d_known[neg_rows, None])
        is_pair = np.arange(raw.shape[0]) >= k * p + n_neg
        pool = QueryPool(
            a,
            raw,
            floats,
            quality.astype(np.int16),
            np.arange(raw.shape[0]) < k * p,
            np.concatenate([np.tile(np.arange(p), k), np.full(n_neg + n_pair, -1)]).astype(np.int64),
            gated,
            nearest_v,
            d_own,
            neg_near,
            known_rows,
            filler,
            sizes,
            vsize,
            known_floats=_known_extra(data, "floats", a),
            known_quality=_known_extra(data, "quality", a),
            is_pair=is_pair,
            pair_labels=list(data.pairs.labels) if data.pairs else [],
            pair_d_own=pair_d_own,
        )
        if dihedral and a == "pdq" and floats is not None:
            pool.dih_raw = dihedral_hashes(floats)
            pool.dih_nearest_verify, pool.dih_neg_nearest = _dihedral_nearest(
                pool.dih_raw, kw, fw, vsize - n_set, pool.negatives, bounds
            )
        pools[a] = pool
    return pools


def _known_extra(data: HashData, key: str, a: str) -> npt.NDArray[Any] | None:
    """PDQ floats or quality of every set member that came from an image (known, then references)."""
    if a != "pdq":
        return None
    parts = [data.orig[key][data.known_idx]]
    if data.pairs is not None:
        parts.append(data.pairs.ref[key])
    return np.concatenate(parts)


def _verdicts(
    variant: Variant,
    pool: QueryPool,
    rows_idx: npt.NDArray[np.intp],
    nearest: npt.NDArray[np.uint16],
    index: ExactIndex | None,
) -> npt.NDArray[np.bool_]:
    """Verdicts of ``variant`` for ``rows_idx``; ``nearest`` is (for a dihedral variant: over the
    8 transforms) each row's nearest distance to the set in question."""
    spec = variant.decision(get_algo(pool.algo))
    if spec.kind == "exact" and index is None:
        raise ValueError("exact decision needs an index")
    if not spec.dihedral:
        raw = pool.raw[rows_idx]
        fl = pool.floats[rows_idx] if pool.floats is not None else None
        v = spec.verdicts(raw, fl, nearest, index if index is not None else ExactIndex(raw[:1]))
        return v & ~pool.gated[rows_idx]
    if pool.dih_raw is None or pool.floats is None:
        raise ValueError(f"{variant.label}: dihedral matching needs PDQ float values")
    if spec.kind == "fuzzy":
        return np.asarray(nearest <= spec.radius, dtype=np.bool_) & ~pool.gated[rows_idx]
    assert index is not None
    out = np.zeros(len(rows_idx), dtype=np.bool_)
    dfl = dihedral_floats(pool.floats[rows_idx]) if spec.probe_bits > 0 else None
    for t in range(pool.dih_raw.shape[1]):
        out |= spec.verdicts(
            pool.dih_raw[rows_idx, t], None if dfl is None else dfl[:, t], nearest, index
        )
    return out & ~pool.gated[rows_idx]


def _nearest_for(variant: Variant, pool: QueryPool, size_index: int | None) -> npt.NDArray[np.uint16]:
    """Nearest distances at the verify size (``size_index`` None, all rows) or per size (negatives)."""
    if variant.dihedral:
        arr = pool.dih_nearest_verify if size_index is None else pool.dih_neg_nearest
        if arr is None:
            raise ValueError(f"{variant.label}: dihedral distances were not computed")
    else:
        arr = pool.nearest_verify if size_index is None else pool.neg_nearest
    return arr if size_index is None else arr[:, size_index]


def _det_curves(
    data: HashData, pool: QueryPool, algo: HashAlgo, pos: npt.NDArray[Any], neg: npt.NDArray[Any]
) -> dict[str, Any]:
    """DET over the threshold for one algo, so a reader can see what another threshold would cost."""
    # DET over the threshold (fuzzy matching), at the verified set size for FNMR
    taus = list(range(0, algo.bits // 2 + 1))
    pos_d = np.where(pool.gated[pos], np.iinfo(np.uint16).max, pool.nearest_verify[pos])
    fam_curves = {}
    for fam in sorted({p.family for p in data.perts} - {"control"}):
        members = [i for i, p in enumerate(data.perts) if p.family == fam]
        dd = pos_d[np.isin(pool.pert_of[pos], members)]
        fam_curves[fam] = [_share(dd > t) for t in taus]
    dd_all = pos_d[pool.pert_of[pos] != 0]
    fam_curves["all edits"] = [_share(dd_all > t) for t in taus]
    neg_d = np.where(pool.gated[neg][:, None], np.iinfo(np.uint16).max, pool.neg_nearest)
    return {
        "thresholds": taus,
        "default_threshold": algo.default_threshold,
        "fnmr": fam_curves,
        "fmr": {
            str(s): [_share(neg_d[:, si] <= t) for t in taus] for si, s in enumerate(pool.sizes)
        },
        "n_positive": len(dd_all),
        "n_negative": len(neg),
    }


def _histograms(data: HashData, pool: QueryPool, algo: HashAlgo, pos: npt.NDArray[Any]) -> dict[str, Any]:
    """Distance histograms for one algo: how far edits move a hash versus how near strangers land."""
    bins = algo.bits + 1
    return {
        "own_by_perturbation": {
            p.name: np.bincount(pool.d_own[pool.pert_of[pos] == i], minlength=bins).tolist()
            for i, p in enumerate(data.perts)
        },
        "unrelated_nearest_verify": np.bincount(
            pool.neg_nearest[:, pool.sizes.index(pool.verify_size)], minlength=bins
        ).tolist(),
    }


def analyse(
    data: HashData,
    pools: dict[str, QueryPool],
    variants: dict[str, list[Variant]],
    proto_algos: dict[str, list[str]],
) -> dict[str, Any]:
    """FNMR/FMR cells for every (variant, algo), plus DET curves and histograms per algo."""
    fnmr: list[dict[str, Any]] = []
    fmr: list[dict[str, Any]] = []
    det: dict[str, Any] = {}
    hist: dict[str, Any] = {}
    for a, pool in pools.items():
        algo = get_algo(a)
        pos = np.flatnonzero(pool.is_pos)
        neg = pool.negatives
        needs_exact = any(v.matching == "exact" for vs in variants.values() for v in vs)
        idx_by_size = {s: ExactIndex(pool.rows(s)) for s in pool.sizes} if needs_exact else {}
        for proto, vs in variants.items():
            for v in vs:
                if a not in proto_algos[proto] or not v.runs_on(a):
                    continue
                allq = np.arange(pool.raw.shape[0])
                near = _nearest_for(v, pool, None)
                verd = _verdicts(v, pool, allq, near, idx_by_size.get(pool.verify_size))
                pool.verdicts[v.label] = verd
                for pi, pert in enumerate(data.perts):
                    sel = pos[pool.pert_of[pos] == pi]
                    misses = int((~verd[sel]).sum())
                    fnmr.append(
                        {
                            "protocol": proto,
                            "variant": v.label,
                            "algo": a,
                            "perturbation": pert.name,
                            "family": pert.family,
                            "gated": int(pool.gated[sel].sum()),
                            **rate(misses, len(sel)),
                        }
                    )
                for group, keep in (("all edits", None), ("everyday edits", True)):
                    sel = (
                        pos if keep is None else pos[[data.perts[int(pool.pert_of[i])].everyday for i in pos]]
                    )
                    sel = sel[pool.pert_of[sel] != 0]  # the identity control is not an edit
                    misses = int((~verd[sel]).sum())
                    fnmr.append(
                        {
                            "protocol": proto,
                            "variant": v.label,
                            "algo": a,
                            "perturbation": group,
                            "family": "pooled",
                            "gated": int(pool.gated[sel].sum()),
                            **rate(misses, len(sel)),
                        }
                    )
                for si, s in enumerate(pool.sizes):
                    vn = _verdicts(v, pool, neg, _nearest_for(v, pool, si), idx_by_size.get(s))
                    fmr.append(
                        {
                            "protocol": proto,
                            "variant": v.label,
                            "algo": a,
                            "set_size": s,
                            **rate(int(vn.sum()), len(neg)),
                        }
                    )
        det[a] = _det_curves(data, pool, algo, pos, neg)
        hist[a] = _histograms(data, pool, algo, pos)
    return {"fnmr": fnmr, "fmr": fmr, "det": det, "histograms": hist}


def real_copy_cells(
    pools: dict[str, QueryPool], variants: dict[str, list[Variant]], proto_algos: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Misses on real copy pairs per (variant, algo, label), plus "all real copies".

    ``k`` counts missed copies, as in the FNMR cells; ``recall`` is 1 − rate. Each
    cell also gives the median distance from the copy to its own reference.
    """
    out: list[dict[str, Any]] = []
    for a, pool in pools.items():
        rows = pool.pair_rows
        if len(rows) == 0:
            continue
        labels = np.asarray(pool.pair_labels)
        own = pool.pair_d_own if pool.pair_d_own is not None else np.zeros(len(rows), np.uint16)
        groups = [(lab, labels == lab) for lab in sorted(set(pool.pair_labels))]
        groups.append(("all real copies", np.ones(len(rows), dtype=np.bool_)))  # always: one place to look
        for proto, vs in variants.items():
            for v in vs:
                if a not in proto_algos[proto] or not v.runs_on(a) or v.label not in pool.verdicts:
                    continue
                verd = pool.verdicts[v.label][rows]
                for lab, sel in groups:
                    misses = int((~verd[sel]).sum())
                    cell = {
                        "protocol": proto,
                        "variant": v.label,
                        "algo": a,
                        "label": lab,
                        "gated": int(pool.gated[rows][sel].sum()),
                        "median_distance_to_reference": float(np.median(own[sel])),
                        **rate(misses, int(sel.sum())),
                    }
                    cell["recall"] = None if cell["rate"] is None else 1.0 - cell["rate"]
                    out.append(cell)
    return out


def _no_pairs(algo_name: str, images: int) -> dict[str, Any]:
    """The distance record of a corpus with fewer than two unrelated pairs: nothing to fit."""
    algo = get_algo(algo_name)
    none = dict.fromkeys(
        ("mean", "sd", "even_fraction", "total_variation_vs_binomial", "min_distance", "beta_binomial"),
    )
    return {
        "algo": algo_name,
        "bits": algo.bits,
        "pairs": 0,
        "images": images,
        **none,
        "binomial_mean": algo.bits / 2,
        "binomial_sd": float(np.sqrt(algo.bits) / 2),
        "histogram": [0] * (algo.bits + 1),
        "threshold": algo.default_threshold,
        "pairs_within_threshold": 0,
        "pair_rate_empirical": rate(0, 0),
        "pair_rate_binomial": None,
        "pair_rate_beta_binomial": None,
        "pair_rate_cp_upper": None,
        "skipped": f"{images} usable image(s): no pair of images to measure",
    }


def _share(mask: npt.NDArray[np.bool_]) -> float | None:
    """Mean of a boolean array; None when it is empty (no data, not a rate of 0)."""
    return float(mask.mean()) if mask.size else None


def _pairs(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.append(p, 0.0) if len(p) % 2 else p
    return np.asarray(q.reshape(-1, 2).sum(axis=1), dtype=np.float64)


def corpus_distances(
    hashes: npt.NDArray[np.uint8], algo_name: str, pair_sample: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Unrelated-pair distances of the corpus vs binomial(bits, ½) and a beta-binomial fit."""
    from scipy import stats as st

    from ..stats import clopper_pearson, fit_beta_binomial

    algo = get_algo(algo_name)
    n = hashes.shape[0]
    total = n * (n - 1) // 2
    if total <= pair_sample:
        i, j = np.triu_indices(n, 1)
    else:
        i = rng.integers(0, n, pair_sample * 2)
        j = rng.integers(0, n, pair_sample * 2)
        keep = i != j
        i, j = i[keep][:pair_sample], j[keep][:pair_sample]
    w = to_words(hashes)
    d = np.bitwise_count(w[i] ^ w[j]).sum(axis=1).astype(np.int64)
    if d.size == 0:
        return _no_pairs(algo_name, int(n))
    fit = fit_beta_binomial(d, algo.bits) if d.size >= 2 else None  # one pair: counted, not fitted
    ks = np.arange(algo.bits + 1)
    counts = np.bincount(d, minlength=algo.bits + 1)
    binom = st.binom.pmf(ks, algo.bits, 0.5)
    emp = counts / counts.sum()
    r = algo.default_threshold
    within = int((d <= r).sum())
    return {
        "algo": algo_name,
        "bits": algo.bits,
        "pairs": int(d.size),
        "images": int(n),
        "mean": float(d.mean()),
        "sd": float(d.std(ddof=1)) if d.size >= 2 else None,
        "binomial_mean": algo.bits / 2,
        "binomial_sd": float(np.sqrt(algo.bits) / 2),
        # PDQ thresholds at the median: every hash has 128 ones, so distances are even.
        # Compare in bins of two distances so parity does not dominate the number.
        "even_fraction": float((d % 2 == 0).mean()),
        "total_variation_vs_binomial": float(0.5 * np.abs(_pairs(emp) - _pairs(binom)).sum()),
        "min_distance": int(d.min()),
        "histogram": counts.tolist(),
        "beta_binomial": fit.to_dict() if fit else None,
        "threshold": r,
        "pairs_within_threshold": within,
        "pair_rate_empirical": rate(within, int(d.size)),
        "pair_rate_binomial": float(st.binom.cdf(r, algo.bits, 0.5)),
        "pair_rate_beta_binomial": fit.cdf(r) if fit else None,
        "pair_rate_cp_upper": clopper_pearson(within, int(d.size))[1],
    }
