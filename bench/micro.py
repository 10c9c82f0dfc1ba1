"""micro: one row per primitive, each stated as the bound of the protocols using it.

Why these rows: every protocol's cost floor is a count of primitive operations
(scalar multiplications for the OPRF and threshold PSI, plaintext×ciphertext
multiplies for HE, one streaming pass for the Hamming index). Measuring them in
the same run lets the ``protocols`` suite report each protocol as a ratio to
its floor on *this* machine rather than to a number from elsewhere.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .context import BenchContext, Metric, make_row
from .hooks import FilterAdapter, discover_filter, he_params
from .timing import Stat, measure

__all__ = [
    "ensure_group_prims",
    "ensure_he_prims",
    "ensure_seal_prims",
    "group_ops",
    "hamming_index_qps",
    "run_micro",
    "stream_pass_seconds",
]

_DST = b"HashToGroup-OPRFV1-\x00-ristretto255-SHA512"


def _m(ctx: BenchContext, fn: Callable[[], object], budget: float = 3.0) -> Stat:
    return measure(fn, repeats=ctx.repeats, min_time=0.01 if ctx.quick else 0.05, budget_s=budget)


def group_ops() -> dict[str, Callable[[], object]]:
    """One call of each ristretto255 primitive (libsodium via rbcl, through protocol/hazmat)
    and SHA-512, on fresh inputs: the micro suite, the paired rounds and the load suite time
    the same calls."""
    import rbcl
    from blindmatch.protocol.hazmat import ristretto as r

    msg = secrets.token_bytes(32)
    s = r.random_scalar()
    p = r.hash_to_group(msg, _DST)
    q = r.hash_to_group(msg[::-1], _DST)
    wide = secrets.token_bytes(64)
    return {
        "r255.hash_to_group": lambda: r.hash_to_group(msg, _DST),
        "r255.from_hash": lambda: rbcl.crypto_core_ristretto255_from_hash(wide),
        "r255.scalar_mult": lambda: r.scalar_mult(s, p),
        "r255.base_mult": lambda: r.base_mult(s),
        "r255.add": lambda: r.add(p, q),
        "r255.scalar_inverse": lambda: r.scalar_inverse(s),
        "r255.hash_to_scalar": lambda: r.hash_to_scalar(msg, _DST),
        "r255.decode_element": lambda: r.decode_element(p),
        "sha512.64B": lambda: r.sha512(wide),
    }


def ensure_group_prims(ctx: BenchContext) -> None:
    """ristretto255 and SHA-512 (``group_ops``), and AEAD."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    for name, op in group_ops().items():
        ctx.prim(name, partial(_m, ctx, op))
    key = AESGCM.generate_key(bit_length=128)
    aead = AESGCM(key)
    nonce = secrets.token_bytes(12)
    for size, label in ((64, "64B"), (1024, "1KB")):
        pt = secrets.token_bytes(size)
        ct = aead.encrypt(nonce, pt, b"ad")
        ctx.prim(f"aead.aesgcm128_enc_{label}", partial(_m, ctx, partial(aead.encrypt, nonce, pt, b"ad")))
        ctx.prim(f"aead.aesgcm128_dec_{label}", partial(_m, ctx, partial(aead.decrypt, nonce, ct, b"ad")))


