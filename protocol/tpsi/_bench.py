"""Timing entry points for the benchmark suite (no HTTP; the suite adds that).

Each function returns a plain dict of numbers plus the bound it should be read
against, measured in the same run: the scalar multiplications a voucher needs
(client: per pair 3 variable-base + 1 fixed-base multiplication, plus one
hash-to-group; server: one variable-base multiplication per pair).
"""

from __future__ import annotations

import os
import resource
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ..hashes import ALGO_IDS, HashSet, get_algo
from ..hazmat import dhf, shamir
from ..hazmat.ristretto import base_mult, random_scalar, scalar_mult
from . import _cuckoo
from ._core import AccountSecrets, cuckoo_item, h2g, make_voucher, open_outer, parse_inner
from ._table import build_table
from ._wire import Manifest, TableMsg

__all__ = [
    "bench_reconstruction",
    "bench_table",
    "bench_vouchers",
    "group_op_costs",
    "table_size_bytes",
]


def table_size_bytes(n: int, eps: float = 0.3, n_hash: int = 3) -> int:
    """Bytes of the table message for ``n`` hashes (a new client downloads it once)."""
    return 4 + 2 * 4 + 4 + 32 * _cuckoo.table_slots(n, eps, n_hash)


def group_op_costs(reps: int = 300) -> dict[str, float]:
    """Median µs of the group operations, measured now (the bound's unit costs)."""
    s, p = random_scalar(), base_mult(random_scalar())

    def med(fn: Any) -> float:
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out) * 1e6

    return {
        "scalar_mult_us": med(lambda: scalar_mult(s, p)),
        "base_mult_us": med(lambda: base_mult(s)),
        "hash_to_group_us": med(lambda: h2g(secrets.token_bytes(33))),
    }


def _random_set(n: int, algo: str = "pdq") -> HashSet:
    a = get_algo(algo)
    return HashSet.from_raw(a, secrets.token_bytes(n * a.nbytes))


def bench_table(
    n: int, algo: str = "pdq", workers: int | None = None, eps: float = 0.3, n_hash: int = 3
) -> dict[str, Any]:
    """Build a table for ``n`` random hashes on ``workers`` processes (default: all cores)."""
    hs = _random_set(n, algo)
    aid = ALGO_IDS[algo]
    blob = hs.raw()
    nb = hs.algo.nbytes
    items = [cuckoo_item(aid, blob[i : i + nb]) for i in range(0, len(blob), nb)]
    t0, c0 = time.perf_counter(), time.process_time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    built = build_table(items, random_scalar(), n_hash, eps, workers)
    total, parent_cpu = time.perf_counter() - t0, time.process_time() - c0
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
    costs = group_op_costs(100)
    bound_cpu_s = n * (costs["scalar_mult_us"] + costs["hash_to_group_us"]) / 1e6
    return {
        "n": n,
        "workers": workers or os.cpu_count(),
        "slots": built.n_slots,
        "table_bytes": table_size_bytes(n, eps, n_hash),
        "seconds_total": total,
        "seconds_cuckoo": built.seconds_cuckoo,
        "seconds_points": built.seconds_points,
        "cuckoo_attempts": built.attempts,
        "parent_cpu_seconds": parent_cpu,
        "worker_cpu_seconds": child_cpu,
        "loadavg_1min": os.getloadavg()[0],
        "bound_cpu_seconds_single_core": bound_cpu_s,
        **costs,
    }


def _fixture(
    set_size: int, t: int, dhf_dim: int, ad_max: int, synthetic_rate: float, n_hash: int = 3
) -> tuple[Manifest, TableMsg, bytes, list[bytes]]:
    hs = _random_set(set_size)
    aid = ALGO_IDS["pdq"]
    blob = hs.raw()
    items = [cuckoo_item(aid, blob[i : i + 32]) for i in range(0, len(blob), 32)]
    alpha = random_scalar()
    built = build_table(items, alpha, n_hash, 0.3, 1)
    table = TableMsg(1, built.slots)
    m = Manifest(
        epoch=1,
        algo_id=aid,
        set_size=set_size,
        n_slots=built.n_slots,
        n_hash=n_hash,
        cuckoo_seed=built.seed,
        table_digest=bytes(32),
        big_l=base_mult(alpha),
        threshold=t,
        synthetic_ppm=round(synthetic_rate * 1e6),
        dhf_dim=dhf_dim,
        ad_max=ad_max,
        set_digest=bytes(32),
        created=0,
        public_key=bytes(32),
        signature=bytes(64),
    )
    return m, table, alpha, items


