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
from blindmatch.client import get_algo

from ..perturb.edits import Perturbation
from ..stats import rate
from .database import filler_hashes, set_rows
from .rules import ExactIndex, nearest_distances, prefix_nearest, to_words
from .variants import Variant

__all__ = ["HashData", "QueryPool", "analyse", "build_pools"]


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


@dataclass
class QueryPool:
    """All queries for one algorithm, with what the decision functions and the sampler need."""

    algo: str
    raw: npt.NDArray[np.uint8]
    floats: npt.NDArray[np.float32] | None
    quality: npt.NDArray[np.int16]
    is_pos: npt.NDArray[np.bool_]
    pert_of: npt.NDArray[np.int64]  # perturbation index, -1 for negatives
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

    def rows(self, size: int) -> npt.NDArray[np.uint8]:
        return set_rows(self.known_rows, self.filler, size)

    def floats_of(self, i: int) -> tuple[float, ...] | None:
        return None if self.floats is None else tuple(float(x) for x in self.floats[i])


def build_pools(data: HashData, cfg: dict[str, Any], seed: int) -> dict[str, QueryPool]:
    sizes = [int(s) for s in cfg["database"]["sizes"]]
    vsize = int(cfg["accuracy"]["verify_set_size"])
    min_q = int(cfg["corpus"]["min_quality"])
    pools = {}
    k, p = len(data.known_idx), len(data.perts)
    for a in data.algos:
        algo = get_algo(a)
        known_rows = data.orig[f"hash_{a}"][data.known_idx]
        filler = filler_hashes(algo, sizes[-1] - k, seed)
        pos = data.pert[f"hash_{a}"].reshape(k * p, -1)
        neg = data.orig[f"hash_{a}"][data.unrelated_idx]
        raw = np.concatenate([pos, neg])
        if a == "pdq":
            floats = np.concatenate(
                [data.pert["floats"].reshape(k * p, -1), data.orig["floats"][data.unrelated_idx]]
            )
            quality = np.concatenate(
                [data.pert["quality"].reshape(-1), data.orig["quality"][data.unrelated_idx]]
            )
            gated = quality < min_q
        else:
            floats = None
            quality = np.full(raw.shape[0], -1, dtype=np.int16)
            gated = np.zeros(raw.shape[0], dtype=np.bool_)
        kw, fw = to_words(known_rows), to_words(filler)
        qw = to_words(raw)
        d_known = nearest_distances(kw, qw)
        d_fill_v = nearest_distances(fw[: vsize - k], qw)
        nearest_v = np.minimum(d_known, d_fill_v)
        own = np.repeat(np.arange(k), p)
        d_own = np.bitwise_count(qw[: k * p] ^ kw[own]).sum(axis=1).astype(np.uint16)
        negw = qw[k * p :]
        neg_near = np.minimum(prefix_nearest(fw, negw, [s - k for s in sizes]), d_known[k * p :, None])
        pools[a] = QueryPool(
            a,
            raw,
            floats,
            quality.astype(np.int16),
            np.arange(raw.shape[0]) < k * p,
            np.concatenate([np.tile(np.arange(p), k), np.full(len(neg), -1)]).astype(np.int64),
            gated,
            nearest_v,
            d_own,
            neg_near,
            known_rows,
            filler,
            sizes,
            vsize,
            known_floats=data.orig["floats"][data.known_idx] if a == "pdq" else None,
            known_quality=data.orig["quality"][data.known_idx] if a == "pdq" else None,
        )
    return pools


