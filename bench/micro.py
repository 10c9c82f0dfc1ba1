"""micro: one row per primitive, each stated as the bound of the protocols using it.

Why these rows: every protocol's cost floor is a count of primitive operations
(scalar multiplications for the OPRF and threshold PSI, plaintext×ciphertext
multiplies for HE, one streaming pass for the Hamming index). Measuring them in
the same run lets the ``protocols`` suite report each protocol as a ratio to
its floor on *this* machine rather than to a number from elsewhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .context import BenchContext, Metric, make_row
from .hooks import discover_filter, he_params
from .timing import Stat, measure

__all__ = [
    "ensure_group_prims",
    "ensure_he_prims",
    "hamming_index_qps",
    "run_micro",
    "stream_pass_seconds",
]

_DST = b"HashToGroup-OPRFV1-\x00-ristretto255-SHA512"


def _m(ctx: BenchContext, fn: Callable[[], object], budget: float = 3.0) -> Stat:
    return measure(fn, repeats=ctx.repeats, min_time=0.01 if ctx.quick else 0.05, budget_s=budget)


def ensure_group_prims(ctx: BenchContext) -> None:
    """ristretto255 (libsodium via rbcl, through protocol/hazmat), AEAD and SHA-512."""
    from blindmatch.protocol.hazmat import ristretto as r
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    msg = secrets.token_bytes(32)
    s = r.random_scalar()
    p = r.hash_to_group(msg, _DST)
    q = r.hash_to_group(msg[::-1], _DST)
    wide = secrets.token_bytes(64)
    import rbcl

    ctx.prim("r255.hash_to_group", lambda: _m(ctx, lambda: r.hash_to_group(msg, _DST)))
    ctx.prim("r255.from_hash", lambda: _m(ctx, lambda: rbcl.crypto_core_ristretto255_from_hash(wide)))
    ctx.prim("r255.scalar_mult", lambda: _m(ctx, lambda: r.scalar_mult(s, p)))
    ctx.prim("r255.base_mult", lambda: _m(ctx, lambda: r.base_mult(s)))
    ctx.prim("r255.add", lambda: _m(ctx, lambda: r.add(p, q)))
    ctx.prim("r255.scalar_inverse", lambda: _m(ctx, lambda: r.scalar_inverse(s)))
    ctx.prim("r255.decode_element", lambda: _m(ctx, lambda: r.decode_element(p)))
    ctx.prim("sha512.64B", lambda: _m(ctx, lambda: r.sha512(wide)))
    key = AESGCM.generate_key(bit_length=128)
    aead = AESGCM(key)
    nonce = secrets.token_bytes(12)
    for size, label in ((64, "64B"), (1024, "1KB")):
        pt = secrets.token_bytes(size)
        ct = aead.encrypt(nonce, pt, b"ad")
        ctx.prim(f"aead.aesgcm128_enc_{label}", partial(_m, ctx, partial(aead.encrypt, nonce, pt, b"ad")))
        ctx.prim(f"aead.aesgcm128_dec_{label}", partial(_m, ctx, partial(aead.decrypt, nonce, ct, b"ad")))


def ensure_he_prims(ctx: BenchContext) -> None:
    """TenSEAL BFV at the ``he`` protocol's parameters (discovered), else N=8192, t=65537."""
    import tenseal as ts

    params = he_params()
    ctx.prim_info["he"] = params
    n_poly, t_mod = int(params["poly_modulus_degree"]), int(params["plain_modulus"])
    holder: dict[str, Any] = {}

    def make_ctx() -> object:
        c = ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=n_poly, plain_modulus=t_mod)
        c.generate_relin_keys()
        return c

    ctx.prim(
        "he.bfv_context_keygen",
        lambda: measure(make_ctx, repeats=min(3, ctx.repeats), min_time=0.0, budget_s=10),
    )
    c = make_ctx()
    rng = np.random.default_rng(ctx.seed)
    v = [int(x) for x in rng.integers(0, 2, n_poly)]
    w = [int(x) for x in rng.integers(0, 2, n_poly)]
    enc = ts.bfv_vector(c, v)
    enc2 = ts.bfv_vector(c, w)
    holder["ct"] = enc
    ctx.prim("he.bfv_encrypt", lambda: _m(ctx, lambda: ts.bfv_vector(c, v), 5))
    ctx.prim("he.bfv_ptxct", lambda: _m(ctx, lambda: enc * w, 5))
    ctx.prim("he.bfv_ctxct_relin", lambda: _m(ctx, lambda: enc * enc2, 8))
    ctx.prim("he.bfv_ctpct_add", lambda: _m(ctx, lambda: enc + enc2, 3))
    ctx.prim("he.bfv_decrypt", lambda: _m(ctx, lambda: enc.decrypt(), 5))
    size = float(len(enc.serialize()))
    ctx.prim("he.ciphertext_bytes", lambda: Stat(size, size, size, 1, "B"))
    # correctness guard: a wrong product would make every floor meaningless
    got = (enc * w).decrypt()
    if [a * b for a, b in zip(v, w, strict=True)] != list(got):
        raise RuntimeError("TenSEAL pt×ct self-check failed")