def ensure_he_prims(ctx: BenchContext) -> None:
    """BFV primitives: TenSEAL's high-level API at N=8192, and SEAL at the ``he`` parameter set.

    The ``he`` floor uses the fastest plaintext×ciphertext product SEAL offers at the
    protocol's own parameters (both operands already in NTT form, a dyadic product),
    so the floor is as low as the library allows; TenSEAL's ``BFVVector`` product
    (which encodes the plaintext on every call) is reported beside it.
    """
    _tenseal_prims(ctx)
    hp = he_params()
    ctx.prim_info["he"] = hp
    if hp.get("coeff_bits"):
        ensure_seal_prims(ctx, hp)
        tag = f"seal.{hp['name']}"
        ctx.prim_info["he_floor"] = f"SEAL NTT-form pt×ct at {hp['name']} (N={hp['poly_degree']})"
        for k in ("ptxct_ntt", "encrypt", "decrypt"):
            ctx.prims[f"he.floor_{k.removesuffix('_ntt')}"] = ctx.prims[f"{tag}.{k}"]
    else:
        ctx.prim_info["he_floor"] = "TenSEAL BFVVector pt×ct at N=8192 (he parameters not found)"
        ctx.prims["he.floor_ptxct"] = ctx.prims["tenseal.n8192.ptxct"]
        ctx.prims["he.floor_encrypt"] = ctx.prims["tenseal.n8192.encrypt"]
        ctx.prims["he.floor_decrypt"] = ctx.prims["tenseal.n8192.decrypt"]


def _tenseal_prims(ctx: BenchContext) -> None:
    import tenseal as ts

    n_poly, t_mod = 8192, 65537

    def make_ctx() -> Any:
        c = ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=n_poly, plain_modulus=t_mod)
        c.generate_relin_keys()
        return c

    ctx.prim(
        "tenseal.n8192.context_keygen",
        lambda: measure(make_ctx, repeats=min(3, ctx.repeats), min_time=0.0, budget_s=10),
    )
    c = make_ctx()
    rng = np.random.default_rng(ctx.seed)
    v = [int(x) for x in rng.integers(0, 2, n_poly)]
    w = [int(x) for x in rng.integers(0, 2, n_poly)]
    enc = ts.bfv_vector(c, v)
    enc2 = ts.bfv_vector(c, w)
    ctx.prim("tenseal.n8192.encrypt", lambda: _m(ctx, partial(ts.bfv_vector, c, v), 5))
    ctx.prim("tenseal.n8192.ptxct", lambda: _m(ctx, partial(enc.mul, w), 5))
    ctx.prim("tenseal.n8192.ctxct_relin", lambda: _m(ctx, partial(enc.mul, enc2), 8))
    ctx.prim("tenseal.n8192.add", lambda: _m(ctx, partial(enc.add, enc2), 3))
    ctx.prim("tenseal.n8192.decrypt", lambda: _m(ctx, enc.decrypt, 5))
    size = float(len(enc.serialize()))
    ctx.prim("tenseal.n8192.ciphertext_bytes", lambda: Stat(size, size, size, 1, "B"))
    # correctness guard: a wrong product would make every floor meaningless
    if [a * b for a, b in zip(v, w, strict=True)] != list((enc * w).decrypt()):
        raise RuntimeError("TenSEAL pt×ct self-check failed")


