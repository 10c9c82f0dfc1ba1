"""The server's homomorphic circuit for ``he``: packed Hamming distances, then a masked zero test.

Packing (one distance per slot, all N slots useful)
---------------------------------------------------
BFV batching gives N = 16384 slots as two rows of N/2. The client encrypts its
n-bit hash x (n = 256 for PDQ, 64 for pHash/dHash) *replicated*: slot s holds
x[s mod n] (n divides N/2, so every row rotation keeps that alignment).

Slot s of a group holds one set entry y_s. With w = 2·d − r and d = HD(x, y)::

    w_s = (2·|y_s| − r) + Σ_i x_i · 2·(1 − 2·y_s,i)

which is linear in the encrypted bits with plaintext coefficients ±2. Writing
A[s, i] = 2(1 − 2·y_s,i), the Halevi–Shoup diagonal form is
``W = Σ_k diag_k ⊙ rot_k(X) + c`` with ``diag_k[s] = A[s, (s+k) mod n]``: n
plaintext×ciphertext products per group of N entries, i.e. exactly the floor
(set size × bits ÷ N) products. Rotations are split baby-step/giant-step:
``Σ_g rot_{g·b}( Σ_j rot_{-g·b}(diag_{g·b+j}) ⊙ rot_j(X) )`` — b−1 rotations per
query (baby, shared by all groups) and n/b − 1 per group (giant, Horner form),
so the client uploads Galois keys for exactly two steps, 1 and b. Products run in
the NTT domain (each plaintext is NTT-transformed once and multiplied dyadically).

Zero test
---------
d ≤ r ⇔ w ∈ {−r, −r+2, …, r}. Those roots are symmetric, so with v = w²::

    P(w) = ∏_{j ≡ r (mod 2), 0 < j ≤ r} (v − j²) · (w if r is even)

has exactly the r+1 roots we want, and for any other d in [0, n] every factor
is a non-zero integer of absolute value < t, hence non-zero mod the prime t.
Depth is 1 + ⌈log2(#factors)⌉ (5 for r = 31) with ⌈(r+1)/2⌉ ct×ct products (16,
not the 31 of a product tree over (d−k)). Padding slots get w = 2(n+1) − r, never a root.

Finally z = ρ ⊙ P(w) with ρ_s uniform in Z_t^* (plus a uniform additive mask m in
server-learns mode), modulus switch to the output level, re-randomise with a
fresh public-key encryption of zero and flood (see ``hazmat/bfv.py``).

Levels
------
BFV's noise budget does not shrink when a ciphertext is switched to fewer primes,
as long as the smaller modulus still holds it, while every key switch costs about
primes × (primes + 1) NTTs. So the zero test's products drop one 60-bit prime every
second multiplicative level (``product_primes``) and the binarity term runs two
primes below the top (``binarity_primes``); the budget before flooding is unchanged.
"""

from __future__ import annotations

import heapq
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ParameterError
from ..hazmat.bfv import Bfv, EvalKeys, new_ciphertext, public_encryptor

__all__ = [
    "NOISE_MARGIN_BITS",
    "CircuitSpec",
    "NoiseReport",
    "QueryEvaluator",
    "check_noise",
    "default_baby_step",
    "expected_products",
    "uniform_mod",
]

NOISE_MARGIN_BITS = 10  # set-up check: budget before flooding must beat the need by this

Probe = Callable[[str, Any], None]


def default_baby_step(bits: int) -> int:
    """Baby-step size b: b−1 rotations per query, bits/b − 1 per group of N entries."""
    return 32 if bits >= 256 else 8


def uniform_mod(n: int, modulus: int, low: int = 0) -> npt.NDArray[np.int64]:
    """n values uniform in [low, modulus) from ``secrets`` (64-bit reduction; bias < 2^-46)."""
    raw = np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64)
    span = np.uint64(modulus - low)
    return (raw % span).astype(np.int64) + low