def stream_pass_seconds(ctx: BenchContext, n: int, words: int) -> Stat:
    """One XOR pass over an n × words uint64 matrix: the memory floor of a linear scan."""

    def run() -> Stat:
        rng = np.random.default_rng([ctx.seed, n, 7])
        m = rng.integers(0, 2**63, size=(n, words), dtype=np.uint64)
        q = rng.integers(0, 2**63, size=words, dtype=np.uint64)
        out = np.empty_like(m)
        return _m(ctx, lambda: np.bitwise_xor(m, q, out=out), 5)

    return ctx.prim(f"stream_pass.{n}x{words}", run)


def hamming_index_qps(ctx: BenchContext, n: int) -> Stat:
    """Seconds per ``HammingIndex.nearest`` query over n random PDQ hashes."""
    from blindmatch.protocol import HammingIndex, HashSet, get_algo

    def run() -> Stat:
        algo = get_algo("pdq")
        rng = np.random.default_rng([ctx.seed, n, 11])
        hs = HashSet(algo, rng.integers(0, 2**64, size=(n, algo.words), dtype=np.uint64))
        idx = HammingIndex(hs)
        qs = [hs.value(int(i)) for i in rng.integers(0, n, 8)]
        it = iter(range(1 << 62))
        return _m(ctx, lambda: idx.nearest(qs[next(it) % len(qs)]), 10)

    return ctx.prim(f"hamming_index.nearest.{n}", run)


def _hash_rows(ctx: BenchContext) -> None:
    import pdqhash
    from blindmatch.client import hash_image
    from blindmatch.sim import generate_image

    for side in (512, 1024):
        img = generate_image(ctx.seed, (side, side))
        for algo in ("pdq", "phash", "dhash"):
            st = _m(ctx, partial(hash_image, img, algo), 8)
            ctx.prims[f"hash.{algo}.{side}"] = st
            note = (
                "client.hash_image: downscales to 512 px first, as the PDQ reference tool"
                if (algo == "pdq" and side > 512)
                else None
            )
            ctx.add(
                make_row(
                    "micro",
                    "perceptual hash",
                    f"{algo} {side}×{side}",
                    {"time": Metric(st, note=note)},
                    {"side": side, "algo": algo},
                    bound_for="every protocol: client cost per image before any cryptography",
                )
            )
        if side > 512:
            arr = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
            st = _m(ctx, partial(pdqhash.compute, arr), 8)
            ctx.add(
                make_row(
                    "micro",
                    "perceptual hash",
                    f"pdq {side}×{side} raw pdqhash.compute (no downscale)",
                    {"time": Metric(st)},
                    {"side": side, "algo": "pdq"},
                    bound_for="reference only: what skipping the 512-px downscale would cost",
                )
            )