def ensure_seal_prims(ctx: BenchContext, hp: dict[str, Any]) -> None:
    """SEAL (``tenseal.sealapi``) at the discovered parameter set."""
    import tenseal.sealapi as seal

    tag = f"seal.{hp['name']}"
    if f"{tag}.ptxct_ntt" in ctx.prims:
        return
    n, t = int(hp["poly_degree"]), int(hp["plain_modulus"])
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, list(hp["coeff_bits"])))
    parms.set_plain_modulus(seal.Modulus(t))
    sctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    if not sctx.parameters_set():
        raise RuntimeError(f"SEAL rejects {hp['name']}: {sctx.parameters_error_message()}")
    t0 = time.perf_counter()
    kg = seal.KeyGenerator(sctx)
    pk = seal.PublicKey()
    kg.create_public_key(pk)
    rk = seal.RelinKeys()
    kg.create_relin_keys(rk)
    gk = seal.GaloisKeys()
    kg.create_galois_keys([3], gk)  # Galois element 3 = row rotation by one step
    keygen_s = time.perf_counter() - t0
    ctx.prims[f"{tag}.keygen"] = Stat(keygen_s, keygen_s, keygen_s, 1, "s")
    enc, ev = seal.Encryptor(sctx, pk), seal.Evaluator(sctx)
    be, dec = seal.BatchEncoder(sctx), seal.Decryptor(sctx, kg.secret_key())
    rng = np.random.default_rng([ctx.seed, 3])
    a = rng.integers(0, 2, n).astype(np.uint64).tolist()
    b = rng.integers(0, 2, n).astype(np.uint64).tolist()
    pa, pb = seal.Plaintext(), seal.Plaintext()
    be.encode(a, pa)
    be.encode(b, pb)
    ca = seal.Ciphertext()
    enc.encrypt(pa, ca)
    out = seal.Ciphertext()
    can = seal.Ciphertext()
    ev.transform_to_ntt(ca, can)
    pbn = seal.Plaintext()
    ev.transform_to_ntt(pb, can.parms_id(), pbn)
    ctx.prims[f"{tag}.encode"] = _m(ctx, partial(be.encode, a, seal.Plaintext()), 3)
    ctx.prims[f"{tag}.encrypt"] = _m(ctx, partial(enc.encrypt, pa, seal.Ciphertext()), 5)
    ctx.prims[f"{tag}.ptxct_ntt"] = _m(ctx, partial(ev.multiply_plain, can, pbn, out), 5)
    ctx.prims[f"{tag}.ptxct"] = _m(ctx, partial(ev.multiply_plain, ca, pb, out), 5)

    def ctct() -> None:
        ev.multiply(ca, ca, out)
        ev.relinearize_inplace(out, rk)

    ctx.prims[f"{tag}.ctxct_relin"] = _m(ctx, ctct, 8)
    ctx.prims[f"{tag}.rotate_rows"] = _m(ctx, partial(ev.rotate_rows, ca, 1, gk, out), 5)
    ctx.prims[f"{tag}.decrypt"] = _m(ctx, partial(dec.decrypt, ca, seal.Plaintext()), 5)
    ct_bytes = float(2 * (len(hp["coeff_bits"]) - 1) * n * 8)
    ctx.prims[f"{tag}.ciphertext_bytes"] = Stat(ct_bytes, ct_bytes, ct_bytes, 1, "B")
    # correctness guard for the floor product
    ev.multiply_plain(can, pbn, out)
    ev.transform_from_ntt_inplace(out)
    got = seal.Plaintext()
    dec.decrypt(out, got)
    if be.decode_uint64(got) != [x * y for x, y in zip(a, b, strict=True)]:
        raise RuntimeError("SEAL NTT pt×ct self-check failed")


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
    from blindmatch.protocol import HammingIndex

    from blindmatch.corpus import random_set

    def run() -> Stat:
        rng = np.random.default_rng([ctx.seed, n, 11])
        hs = random_set(n, "pdq", seed=[ctx.seed, n, 11])
        idx = HammingIndex(hs)
        qs = [hs.value(int(i)) for i in rng.integers(0, n, 8)]
        it = iter(range(1 << 62))
        return _m(ctx, lambda: idx.nearest(qs[next(it) % len(qs)]), 10)

    return ctx.prim(f"hamming_index.nearest.{n}", run)


def _hash_rows(ctx: BenchContext) -> None:
    import pdqhash
    from blindmatch.client import hash_image

    from blindmatch.corpus import generate_image

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


def _cycling_lookup(f: FilterAdapter, reader: Any, probes: list[int]) -> Callable[[], bool]:
    """One lookup per call, cycling through members and non-members."""
    state = {"i": 0}

    def look() -> bool:
        state["i"] = (state["i"] + 1) % len(probes)
        return f.contains(reader, probes[state["i"]])

    return look