@dataclass(frozen=True)
class CircuitSpec:
    """Shape of the circuit: hash length, radius and baby-step size."""

    bits: int
    radius: int
    baby: int

    def __post_init__(self) -> None:
        if self.bits <= 0 or self.bits & (self.bits - 1):
            raise ParameterError("hash length must be a power of two")
        if not 0 <= self.radius < self.bits:
            raise ParameterError(f"radius {self.radius} outside [0, {self.bits})")
        if self.baby <= 0 or self.bits % self.baby:
            raise ParameterError("baby step must divide the hash length")

    @property
    def giant(self) -> int:
        return self.bits // self.baby

    @property
    def galois_steps(self) -> tuple[int, ...]:
        steps: list[int] = []
        if self.baby > 1:
            steps.append(1)
        if self.giant > 1:
            steps.append(self.baby)
        return tuple(steps)

    def roots_squared(self) -> list[int]:
        """j² for the factors (v − j²) of P."""
        return [j * j for j in range(2 - self.radius % 2, self.radius + 1, 2)]

    @property
    def multiplicative_depth(self) -> int:
        leaves = [1] * len(self.roots_squared()) + ([0] if self.radius % 2 == 0 else [])
        heapq.heapify(leaves)
        while len(leaves) > 1:
            a, b = heapq.heappop(leaves), heapq.heappop(leaves)
            heapq.heappush(leaves, max(a, b) + 1)
        return leaves[0]

    @property
    def pad_w(self) -> int:
        """w for empty slots: d = bits + 1, outside every hash's range, never a root."""
        return 2 * (self.bits + 1) - self.radius

    def check_fits(self, bfv: Bfv) -> None:
        if bfv.params.row % self.bits:
            raise ParameterError("hash length must divide N/2")
        t = bfv.params.plain_modulus
        if 2 * (self.bits + 1) + self.radius >= t:
            raise ParameterError("plain modulus too small for this hash length")

    def plain_w(self, bits_rows: npt.NDArray[np.uint8], x: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """Reference: w = 2·HD − r in the clear (tests and the set-up check)."""
        d: npt.NDArray[np.int64] = (bits_rows != x[None, :]).sum(axis=1).astype(np.int64)
        return 2 * d - self.radius


@dataclass
class Timings:
    baby_s: float = 0.0
    diag_encode_s: float = 0.0
    diag_mult_s: float = 0.0
    giant_s: float = 0.0
    poly_s: float = 0.0
    binarity_s: float = 0.0
    finish_s: float = 0.0
    products: int = 0
    rotations: int = 0
    ct_mults: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


@dataclass
class QueryEvaluator:
    """Evaluates one query against groups of N set entries (one worker, trusted inputs)."""

    bfv: Bfv
    spec: CircuitSpec
    keys: EvalKeys
    query: Any
    probe: Probe | None = None
    check_binary: bool = True
    levels: bool = True  # False: every stage on all primes (the A/B reference in bench/he_ab.py)
    timings: Timings = field(default_factory=Timings)
    _baby: list[Any] = field(default_factory=list, repr=False)
    _binarity: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.spec.check_fits(self.bfv)
        t0 = time.perf_counter()
        ev = self.bfv.evaluator
        cur = self.query
        rows: list[Any] = []
        for j in range(self.spec.baby):
            if j:
                nxt = new_ciphertext()
                ev.rotate_rows(cur, 1, self.keys.galois, nxt)
                cur = nxt
                self.timings.rotations += 1
            ntt = new_ciphertext()
            ev.transform_to_ntt(cur, ntt)
            rows.append(ntt)
        self._baby = rows
        self._encryptor = public_encryptor(self.bfv, self.keys.public)
        self.timings.baby_s += time.perf_counter() - t0
        if self.check_binary:
            self._binarity = self.binarity()

    # -- stage 0: B = Σ_i σ_i·x_i(x_i − 1) in every slot, once per query ---------------
    def binarity(self) -> Any:
        """Encrypted B, 0 for a 0/1 query and, otherwise, 0 only with probability 1/t.

        σ is fresh and uniform per query and repeats with period ``bits``, so the sum
        over any ``bits`` consecutive slots of σ ⊙ (X² − X) is B in every slot of a
        replicated query (baby steps of 1, giant steps of b: the circuit's own keys).
        """
        t0 = time.perf_counter()
        spec, bfv, ev = self.spec, self.bfv, self.bfv.evaluator
        x = self._at(self.query, self.binarity_primes)
        y = new_ciphertext()
        ev.square(x, y)
        ev.relinearize_inplace(y, self.keys.relin)
        ev.sub_inplace(y, x)
        sigma = uniform_mod(spec.bits, bfv.params.plain_modulus)
        ev.multiply_plain_inplace(y, bfv.encode(np.tile(sigma, bfv.params.slots // spec.bits)))
        acc = y
        for step, count in ((1, spec.baby), (spec.baby, spec.giant)):
            cur, total = acc, acc
            for _ in range(count - 1):
                nxt, out = new_ciphertext(), new_ciphertext()
                ev.rotate_rows(cur, step, self.keys.galois, nxt)
                ev.add(total, nxt, out)
                cur, total = nxt, out
                self.timings.rotations += 1
            acc = total
        self.timings.ct_mults += 1
        self.timings.binarity_s += time.perf_counter() - t0
        self._probe("binarity", acc)
        return acc

    # -- stage 1: w = 2·HD − r in every slot ---------------------------------
    def distances(self, bits_rows: npt.NDArray[np.uint8], real: npt.NDArray[np.bool_]) -> Any:
        """Encrypted w for N slots; ``bits_rows`` is (N, bits) 0/1, ``real`` marks set entries."""
        spec, n = self.spec, self.bfv.params.slots
        if bits_rows.shape != (n, spec.bits) or real.shape != (n,):
            raise ValueError("group input has the wrong shape")
        a = (2 - 4 * bits_rows.astype(np.int64)) * real[:, None]
        const = np.where(real, 2 * bits_rows.sum(axis=1, dtype=np.int64) - spec.radius, spec.pad_w)
        acc = self.linear(a, const)
        self._probe("distance", acc)
        return acc

    def linear(self, a: npt.NDArray[np.int64], const: npt.NDArray[np.int64]) -> Any:
        """Encrypted ``a @ x + const`` in every slot, for an (N, bits) plaintext matrix ``a``."""
        spec, bfv, ev = self.spec, self.bfv, self.bfv.evaluator
        n, row = bfv.params.slots, bfv.params.row
        if a.shape != (n, spec.bits) or const.shape != (n,):
            raise ValueError("linear form has the wrong shape")
        t0 = time.perf_counter()
        s = np.arange(n)
        cols = (s[None, :] + np.arange(spec.bits)[:, None]) % spec.bits
        diag = a[s[None, :], cols]  # (bits, N): diag[k, s] = A[s, (s+k) mod bits]
        self.timings.diag_encode_s += time.perf_counter() - t0
        parms = self._baby[0].parms_id()
        acc: Any = None
        for g in reversed(range(spec.giant)):
            inner: Any = None
            for j in range(spec.baby):
                t1 = time.perf_counter()
                k = g * spec.baby + j
                d = np.roll(diag[k].reshape(2, row), g * spec.baby, axis=1).reshape(-1)
                pt = bfv.encode_ntt(d, parms)
                t2 = time.perf_counter()
                prod = new_ciphertext()
                ev.multiply_plain(self._baby[j], pt, prod)
                if inner is None:
                    inner = prod
                else:
                    ev.add_inplace(inner, prod)
                t3 = time.perf_counter()
                self.timings.diag_encode_s += t2 - t1
                self.timings.diag_mult_s += t3 - t2
                self.timings.products += 1
            t4 = time.perf_counter()
            part = new_ciphertext()
            ev.transform_from_ntt(inner, part)
            if acc is None:
                acc = part
            else:
                rot = new_ciphertext()
                ev.rotate_rows(acc, spec.baby, self.keys.galois, rot)
                ev.add_inplace(rot, part)
                acc = rot
                self.timings.rotations += 1
            self.timings.giant_s += time.perf_counter() - t4
        ev.add_plain_inplace(acc, bfv.encode(const))
        return acc

    # -- stage 2: P(w), zero iff d ≤ r ----------------------------------------
    def zero_test(self, w: Any) -> Any:
        t0 = time.perf_counter()
        ev, rk = self.bfv.evaluator, self.keys.relin
        leaves: list[tuple[int, int, Any]] = []
        roots = self.spec.roots_squared()
        if roots:
            v = new_ciphertext()
            ev.square(w, v)
            ev.relinearize_inplace(v, rk)
            self.timings.ct_mults += 1
            for j2 in roots:
                f = new_ciphertext()
                ev.sub_plain(v, self.bfv.constant(j2), f)
                leaves.append((1, len(leaves), f))
        if self.spec.radius % 2 == 0:
            leaves.append((0, len(leaves), w))
        heapq.heapify(leaves)
        counter = len(leaves)
        while len(leaves) > 1:
            da, _, a = heapq.heappop(leaves)
            db, _, b = heapq.heappop(leaves)
            primes = self.product_primes(max(da, db) + 1)
            a, b = self._at(a, primes), self._at(b, primes)
            out = new_ciphertext()
            ev.multiply(a, b, out)
            ev.relinearize_inplace(out, rk)
            self.timings.ct_mults += 1
            heapq.heappush(leaves, (max(da, db) + 1, counter, out))
            counter += 1
        self.timings.poly_s += time.perf_counter() - t0
        result = leaves[0][2]
        self._probe("zero_test", result)
        return result

    # -- stage 3: mask, switch down, re-randomise, flood ----------------------------
    def finish(
        self, p: Any, rho: npt.NDArray[np.int64], add_mask: npt.NDArray[np.int64] | None
    ) -> npt.NDArray[np.uint64]:
        """ρ⊙P (+m), at the output level, re-randomised and flooded; returns raw coefficients."""
        t0 = time.perf_counter()
        bfv, ev = self.bfv, self.bfv.evaluator
        if np.any(rho % bfv.params.plain_modulus == 0):
            raise ValueError("rho must be invertible mod t")
        z = new_ciphertext()
        ev.multiply_plain(p, bfv.encode(rho), z)
        if self._binarity is not None:
            # + τ ⊙ B, τ uniform per slot: uniform slots unless the query is 0/1 (then B = 0)
            tau = uniform_mod(bfv.params.slots, bfv.params.plain_modulus)
            noise = new_ciphertext()
            ev.multiply_plain(self._binarity, bfv.encode(tau), noise)
            primes = min(z.coeff_modulus_size(), noise.coeff_modulus_size())
            z, noise = self._at(z, primes), self._at(noise, primes)
            ev.add_inplace(z, noise)
        self._probe("masked", z)
        if add_mask is not None:
            ev.add_plain_inplace(z, bfv.encode(add_mask))
        ev.mod_switch_to_inplace(z, bfv.output_parms_id)
        zero = new_ciphertext()
        self._encryptor.encrypt_zero(bfv.output_parms_id, zero)
        ev.add_inplace(z, zero)
        self._probe("before_flood", z)
        raw = bfv.flood_raw(bfv.export_raw(z))
        self.timings.finish_s += time.perf_counter() - t0
        return raw

    def evaluate_group(
        self,
        bits_rows: npt.NDArray[np.uint8],
        real: npt.NDArray[np.bool_],
        rho: npt.NDArray[np.int64],
        add_mask: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.uint64]:
        return self.finish(self.zero_test(self.distances(bits_rows, real)), rho, add_mask)

    # -- levels: each stage runs on as few primes as its remaining depth needs ----------
    @property
    def binarity_primes(self) -> int:
        """B is added after the zero test at depth 1 + one plaintext product: two primes below the top."""
        top = self.bfv.params.data_primes
        return max(self.bfv.params.output_primes + 1, top - 2) if self.levels else top

    def product_primes(self, depth: int) -> int:
        """Data primes kept for a zero-test product at multiplicative depth ``depth``.

        A ct×ct product costs about 30 bits of noise budget and a 60-bit prime holds two,
        so one prime is dropped every second level; a key switch costs about
        primes × (primes + 1) NTTs, so the lower levels are the cheaper ones. The set-up
        noise check (``check_noise``) runs this same schedule and refuses parameters it
        leaves short.
        """
        top = self.bfv.params.data_primes
        return max(self.bfv.params.output_primes + 1, top - depth // 2) if self.levels else top

    def _at(self, ct: Any, primes: int) -> Any:
        """``ct`` switched down to ``primes`` data primes (a new ciphertext; ``ct`` itself unchanged)."""
        if ct.coeff_modulus_size() <= primes:
            return ct
        out = new_ciphertext()
        self.bfv.evaluator.mod_switch_to(ct, self.bfv.levels[primes], out)
        return out

    def _probe(self, stage: str, ct: Any) -> None:
        if self.probe is not None:
            self.probe(stage, ct)


def expected_products(set_size: int, bits: int, slots: int) -> int:
    """The floor's product count: ⌈set size × bits ÷ useful slots⌉."""
    return math.ceil(set_size * bits / slots)


@dataclass(frozen=True)
class NoiseReport:
    """Invariant noise budget (bits) after each stage of one full run of the circuit."""

    params: str
    bits: int
    radius: int
    depth: int
    budgets: dict[str, int]
    required_before_flood: int
    margin: int

    @property
    def ok(self) -> bool:
        b = self.budgets
        return (
            b["before_flood"] >= self.required_before_flood + self.margin
            and b["after_flood"] > 0
        )


def check_noise(bfv: Bfv, spec: CircuitSpec, seed: int | None = None) -> NoiseReport:
    """Run the whole circuit once under a throwaway key and measure the noise budget.

    Raises ``ParameterError`` when the result is wrong or the budget before flooding
    is short of what flooding needs plus ``NOISE_MARGIN_BITS``: parameters too small
    for the circuit fail loudly here, at set-up, never as silent false negatives.
    """
    spec.check_fits(bfv)
    rng = np.random.default_rng(seed)  # dummy data only; keys and masks use secrets
    n = bfv.params.slots
    keys = bfv.keygen(spec.galois_steps)
    evk = bfv.load_eval_keys(keys.public_blob, keys.relin_blob, keys.galois_blob, spec.galois_steps)
    x = rng.integers(0, 2, spec.bits).astype(np.uint8)
    rows = rng.integers(0, 2, (n, spec.bits)).astype(np.uint8)
    for slot, dist in enumerate({0, max(spec.radius - 1, 0), spec.radius, spec.radius + 1}):
        rows[slot] = x
        rows[slot, rng.choice(spec.bits, dist, replace=False)] ^= 1
    real = np.ones(n, dtype=bool)
    real[-3:] = False
    budgets: dict[str, int] = {}
    dec = keys.decryptor()
    observed: dict[str, Any] = {}

    def probe(stage: str, ct: Any) -> None:
        budgets[stage] = int(dec.invariant_noise_budget(ct))
        observed[stage] = ct

    q = bfv.load_ciphertext(keys.encrypt_symmetric(np.tile(x, n // spec.bits).astype(np.int64)))
    probe("fresh", q)
    ev = QueryEvaluator(bfv, spec, evk, q, probe=probe)
    rho = uniform_mod(n, bfv.params.plain_modulus, 1)
    raw = ev.evaluate_group(rows, real, rho)
    out = bfv.import_raw(raw, bfv.output_parms_id)
    slots, budgets["after_flood"] = keys.decrypt(out)
    report = NoiseReport(
        params=bfv.params.name,
        bits=spec.bits,
        radius=spec.radius,
        depth=spec.multiplicative_depth,
        budgets=budgets,
        required_before_flood=bfv.flood_budget_required(),
        margin=NOISE_MARGIN_BITS,
    )
    if not report.ok:
        raise ParameterError(
            f"{bfv.params.name} is too small for a depth-{report.depth} zero test "
            f"({spec.bits}-bit hashes, r={spec.radius}): noise budget before flooding "
            f"{budgets.get('before_flood')} bits, need {report.required_before_flood} "
            f"+ {NOISE_MARGIN_BITS} margin; after flooding {budgets['after_flood']}"
        )
    w_plain = spec.plain_w(rows, x)
    w_plain[~real] = spec.pad_w
    w_enc, _ = keys.decrypt(observed["distance"])
    t = bfv.params.plain_modulus
    if not np.array_equal(w_enc, w_plain % t):
        raise ParameterError(f"{bfv.params.name}: distance stage decrypts wrong (noise overflow)")
    want_zero = real & (np.abs(w_plain) <= spec.radius)
    if not np.array_equal(slots == 0, want_zero):
        raise ParameterError(f"{bfv.params.name}: zero test decrypts wrong for r={spec.radius}")
    return report
