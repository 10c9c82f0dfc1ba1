"""What one switch of the ``he`` circuit costs or saves the server, measured as an interleaved A/B.

Switches: ``binarity`` (the check against non-binary queries, ``check_binary``) and
``levels`` (the level schedule: products and the binarity term on fewer primes).

Why an A/B in one process rather than two benchmark runs: each switch changes a
fixed amount of work per query, and on a shared machine two runs minutes apart
differ by more than that. Each repeat evaluates the same query on the same group
with the switch off and on, in alternating order, so drift falls on both arms.
What is timed is a worker's work for one query on a set of ≤ N hashes (one
group): baby steps, the binarity check, the linear stage, the zero test and
finishing — not deserialising keys and the ciphertext, which no switch changes.

    python -m blindmatch.bench.he_ab --switch binarity --sizes 1000,10000 --repeats 5
    python -m blindmatch.bench.he_ab --switch levels --algo pdq --repeats 7
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

from blindmatch.machine import machine_info

__all__ = ["SWITCHES", "SwitchCost", "main", "switch_cost"]

SWITCHES = ("binarity", "levels")  # QueryEvaluator's check_binary and levels
_STAGES = ("baby_s", "binarity_s", "diag_encode_s", "diag_mult_s", "giant_s", "poly_s", "finish_s")


@dataclass(frozen=True)
class SwitchCost:
    """Seconds per query (one group) with the switch off and on, and each arm's stage times."""

    switch: str
    set_size: int
    algo: str
    repeats: int
    without_s: list[float]
    with_s: list[float]
    stages_without: list[dict[str, float]]
    stages_with: list[dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("without_s", "with_s"):
            d[k + "_median"] = statistics.median(d[k])
        for k in ("stages_without", "stages_with"):
            d[k + "_median"] = {s: statistics.median(r[s] for r in d[k]) for s in _STAGES}
        d["change_median"] = d["with_s_median"] / d["without_s_median"] - 1
        return d


def switch_cost(
    switch: str, set_size: int, algo: str = "pdq", repeats: int = 5, seed: int = 1
) -> SwitchCost:
    """Interleaved A/B of one query's evaluation on ``set_size`` random hashes (≤ N)."""
    if switch not in SWITCHES:
        raise ValueError(f"unknown switch {switch!r}; one of {', '.join(SWITCHES)}")
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
    stages: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for r in range(repeats):
        for on in (False, True) if r % 2 == 0 else (True, False):
            t0 = time.perf_counter()
            ev = QueryEvaluator(
                bfv, spec, evk, query,
                check_binary=on or switch != "binarity", levels=on or switch != "levels",
            )
            ev.evaluate_group(rows, real, uniform_mod(n, t, 1))
            times[on].append(time.perf_counter() - t0)
            stages[on].append({s: getattr(ev.timings, s) for s in _STAGES})
    return SwitchCost(switch, set_size, algo, repeats, times[False], times[True], stages[False], stages[True])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switch", choices=SWITCHES, default="binarity")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--algo", default="pdq")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    runs = [switch_cost(args.switch, int(float(s)), args.algo, args.repeats, args.seed).as_dict()
            for s in args.sizes.split(",")]
    print(json.dumps({"seed": args.seed, "machine": machine_info(), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