def bench_vouchers(
    n_images: int = 50, set_size: int = 1000, t: int = 30, dhf_dim: int = 128, ad_max: int = 256
) -> dict[str, Any]:
    """Client ms per voucher (match / non-match / synthetic) and server ms per voucher."""
    m, table, alpha, items = _fixture(set_size, t, dhf_dim, ad_max, 0.0)
    acct = AccountSecrets.derive(secrets.token_bytes(32), t, dhf_dim)
    acc = b"bench"
    kinds: dict[str, list[bytes]] = {
        "match": [items[i % len(items)] for i in range(n_images)],
        "nonmatch": [cuckoo_item(1, secrets.token_bytes(32)) for _ in range(n_images)],
    }
    out: dict[str, Any] = {
        "n_images": n_images,
        "set_size": set_size,
        "voucher_bytes": m.voucher_bytes,
    }
    vouchers = []
    for kind, its in (*kinds.items(), ("synthetic", kinds["nonmatch"])):
        times = []
        for it in its:
            t0 = time.perf_counter()
            v, _ = make_voucher(m, table, acct, acc, it, b"x" * 64, synthetic=(kind == "synthetic"))
            times.append(time.perf_counter() - t0)
            vouchers.append(v)
        out[f"client_ms_{kind}"] = statistics.median(times) * 1e3
    st = []
    for v in vouchers:
        t0 = time.perf_counter()
        open_outer(alpha, m, v, acc)
        st.append(time.perf_counter() - t0)
    out["server_ms_per_voucher"] = statistics.median(st) * 1e3
    costs = group_op_costs(200)
    out.update(costs)
    d = m.n_hash
    out["client_bound_ms"] = (
        d * (3 * costs["scalar_mult_us"] + costs["base_mult_us"]) + costs["hash_to_group_us"]
    ) / 1e3
    out["server_bound_ms"] = d * costs["scalar_mult_us"] / 1e3
    return out


def bench_reconstruction(
    t: int = 30,
    synthetic_rate: float = 0.05,
    n_vouchers: int = 300,
    real_matches: int | None = None,
    dhf_dim: int = 128,
    through_server: bool = True,
) -> dict[str, Any]:
    """Time the threshold step: DHF detection + Shamir + AD decryption at ``t`` real shares.

    ``n_vouchers`` images of which ``real_matches`` (default t) match; each
    non-matching image is synthetic with probability ``synthetic_rate``. With
    ``through_server`` the full server path (SQLite, reveal) is timed too.
    """
    r = t if real_matches is None else real_matches
    m, table, alpha, items = _fixture(max(r, 50), t, dhf_dim, 64, 0.0)
    acct = AccountSecrets.derive(secrets.token_bytes(32), t, dhf_dim)
    acc = b"bench-account"
    opened = []
    n_syn = 0
    vouchers = []
    for i in range(n_vouchers):
        if i < r:
            v, _ = make_voucher(m, table, acct, acc, items[i], f"img-{i}".encode(), synthetic=False)
        else:
            syn = secrets.randbelow(1_000_000) < synthetic_rate * 1_000_000
            n_syn += syn
            v, _ = make_voucher(
                m,
                table,
                acct,
                acc,
                cuckoo_item(1, secrets.token_bytes(32)),
                f"img-{i}".encode(),
                synthetic=syn,
            )
        vouchers.append(v)
        status, inner = open_outer(alpha, m, v, acc)
        if status == 1:
            o = parse_inner(inner, dhf_dim, 64)
            assert o is not None
            opened.append(o)
    t0 = time.perf_counter()
    pts = [dhf.detection_point(o.x_bytes) for o in opened]
    import numpy as np

    support = dhf.kernel_support(dhf.rows(pts, np.stack([o.det for o in opened]), t))
    t1 = time.perf_counter()
    coeffs = shamir.interpolate([(opened[i].x, opened[i].y) for i in support[:t]])
    ok = all(shamir.eval_poly(coeffs, opened[i].x) == opened[i].y for i in support)
    t2 = time.perf_counter()
    out: dict[str, Any] = {
        "t": t,
        "n_vouchers": n_vouchers,
        "real_matches": r,
        "synthetic": n_syn,
        "opened": len(opened),
        "detected_real": len(support),
        "consistent": ok,
        "dhf_dim": dhf_dim,
        "detect_ms": (t1 - t0) * 1e3,
        "interpolate_ms": (t2 - t1) * 1e3,
    }
    if through_server:
        from ._options import TpsiServerOptions
        from ._server import TpsiServer
        from ._wire import UploadBatch

        hs = _random_set(max(r, 50))
        with tempfile.TemporaryDirectory() as d:
            srv = TpsiServer(
                hs,
                Path(d),
                TpsiServerOptions(
                    threshold=t, dhf_dim=dhf_dim, ad_max=64, reveal_mode="manual", workers=1
                ),
            )
            try:
                sm, stable = srv.manifest, TableMsg.from_bytes(srv.table_bytes)
                sitems = [
                    cuckoo_item(1, v) for v in (hs.raw()[i : i + 32] for i in range(0, 32 * r, 32))
                ]
                batch = []
                for i in range(n_vouchers):
                    if i < r:
                        v, _ = make_voucher(sm, stable, acct, acc, sitems[i], b"m", synthetic=False)
                    else:
                        syn = secrets.randbelow(1_000_000) < synthetic_rate * 1_000_000
                        v, _ = make_voucher(
                            sm,
                            stable,
                            acct,
                            acc,
                            cuckoo_item(1, secrets.token_bytes(32)),
                            b"n",
                            synthetic=syn,
                        )
                    batch.append(v.to_bytes())
                from ..base import Request

                t3 = time.perf_counter()
                for i in range(0, len(batch), 256):
                    srv._post_vouchers(
                        Request(UploadBatch("bench-account", tuple(batch[i : i + 256])).to_bytes())
                    )
                t4 = time.perf_counter()
                revealed = srv.process_reveals("bench-account")
                t5 = time.perf_counter()
                out.update(
                    {
                        "server_upload_ms_per_voucher": (t4 - t3) * 1e3 / n_vouchers,
                        "server_reveal_ms": (t5 - t4) * 1e3,
                        "server_revealed": revealed,
                    }
                )
            finally:
                srv.close()
    return out