def _filter_rows(ctx: BenchContext) -> None:
    f = discover_filter()
    if f is None:
        ctx.add(
            make_row(
                "micro",
                "filter",
                "approximate-membership filter build / lookup",
                status="skipped",
                reason="no oprf filter found in this build (blindmatch.protocol.oprf not registered yet)",
                bound_for="oprf: server set-up (build), client 1 lookup per probe",
            )
        )
        return
    sizes = sorted({s for s in ctx.sizes if s <= 100_000} | {10_000})
    if ctx.quick:
        sizes = [min(ctx.sizes)]
    for n in sizes:
        items = [secrets.token_bytes(64) for _ in range(n)]
        built: dict[str, Any] = {}

        def build(items: list[bytes] = items) -> None:
            built["f"] = f.build(items)

        st_build = measure(build, repeats=min(3, ctx.repeats), min_time=0.0, budget_s=30)
        blob_len = f.size_bytes(built["f"])
        probes = [items[i] for i in range(0, n, max(1, n // 64))] + [
            secrets.token_bytes(64) for _ in range(64)
        ]
        it = iter(range(1 << 62))
        obj = built["f"]
        st_look = _m(ctx, lambda: f.contains(obj, probes[next(it) % len(probes)]), 3)
        bits_per = 8.0 * blob_len / n
        ctx.prims[f"filter.build_per_elem.{n}"] = st_build.per(n)
        ctx.prims["filter.lookup"] = st_look
        ctx.add(
            make_row(
                "micro",
                "filter",
                f"{f.name} build, n={n}",
                {
                    "time_per_element": Metric(st_build.per(n)),
                    "bits_per_element": Metric(
                        Stat(bits_per, bits_per, bits_per, 1, "bit"),
                        bound=f.log2_inv_fpr,
                        bound_formula="log2(1/fpr)",
                    ),
                },
                {"n": n, "fpr": f.fpr, "impl": f.impl},
                bound_for="oprf: server set-up; filter size bound log2(1/fpr) bits per element",
            )
        )
        ctx.add(
            make_row(
                "micro",
                "filter",
                f"{f.name} lookup, n={n}",
                {"time": Metric(st_look)},
                {"n": n, "fpr": f.fpr, "impl": f.impl},
                bound_for="oprf: client, 1 lookup per probe",
            )
        )


_GROUP_ROWS: list[tuple[str, str, str]] = [
    (
        "r255.hash_to_group",
        "hash-to-group (RFC 9380 expand_message_xmd + libsodium map)",
        "oprf: client 1/query, server set-up 1/element; tpsi: client 1/image, server set-up 1/element",
    ),
    (
        "r255.from_hash",
        "libsodium ristretto255_from_hash alone (64-byte input)",
        "part of hash-to-group; the Python expand_message_xmd is the rest",
    ),
    (
        "r255.scalar_mult",
        "scalar multiplication (variable base)",
        "oprf: client 2/query (blind, unblind), server ≥1/evaluated element and 1/set element; "
        "tpsi: client 3/cuckoo location, server 1/location, set-up 1/element",
    ),
    ("r255.base_mult", "scalar multiplication (fixed base G)", "tpsi: client 1/cuckoo location (γ·G)"),
    ("r255.add", "point addition", "tpsi: client 2/cuckoo location"),
    ("r255.scalar_inverse", "scalar inversion", "oprf: client 1/query (unblind)"),
    (
        "r255.decode_element",
        "element decoding (canonical, non-identity check)",
        "oprf/tpsi: every element read from the wire",
    ),
    ("sha512.64B", "SHA-512 of 64 bytes", "oprf: finalize 1/query"),
    ("aead.aesgcm128_enc_64B", "AES-128-GCM encrypt 64 B", "tpsi: client, inner+outer layer per voucher"),
    ("aead.aesgcm128_dec_64B", "AES-128-GCM decrypt 64 B", "tpsi: server, 1 trial decryption per location"),
    ("aead.aesgcm128_enc_1KB", "AES-128-GCM encrypt 1 KB", "tpsi: client, vouchers with larger AD"),
    ("aead.aesgcm128_dec_1KB", "AES-128-GCM decrypt 1 KB", "tpsi: server, revealed AD"),
]

_HE_ROWS: list[tuple[str, str, str]] = [
    ("he.bfv_context_keygen", "BFV context + secret/public/relin keys", "he: client once"),
    ("he.bfv_encrypt", "BFV encrypt one full vector", "he: client 1/query"),
    (
        "he.bfv_ptxct",
        "BFV plaintext × ciphertext (plaintext encoded per call, as TenSEAL does)",
        "he: server floor = ⌈n·bits/useful slots⌉ × this, per query",
    ),
    (
        "he.bfv_ctxct_relin",
        "BFV ciphertext × ciphertext + relinearisation",
        "he: masked zero test ∏(d−k) (depth ≈ log2(r+1) of these)",
    ),
    ("he.bfv_ctpct_add", "BFV ciphertext + ciphertext", "he: distance accumulation"),
    ("he.bfv_decrypt", "BFV decrypt", "he: verdict holder 1/query (or per result ciphertext)"),
]


def run_micro(ctx: BenchContext) -> None:
    """All micro rows; primitives land in ``ctx.prims`` for the other suites."""
    ctx.log("micro: ristretto255, AEAD")
    ensure_group_prims(ctx)
    for key, label, used in _GROUP_ROWS:
        grp = (
            "ristretto255 (libsodium)"
            if key.startswith("r255")
            else ("AEAD (cryptography)" if key.startswith("aead") else "hash")
        )
        ctx.add(make_row("micro", grp, label, {"time": Metric(ctx.prims[key])}, {"key": key}, bound_for=used))
    sm = ctx.prims["r255.scalar_mult"]
    ctx.add(
        make_row(
            "micro",
            "ristretto255 (libsodium)",
            "raw scalar multiplications per second, one core",
            {"rate": Metric(sm.rate("ops/s"))},
            {"key": "r255.scalar_mult"},
            bound_for="oprf: ceiling of server evaluations/s per core (goal: HTTP ≥ 50% of it)",
        )
    )
    ctx.log("micro: filter")
    try:
        _filter_rows(ctx)
    except Exception as e:  # a broken hook must not sink the suite; it is reported
        ctx.add(make_row("micro", "filter", "filter build / lookup", status="failed", reason=repr(e)))
    ctx.log("micro: TenSEAL BFV")
    ensure_he_prims(ctx)
    p = ctx.prim_info["he"]
    for key, label, used in _HE_ROWS:
        ctx.add(
            make_row(
                "micro",
                f"TenSEAL BFV N={p['poly_modulus_degree']}",
                label,
                {"time": Metric(ctx.prims[key])},
                {"key": key, **p},
                bound_for=used,
            )
        )
    ctx.add(
        make_row(
            "micro",
            f"TenSEAL BFV N={p['poly_modulus_degree']}",
            "ciphertext size (serialized)",
            {"size": Metric(ctx.prims["he.ciphertext_bytes"])},
            {**p},
            bound_for="he: bytes per query ≥ 1 ciphertext up (+ result down)",
        )
    )
    ctx.log("micro: perceptual hashes")
    _hash_rows(ctx)
    ctx.log("micro: Hamming index")
    hsizes = [1_000] if ctx.quick else [10_000, 100_000, 1_000_000]
    for n in hsizes:
        st = hamming_index_qps(ctx, n)
        floor = stream_pass_seconds(ctx, n, 4)
        ctx.add(
            make_row(
                "micro",
                "Hamming index (numpy)",
                f"nearest(), n={n} PDQ hashes",
                {
                    "time": Metric(
                        st, bound=floor.median, bound_formula="one XOR pass over n×32 B (memory floor)"
                    ),
                    "queries_per_s": Metric(st.rate("queries/s")),
                },
                {"n": n},
                bound_for="plain: server per query; he: the plaintext reference",
            )
        )