def _filter_rows(ctx: BenchContext) -> None:
    f = discover_filter()
    if f is None:
        ctx.add(
            make_row(
                "micro",
                "filter",
                "approximate-membership filter build / lookup",
                status="skipped",
                reason="no oprf filter in this build (blindmatch.protocol._gcs is missing)",
                bound_for="oprf: server set-up (build), client 1 lookup per probe",
            )
        )
        return
    sizes = (
        [min(ctx.sizes)] if ctx.quick else sorted({10_000, 100_000} | {s for s in ctx.sizes if s >= 10_000})
    )
    for n in sizes:
        rng = np.random.default_rng([ctx.seed, n, 13])
        values = rng.integers(0, 2**64, size=n, dtype=np.uint64)
        built: dict[str, Any] = {}

        def build(values: Any = values, built: dict[str, Any] = built) -> None:
            built["f"] = f.build(values)

        def load(built: dict[str, Any] = built) -> None:
            built["r"] = f.load(built["f"])

        st_build = measure(build, repeats=min(3, ctx.repeats), min_time=0.0, budget_s=30)
        st_load = measure(load, repeats=min(3, ctx.repeats), min_time=0.0, budget_s=30)
        reader = built["r"]
        members = [int(v) for v in values[: min(n, 64)]]
        if not all(f.contains(reader, v) for v in members):
            raise RuntimeError("filter lost a member")
        probes = members + [int(v) for v in rng.integers(0, 2**64, size=64, dtype=np.uint64)]
        st_look = _m(ctx, _cycling_lookup(f, reader, probes), 3)
        bits_per = 8.0 * f.size_bytes(built["f"]) / n
        ctx.prims[f"filter.build_per_elem.{n}"] = st_build.per(n)
        ctx.prims["filter.lookup"] = st_look
        params = {"n": n, "fpr": f.fpr, "fpr_source": f.fpr_source, "impl": f.impl}
        ctx.add(
            make_row(
                "micro",
                "filter",
                f"{f.name}: build, n={n}",
                {
                    "build_per_element": Metric(st_build.per(n)),
                    "client_load_per_element": Metric(st_load.per(n)),
                    "bits_per_element": Metric(
                        Stat(bits_per, bits_per, bits_per, 1, "bit"),
                        bound=f.log2_inv_fpr,
                        bound_formula="log2(1/fpr)",
                    ),
                },
                params,
                bound_for="oprf: server set-up and one-time download; size bound log2(1/fpr) bits/element",
            )
        )
        ctx.add(
            make_row(
                "micro",
                "filter",
                f"{f.name}: lookup, n={n}",
                {"time": Metric(st_look)},
                params,
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
        "oprf: client 2/element (blind, unblind), server 1/evaluated element, set-up 1/element; "
        "oprf VOPRF proof on top: server 1/element + 2/response, client 2/element + 3/response; "
        "tpsi: client 3/cuckoo location, server 1/location, set-up 1/element",
    ),
    (
        "r255.base_mult",
        "scalar multiplication (fixed base G)",
        "tpsi: client 1/cuckoo location (γ·G); oprf VOPRF: server 1 and client 1 per response (t2)",
    ),
    (
        "r255.add",
        "point addition",
        "tpsi: client 2/cuckoo location; oprf VOPRF: server 1/element (composite M), "
        "client 2/element (composites M and Z, t2, t3)",
    ),
    ("r255.scalar_inverse", "scalar inversion", "oprf: client 1 per 32 blinds (pooled, Montgomery batch)"),
    (
        "r255.hash_to_scalar",
        "hash-to-scalar (RFC 9380 expand + reduce)",
        "oprf VOPRF: 1/element + 1/proof, both sides",
    ),
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

_TENSEAL_ROWS: list[tuple[str, str, str]] = [
    ("context_keygen", "context + secret/public/relin keys", "he: client once (TenSEAL high-level API)"),
    ("encrypt", "encrypt one full vector (BFVVector)", "he: client 1/query"),
    (
        "ptxct",
        "plaintext × ciphertext (BFVVector; plaintext encoded on every call)",
        "reference: what the high-level API costs; the he floor uses SEAL's NTT form below",
    ),
    ("ctxct_relin", "ciphertext × ciphertext + relinearisation", "he: masked zero test (depth ≈ log2 r)"),
    ("add", "ciphertext + ciphertext", "he: distance accumulation"),
    ("decrypt", "decrypt", "he: verdict holder 1/query"),
    ("ciphertext_bytes", "ciphertext size (TenSEAL serialisation)", "he: bytes per query"),
]

_SEAL_ROWS: list[tuple[str, str, str]] = [
    ("keygen", "keys: secret, public, relin, Galois step 1", "he: client once"),
    ("encode", "batch-encode N slots", "he: server per set plaintext (set-up)"),
    ("encrypt", "encrypt", "he: client 1/query"),
    (
        "ptxct_ntt",
        "plaintext × ciphertext, both in NTT form (dyadic)",
        "he: server FLOOR = ⌈n·bits ÷ useful slots⌉ × this, per query",
    ),
    ("ptxct", "plaintext × ciphertext, coefficient form", "reference: the product without NTT pre-transform"),
    ("ctxct_relin", "ciphertext × ciphertext + relinearisation", "he: masked zero test, ⌈(r+1)/2⌉ per query"),
    ("rotate_rows", "row rotation (Galois key, step 1)", "he: baby-step/giant-step rotations"),
    ("decrypt", "decrypt", "he: verdict holder 1/query"),
    ("ciphertext_bytes", "fresh ciphertext, 2 polys × data primes × N × 8 B", "he: bytes per query"),
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
            bound_for="oprf: ceiling of server evaluations/s per core (goal: HTTP ≥ 50% of it); "
            "reachable in OPRF mode (1 scalar mult per element)",
        )
    )
    add = ctx.prims["r255.add"]
    ceiling = Stat(
        1.0 / (2 * sm.median + add.median),
        1.0 / (2 * sm.max + add.max),
        1.0 / (2 * sm.min + add.min),
        min(sm.n, add.n),
        "ops/s",
    )
    frac = sm.median / (2 * sm.median + add.median)
    ctx.add(
        make_row(
            "micro",
            "ristretto255 (libsodium)",
            "VOPRF evaluation ceiling per second, one core: 1 ÷ (2·mult + add)",
            {"rate": Metric(ceiling), "fraction_of_raw": Metric(Stat(frac, frac, frac, 1, "×"))},
            {"keys": ["r255.scalar_mult", "r255.add"]},
            bound_for="oprf VOPRF: per element k·Cᵢ, dᵢ·Cᵢ and one addition into the composite M "
            "(RFC 9497 ComputeCompositesFast; libsodium has no multi-scalar mult); hash-to-scalar "
            "for dᵢ not counted",
        )
    )
    ctx.log("micro: filter")
    try:
        _filter_rows(ctx)
    except Exception as e:  # a broken hook must not sink the suite; it is reported
        ctx.add(make_row("micro", "filter", "filter build / lookup", status="failed", reason=repr(e)))
    ctx.log("micro: BFV (TenSEAL, SEAL)")
    ensure_he_prims(ctx)
    for key, label, used in _TENSEAL_ROWS:
        st = ctx.prims[f"tenseal.n8192.{key}"]
        ctx.add(
            make_row(
                "micro",
                "TenSEAL BFV N=8192, t=65537",
                label,
                {"size" if st.unit == "B" else "time": Metric(st)},
                {"key": f"tenseal.n8192.{key}"},
                bound_for=used,
            )
        )
    hp = ctx.prim_info["he"]
    if hp.get("coeff_bits"):
        grp = f"SEAL BFV {hp['name']} (N={hp['poly_degree']}, t={hp['plain_modulus']}, he's parameters)"
        for key, label, used in _SEAL_ROWS:
            k = f"seal.{hp['name']}.{key}"
            st = ctx.prims[k]
            ctx.add(
                make_row(
                    "micro",
                    grp,
                    label,
                    {"size" if st.unit == "B" else "time": Metric(st)},
                    {"key": k, "param_source": hp["source"]},
                    bound_for=used,
                )
            )
    else:
        ctx.add(
            make_row(
                "micro",
                "SEAL BFV at he's parameters",
                "pt×ct floor",
                status="skipped",
                reason=f"{hp['source']}; the he floor falls back to TenSEAL N=8192 pt×ct",
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