def _verdicts(
    variant: Variant,
    pool: QueryPool,
    rows_idx: npt.NDArray[np.intp],
    nearest: npt.NDArray[np.uint16],
    index: ExactIndex | None,
) -> npt.NDArray[np.bool_]:
    spec = variant.decision(get_algo(pool.algo))
    raw = pool.raw[rows_idx]
    fl = pool.floats[rows_idx] if pool.floats is not None else None
    if spec.kind == "exact" and index is None:
        raise ValueError("exact decision needs an index")
    v = spec.verdicts(raw, fl, nearest, index if index is not None else ExactIndex(raw[:1]))
    return v & ~pool.gated[rows_idx]


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
        neg = np.flatnonzero(~pool.is_pos)
        needs_exact = any(v.matching == "exact" for vs in variants.values() for v in vs)
        idx_by_size = {s: ExactIndex(pool.rows(s)) for s in pool.sizes} if needs_exact else {}
        for proto, vs in variants.items():
            for v in vs:
                if a not in proto_algos[proto]:
                    continue
                allq = np.arange(pool.raw.shape[0])
                verd = _verdicts(v, pool, allq, pool.nearest_verify, idx_by_size.get(pool.verify_size))
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
                    vn = _verdicts(v, pool, neg, pool.neg_nearest[:, si], idx_by_size.get(s))
                    fmr.append(
                        {
                            "protocol": proto,
                            "variant": v.label,
                            "algo": a,
                            "set_size": s,
                            **rate(int(vn.sum()), len(neg)),
                        }
                    )
        # DET over the threshold (fuzzy matching), at the verified set size for FNMR
        taus = list(range(0, algo.bits // 2 + 1))
        pos_d = np.where(pool.gated[pos], np.iinfo(np.uint16).max, pool.nearest_verify[pos])
        fam_curves = {}
        for fam in sorted({p.family for p in data.perts} - {"control"}):
            members = [i for i, p in enumerate(data.perts) if p.family == fam]
            dd = pos_d[np.isin(pool.pert_of[pos], members)]
            fam_curves[fam] = [float((dd > t).mean()) for t in taus]
        dd_all = pos_d[pool.pert_of[pos] != 0]
        fam_curves["all edits"] = [float((dd_all > t).mean()) for t in taus]
        neg_d = np.where(pool.gated[neg][:, None], np.iinfo(np.uint16).max, pool.neg_nearest)
        det[a] = {
            "thresholds": taus,
            "default_threshold": algo.default_threshold,
            "fnmr": fam_curves,
            "fmr": {
                str(s): [float((neg_d[:, si] <= t).mean()) for t in taus] for si, s in enumerate(pool.sizes)
            },
            "n_positive": len(dd_all),
            "n_negative": len(neg),
        }
        bins = algo.bits + 1
        hist[a] = {
            "own_by_perturbation": {
                p.name: np.bincount(pool.d_own[pool.pert_of[pos] == i], minlength=bins).tolist()
                for i, p in enumerate(data.perts)
            },
            "unrelated_nearest_verify": np.bincount(
                pool.neg_nearest[:, pool.sizes.index(pool.verify_size)], minlength=bins
            ).tolist(),
        }
    return {"fnmr": fnmr, "fmr": fmr, "det": det, "histograms": hist}


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
    fit = fit_beta_binomial(d, algo.bits)
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
        "sd": float(d.std(ddof=1)),
        "binomial_mean": algo.bits / 2,
        "binomial_sd": float(np.sqrt(algo.bits) / 2),
        # PDQ thresholds at the median: every hash has 128 ones, so distances are even.
        # Compare in bins of two distances so parity does not dominate the number.
        "even_fraction": float((d % 2 == 0).mean()),
        "total_variation_vs_binomial": float(0.5 * np.abs(_pairs(emp) - _pairs(binom)).sum()),
        "min_distance": int(d.min()),
        "histogram": counts.tolist(),
        "beta_binomial": fit.to_dict(),
        "threshold": r,
        "pairs_within_threshold": within,
        "pair_rate_empirical": rate(within, int(d.size)),
        "pair_rate_binomial": float(st.binom.cdf(r, algo.bits, 0.5)),
        "pair_rate_beta_binomial": fit.cdf(r),
        "pair_rate_cp_upper": clopper_pearson(within, int(d.size))[1],
    }
