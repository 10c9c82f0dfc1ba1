"""Benchmark hook for ``he``: measured cost against the physical floor, in one run.

The floor (REFERENCES.md, "Physical bounds"): every set bit must meet the query
once, so a server needs at least ⌈set size × bits ÷ useful slots⌉ plaintext×
ciphertext products; with our packing every one of the N slots is useful. We
time one standard SEAL ``multiply_plain`` (fresh top-level ciphertext × random
dense plaintext, coefficient form, NTTs included) in the same process and run,
and also the NTT-domain product our circuit actually uses (plaintext encode + NTT
+ dyadic product), so the report can say how far the server is from each.

The benchmark suite (``bench/``) calls ``he_benchmark``; it prints the seed, the
machine and library versions itself.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tenseal.sealapi as seal

from ._he_circuit import CircuitSpec, QueryEvaluator, default_baby_step, uniform_mod
from .base import LocalTransport, Query
from .hashes import HashSet, get_algo
from .hazmat.bfv import Bfv, get_param_set

__all__ = ["BinarityCost", "FloorReport", "binarity_cost", "he_benchmark", "measure_ptct"]


def measure_ptct(param_set: str = "bfv-n16384-v1", reps: int = 15) -> dict[str, float]:
    """Median seconds of one pt×ct product: standard SEAL and our NTT-domain path."""
    bfv = Bfv.create(get_param_set(param_set))
    n, t = bfv.params.slots, bfv.params.plain_modulus
    keys = bfv.keygen(())
    ct = bfv.load_ciphertext(keys.encrypt_symmetric(uniform_mod(n, 2)))
    ev = bfv.evaluator
    std, ntt = [], []
    ct_ntt = seal.Ciphertext()
    ev.transform_to_ntt(ct, ct_ntt)
    for _ in range(reps):
        vals = uniform_mod(n, t)
        pt = bfv.encode(vals)
        out = seal.Ciphertext()
        t0 = time.perf_counter()
        ev.multiply_plain(ct, pt, out)
        std.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        ptn = bfv.encode_ntt(vals, ct_ntt.parms_id())
        ev.multiply_plain(ct_ntt, ptn, out)
        ntt.append(time.perf_counter() - t1)
    return {"ptct_standard_s": statistics.median(std), "ptct_ntt_with_encode_s": statistics.median(ntt)}


@dataclass
class FloorReport:
    """One measured query and the floor it is compared with."""

    set_size: int
    bits: int
    mode: str
    bucketed: bool
    workers: int
    candidates: int
    groups: int
    server_wall_s: float
    server_cpu_s: float
    client_crypto_s: float
    bytes_up: int
    bytes_down: int
    keys_bytes: int
    products: int
    floor_products: int
    ptct_standard_s: float
    ptct_ntt_with_encode_s: float
    breakdown: dict[str, float]

    @property
    def floor_s(self) -> float:
        return self.floor_products * self.ptct_standard_s

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["floor_s"] = self.floor_s
        d["server_over_floor"] = self.server_wall_s / self.floor_s if self.floor_s else math.inf
        return d


def he_benchmark(
    set_size: int,
    workers: int = 1,
    bucketed: bool = False,
    mode: str = "client-learns",
    seed: int = 1,
    algo: str = "pdq",
    state_dir: Path | None = None,
    queries: int = 1,
) -> list[FloorReport]:
    """Open a server on ``set_size`` random hashes, run member queries, report vs the floor.

    The first query uploads the evaluation keys (counted in ``keys_bytes``); the
    reported queries are the following ones, which name cached keys.
    """
    from .base import get_protocol
    from .he import HEServer

    a = get_algo(algo)
    rng = np.random.default_rng(seed)
    hs = HashSet.from_raw(a, rng.integers(0, 256, size=set_size * a.nbytes, dtype=np.uint8).tobytes())
    tmp = Path(state_dir or tempfile.mkdtemp(prefix="he-bench-"))
    proto = get_protocol("he")
    srv = proto.open_server(hs, tmp / "state", {"workers": workers})
    assert isinstance(srv, HEServer)
    out: list[FloorReport] = []
    try:
        client = proto.new_client(
            a, tmp / "client",
            {"mode": mode, "bucketed": bucketed, "allow_server_learns": mode == "server-learns"},
        )
        tr = LocalTransport(srv)
        warm = client.scan(Query(hs.value(0)), tr)
        keys_bytes = warm.bytes_up
        ptct = measure_ptct(srv.params.name)
        for _ in range(queries):
            j = int(rng.integers(set_size))
            q = hs.value(j).flip(int(p) for p in rng.choice(a.bits, 10, replace=False))
            tr.reset_counters()
            res = client.scan(Query(q), tr)
            st = srv.last_stats
            out.append(
                FloorReport(
                    set_size=set_size, bits=a.bits, mode=mode, bucketed=bucketed, workers=workers,
                    candidates=int(st["candidates"]), groups=int(st["groups"]),
                    server_wall_s=float(st["handler_wall_s"]), server_cpu_s=float(st["cpu_s"]),
                    client_crypto_s=res.crypto_ms / 1000, bytes_up=res.bytes_up,
                    bytes_down=res.bytes_down, keys_bytes=keys_bytes - res.bytes_up,
                    products=int(st["products"]),
                    floor_products=math.ceil(set_size * a.bits / srv.params.slots),
                    ptct_standard_s=ptct["ptct_standard_s"],
                    ptct_ntt_with_encode_s=ptct["ptct_ntt_with_encode_s"],
                    breakdown={k: float(st[k]) for k in (
                        "baby_s", "diag_encode_s", "diag_mult_s", "giant_s", "poly_s", "finish_s",
                        "load_s", "psi_s", "rotations", "ct_mults")},
                )
            )
            assert res.matched in (True, None)
    finally:
        srv.close()
    return out


@dataclass(frozen=True)
class BinarityCost:
    """Server compute for one query (one group of N slots) with and without the binarity check."""

    set_size: int
    algo: str
    repeats: int
    without_s: list[float]
    with_s: list[float]
    binarity_stage_s: list[float]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("without_s", "with_s", "binarity_stage_s"):
            d[k + "_median"] = statistics.median(d[k])
        d["overhead_median"] = d["with_s_median"] / d["without_s_median"] - 1
        return d


def binarity_cost(set_size: int = 10_000, algo: str = "pdq", repeats: int = 5, seed: int = 1) -> BinarityCost:
    """Evaluate the same query on the same group with and without the check, interleaved.

    What a worker does per query for a set of ≤ N hashes (baby steps, the linear
    stage, the zero test, finishing, and the check when on), minus deserialising
    keys and ciphertext; the order of the two arms alternates so drift on a shared
    machine falls on both.
    """
    a = get_algo(algo)
    bfv = Bfv.create(get_param_set("bfv-n16384-v1"))
    n, t = bfv.params.slots, bfv.params.plain_modulus
    spec = CircuitSpec(a.bits, a.default_threshold, default_baby_step(a.bits))
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, a.bits), dtype=np.uint8)
    rows[:set_size] = rng.integers(0, 2, (set_size, a.bits))
    real = np.arange(n) < set_size
    keys = bfv.keygen(spec.galois_steps)
    evk = bfv.load_eval_keys(keys.public_blob, keys.relin_blob, keys.galois_blob, spec.galois_steps)
    query = bfv.load_ciphertext(keys.encrypt_symmetric(np.tile(rows[0].astype(np.int64), n // a.bits)))
    times: dict[bool, list[float]] = {False: [], True: []}
    stage: list[float] = []
    for r in range(repeats):
        for check in ((False, True) if r % 2 == 0 else (True, False)):
            t0 = time.perf_counter()
            ev = QueryEvaluator(bfv, spec, evk, query, check_binary=check)
            ev.evaluate_group(rows, real, uniform_mod(n, t, 1))
            times[check].append(time.perf_counter() - t0)
            if check:
                stage.append(ev.timings.binarity_s)
    return BinarityCost(set_size, algo, repeats, times[False], times[True], stage)
