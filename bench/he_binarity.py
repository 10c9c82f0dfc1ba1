"""What the ``he`` binarity check costs the server, measured as an interleaved A/B.

Why an A/B in one process rather than two benchmark runs: the check adds a fixed
amount of work per query (one squaring, one product, b + n/b − 2 rotations), and
on a shared machine two runs minutes apart differ by more than that. Each repeat
evaluates the same query on the same group with and without the check, in
alternating order, so drift falls on both arms. What is timed is a worker's work
for one query on a set of ≤ N hashes (one group): baby steps, the check when on,
the linear stage, the zero test and finishing — not deserialising keys and the
ciphertext, which the check does not change.

    python -m blindmatch.bench.he_binarity --sizes 1000,10000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from blindmatch.protocol.hashes import get_algo
from blindmatch.protocol.hazmat.bfv import Bfv, get_param_set
from blindmatch.protocol.he._circuit import CircuitSpec, QueryEvaluator, default_baby_step, uniform_mod

from .machine import machine_info

__all__ = ["BinarityCost", "binarity_cost", "main"]


@dataclass(frozen=True)
class BinarityCost:
    """Seconds per query (one group) without and with the check, and the check's own stage."""

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


def binarity_cost(set_size: int, algo: str = "pdq", repeats: int = 5, seed: int = 1) -> BinarityCost:
    """Interleaved A/B of one query's evaluation on ``set_size`` random hashes (≤ N)."""
    a = get_algo(algo)
    bfv = Bfv.create(get_param_set("bfv-n16384-v1"))
    n, t = bfv.params.slots, bfv.params.plain_modulus
    if not 0 < set_size <= n:
        raise ValueError(f"one group holds at most {n} hashes")
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
        for check in (False, True) if r % 2 == 0 else (True, False):
            t0 = time.perf_counter()
            ev = QueryEvaluator(bfv, spec, evk, query, check_binary=check)
            ev.evaluate_group(rows, real, uniform_mod(n, t, 1))
            times[check].append(time.perf_counter() - t0)
            if check:
                stage.append(ev.timings.binarity_s)
    return BinarityCost(set_size, algo, repeats, times[False], times[True], stage)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--algo", default="pdq")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    runs = [binarity_cost(int(float(s)), args.algo, args.repeats, args.seed).as_dict()
            for s in args.sizes.split(",")]
    print(json.dumps({"seed": args.seed, "machine": machine_info(), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
