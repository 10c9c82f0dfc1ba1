"""One party's side of the three-party circuit: bit checks, distances, zero test, OR, mask.

The circuit (client hash bits x, set entries s_k, radius r)::

    d_k  = |s_k| + Σ_b x_b (1 − 2 s_kb)          linear in x: local, no messages
                                                  (shared set: one re-shared inner product, one round)
    w_k  = 2 d_k − r                              zero test roots: w ∈ {±j : j ≡ r mod 2, j ≤ r}
    f_k  = Π_j (w_k² − j²)                        1 squaring + ⌈r/2⌉ products (depth 5 for r = 31)
    P    = Π_k f_k                                OR over entries by a product tree
    v_m  = ρ_m · P,  m = 1..K                     K independent uniform masks, opened to the learner

P = 0 exactly when some entry is within r (a field has no zero divisors), so every
v_m is 0 on a match and uniform otherwise; the learner sees nothing else. K = 5
masks make a false match (all masks zero) 2^-65 likely.

Count mode adds, next to the masked OR::

    b_k  = 1 − f_k^(p−1)                          1 iff f_k = 0 (Fermat); 16 multiplications
    c    = Σ_k b_k                                local: a sum of replicated shares is free

and opens (c, v_1..v_K). c is exact below p = 8191 matching entries (it is a sum mod
p); the verdict still comes from the v_m, so it stays exact when c wraps. Each party's
component of c is a sum of outputs of multiplications, each re-randomised by a fresh
zero-sharing, so the three components are uniform given c.

Each multiplication is Araki et al.'s: party i computes a·(c + d) + b·c + α_i on its
pairs (a, b), (c, d), sends the result to party i − 1 and receives party i + 1's:
one element per party per product and one round per tree level. The linear step
uses byte tables: for each 16-bit column of the set, a 65,536-entry table of the
client's share component is built once per query and gathered for every entry.

Before any of that, the inputs are checked against a malicious client: each
replicated component is hashed by both holders and compared, and L = 5 random
combinations Σ γ_b x_b (x_b − 1) (γ from a key the client never sees) are opened
and must be 0; a non-bit survives with probability p^-L = 2^-65.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..errors import MaliciousSharesError, PartyProtocolError
from ..hamming import popcount64
from ._field import P, Vec, canon, from_wire, prg, reduce, to_wire
from ._sharedset import SharedColumns
from ._sharing import PairKeys

__all__ = [
    "CHECK_REPS",
    "FERMAT_MULS",
    "MASKS",
    "Net",
    "PartyCircuit",
    "SetColumns",
    "ShardRunner",
    "read_outputs",
    "roots",
    "run_party",
]

CHECK_REPS = 5
MASKS = 5
BLOCK = 1 << 15
LINEAR_BLOCK = 1 << 17
_P32 = np.uint32(P)

Net = tuple[Callable[[int, bytes], None], Callable[[int], bytes]]


def _ones_chain(m: int) -> list[tuple[int, int]]:
    """Steps (a, b) from f^(2^1 − 1) to f^(2^m − 1): f^(2^(a+b) − 1) = (f^(2^a − 1))^(2^b) · f^(2^b − 1)."""
    steps, have, cur = [], [1], 1
    while cur < m:
        b = max(x for x in have if cur + x <= m)
        steps.append((cur, b))
        cur += b
        have.append(cur)
    return steps


_P_BITS = P.bit_length()  # p = 2^13 − 1, so p − 1 = 2 · (2^12 − 1)
_FERMAT_CHAIN = _ones_chain(_P_BITS - 1)
FERMAT_MULS = sum(b + 1 for _, b in _FERMAT_CHAIN) + 1  # 16 for p = 8191


def roots(radius: int) -> list[int]:
    """The j in the factors w² − j²: every |w| with w = 2d − r for d = 0..r."""
    return list(range(radius % 2, radius + 1, 2))


@dataclass(frozen=True)
class SetColumns:
    """The plaintext set as 16-bit columns plus the per-entry constant 2|s_k| − r mod p."""

    cols: npt.NDArray[np.uint16]  # (bits/16, n)
    const: Vec  # (n,)
    radius: int

    @classmethod
    def build(cls, words: npt.NDArray[np.uint64], radius: int) -> SetColumns:
        be = words.astype(">u8").view(np.uint8).reshape(words.shape[0], -1)
        cols = np.ascontiguousarray(be.view(">u2").astype(np.uint16).T)
        weight = popcount64(words).sum(axis=1, dtype=np.int64)
        const = ((2 * weight - radius) % P).astype(np.uint32)
        return cls(cols, const, radius)

    def __len__(self) -> int:
        return int(self.const.size)

    def slice(self, start: int, stop: int) -> SetColumns:
        return SetColumns(self.cols[:, start:stop], self.const[start:stop], self.radius)


_BYTE_SIGNS = 1 - 2 * np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.int64)


def column_tables(component: Vec) -> Vec:
    """(bits/16, 65536) tables T[c][v] = 2·Σ_t x_{16c+t}·(1 − 2·bit_t(v)) mod p.

    Built once per query and party, so the per-query floor at small sets: two canonical byte
    tables sum below 2p < 2^16, and min(s, s − p) in uint16 (the subtraction wraps when s < p)
    is s mod p; about 18× less CPU than reducing the sums in int64.
    """
    x8 = component.astype(np.int64).reshape(-1, 8)
    t8 = ((2 * (x8 @ _BYTE_SIGNS.T)) % P).astype(np.uint16)  # (bits/8, 256), canonical
    t16 = np.add(t8[0::2, :, None], t8[1::2, None, :])
    np.minimum(t16, t16 - np.uint16(P), out=t16)
    return t16.reshape(x8.shape[0] // 2, 65536).astype(np.uint32)


def linear_component(tables: Vec, cols: npt.NDArray[np.uint16], const: Vec | None) -> Vec:
    """One share component of w_k = 2 d_k − r for every entry (canonical), in cache-sized blocks."""
    n = cols.shape[1]
    out = np.empty(n, dtype=np.uint32)
    tmp = np.empty(min(n, LINEAR_BLOCK), dtype=np.uint32)
    for s in range(0, n, LINEAR_BLOCK):
        e = s + LINEAR_BLOCK
        acc, t = out[s:e], tmp[: min(LINEAR_BLOCK, n - s)]
        np.take(tables[0], cols[0, s:e], out=acc, mode="clip")
        for c in range(1, cols.shape[0]):
            np.take(tables[c], cols[c, s:e], out=t, mode="clip")
            acc += t
        if const is not None:
            acc += const[s:e]
        canon(reduce(acc, t))
    return out


def local_product(a: Vec, b: Vec, c: Vec, d: Vec, zero: Vec) -> Vec:
    """Party i's term a·(c + d) + b·c + α_i of a replicated product (canonical), blockwise."""
    n = a.size
    z = np.empty(n, dtype=np.uint32)
    tmp = np.empty(min(n, BLOCK), dtype=np.uint32)
    for s in range(0, n, BLOCK):
        e = s + BLOCK
        zs, t = z[s:e], tmp[: zs_len(n, s)]
        np.add(c[s:e], d[s:e], out=zs)
        zs *= a[s:e]
        np.multiply(b[s:e], c[s:e], out=t)
        zs += t
        zs += zero[s:e]
        canon(reduce(zs, t))
    return z


def zs_len(n: int, s: int) -> int:
    return min(BLOCK, n - s)


class PartyCircuit:
    """Party ``index`` of one query: holds its pair of the client's bits and runs the rounds."""

    def __init__(self, index: int, keys: PairKeys, net: Net, run_id: bytes) -> None:
        self.i = index
        self.keys = keys
        self._send, self._recv = net
        self.run_id = run_id
        self._label = 1 << 32
        self.sent = 0

    @property
    def prv(self) -> int:
        return (self.i - 1) % 3

    @property
    def nxt(self) -> int:
        return (self.i + 1) % 3

    def _next_label(self) -> int:
        self._label += 1
        return self._label

    def send(self, peer: int, data: bytes) -> None:
        self.sent += len(data)
        self._send(peer, data)

    # -- multiplication -------------------------------------------------------------
    def mul(self, a: Vec, b: Vec, c: Vec, d: Vec) -> tuple[Vec, Vec]:
        """Replicated product of (a, b)·(c, d), elementwise; one round."""
        z = local_product(a, b, c, d, self.keys.zero(self._next_label(), a.size))
        self.send(self.prv, to_wire(z))
        return z, self._recv_elems(self.nxt, z.size)

    def square(self, a: Vec, b: Vec) -> tuple[Vec, Vec]:
        z = b + b
        z += a
        z *= a
        z += self.keys.zero(self._next_label(), z.size)
        canon(reduce(z))
        self.send(self.prv, to_wire(z))
        return z, self._recv_elems(self.nxt, z.size)

    def _recv_elems(self, peer: int, n: int) -> Vec:
        data = self._recv(peer)
        try:
            return from_wire(data, n)
        except ValueError as e:
            raise PartyProtocolError(f"party {peer}: {e}") from None

    def const_pair(self, value: int, n: int) -> tuple[Vec, Vec]:
        """A public constant as a replicated sharing (component 0 carries it)."""
        a = np.full(n, value if self.i == 0 else 0, dtype=np.uint32)
        b = np.full(n, value if self.i == 2 else 0, dtype=np.uint32)
        return a, b

    def product(self, a: Vec, b: Vec) -> tuple[Vec, Vec]:
        """Π over axis 0 of stacked pairs (m, n) → (n,), by a balanced tree."""
        while a.shape[0] > 1:
            h = a.shape[0] // 2
            za, zb = self.mul(a[:h].ravel(), b[:h].ravel(), a[h : 2 * h].ravel(), b[h : 2 * h].ravel())
            za, zb = za.reshape(h, -1), zb.reshape(h, -1)
            if a.shape[0] % 2:
                za, zb = np.concatenate([za, a[-1:]]), np.concatenate([zb, b[-1:]])
            a, b = za, zb
        return a[0], b[0]

    def or_tree(self, a: Vec, b: Vec) -> tuple[Vec, Vec]:
        """Π of all elements of a vector (zero iff any is zero) → 1-element pair."""
        while a.size > 1:
            if a.size % 2:
                one_a, one_b = self.const_pair(1, 1)
                a, b = np.concatenate([a, one_a]), np.concatenate([b, one_b])
            h = a.size // 2
            a, b = self.mul(a[:h], b[:h], a[h:], b[h:])
        return a, b

    # -- stages ---------------------------------------------------------------------
    def check_inputs(self, xa: Vec, xb: Vec, check_key: bytes) -> None:
        """Refuse inconsistent replicated copies or non-bit inputs (same verdict at every party)."""
        ha, hb = self._digest(self.i, xa), self._digest(self.nxt, xb)
        sq = xa.astype(np.int64) * (xa + 2 * xb.astype(np.int64)) - xa
        t = np.empty(CHECK_REPS, dtype=np.int64)
        for rep in range(CHECK_REPS):
            gamma = prg(check_key, rep, xa.size).astype(np.int64)
            t[rep] = int((gamma * (sq % P)).sum() % P)
        t = (t + self.keys.zero(self._next_label(), CHECK_REPS)) % P
        msg = ha + hb + t.astype("<u2").tobytes()
        self.send(self.prv, msg)
        self.send(self.nxt, msg)
        got = {peer: self._recv(peer) for peer in (self.nxt, self.prv)}
        size = 64 + 2 * CHECK_REPS
        if any(len(m) != size for m in got.values()):
            raise PartyProtocolError("malformed check message")
        from_prv, from_nxt = got[self.prv], got[self.nxt]
        same = (
            hmac.compare_digest(from_prv[32:64], ha)  # prv holds my a as its b
            & hmac.compare_digest(from_nxt[:32], hb)  # nxt holds my b as its a
            & hmac.compare_digest(from_prv[:32], from_nxt[32:64])  # the third component
        )
        total = t.copy()
        for m in (from_prv, from_nxt):
            total += np.frombuffer(m[64:], dtype="<u2")
        if not same or bool(np.any(total % P)):
            raise MaliciousSharesError("the parties refused the shares (not bits, or copies differ)")

    def _digest(self, component: int, v: Vec) -> bytes:
        h = hashlib.sha256(b"blindmatch-mpc-v1/share-digest" + self.run_id + bytes([component]))
        h.update(to_wire(v))
        return h.digest()

    def clear_distances(self, cols: SetColumns, tab_a: Vec, tab_b: Vec) -> tuple[Vec, Vec]:
        """Shares of w_k = 2 d_k − r against a set the parties hold in the clear (local)."""
        wa = linear_component(tab_a, cols.cols, cols.const if self.i == 0 else None)
        wb = linear_component(tab_b, cols.cols, cols.const if self.i == 2 else None)
        return wa, wb

    def shared_distances(self, cols: SharedColumns, xa: Vec, xb: Vec) -> tuple[Vec, Vec]:
        """Shares of w_k = 2Σx + 2|s_k| − 4 Σ_b x_b s_kb − r against a shared set: one round.

        The cross term is Araki et al.'s inner product: the local part of all ``bits``
        products, summed, re-randomised by one zero-sharing and re-shared as one element.
        """
        t = cols.cross_terms(xa, xb)
        t += self.keys.zero(self._next_label(), t.size)
        canon(reduce(t))
        self.send(self.prv, to_wire(t))
        za, zb = t.astype(np.int64), self._recv_elems(self.nxt, t.size).astype(np.int64)
        xa_sum, xb_sum = int(xa.sum(dtype=np.int64)), int(xb.sum(dtype=np.int64))
        wa = 2 * xa_sum + 2 * cols.weight_a.astype(np.int64) - 4 * za
        wb = 2 * xb_sum + 2 * cols.weight_b.astype(np.int64) - 4 * zb
        if self.i == 0:  # the public constant −r sits in component 0
            wa -= cols.radius
        if self.i == 2:
            wb -= cols.radius
        return (wa % P).astype(np.uint32), (wb % P).astype(np.uint32)

    def zero_test(self, wa: Vec, wb: Vec, radius: int) -> tuple[Vec, Vec]:
        """f_k = Π_j (w_k² − j²) from shares of w_k (zero iff distance ≤ r)."""
        ua, ub = self.square(wa, wb)
        js = roots(radius)
        fa = np.repeat(ua[None, :], len(js), axis=0)
        fb = np.repeat(ub[None, :], len(js), axis=0)
        shift = np.array([(P - j * j) % P for j in js], dtype=np.uint32)[:, None]
        if self.i == 0:
            fa += shift
            canon(fa)
        if self.i == 2:
            fb += shift
            canon(fb)
        return self.product(fa, fb)

    def fermat(self, a: Vec, b: Vec) -> tuple[Vec, Vec]:
        """f^(p−1) elementwise: 1 where f ≠ 0, 0 where f = 0 (FERMAT_MULS rounds)."""
        powers = {1: (a, b)}  # m → shares of f^(2^m − 1)
        cur = 1
        for _, step in _FERMAT_CHAIN:
            xa, xb = powers[cur]
            for _ in range(step):
                xa, xb = self.square(xa, xb)
            cur += step
            powers[cur] = self.mul(xa, xb, *powers[step])
        return self.square(*powers[cur])  # p − 1 = 2 · (2^(bits−1) − 1)

    def count_zeros(self, a: Vec, b: Vec) -> tuple[Vec, Vec]:
        """Σ_k (1 − f_k^(p−1)): the number of zero elements, as a 1-element replicated pair."""
        ga, gb = self.fermat(a, b)
        ca, cb = self.const_pair(a.size % P, 1)
        sa = (int(ca[0]) - int(ga.sum(dtype=np.uint64))) % P
        sb = (int(cb[0]) - int(gb.sum(dtype=np.uint64))) % P
        return np.array([sa], dtype=np.uint32), np.array([sb], dtype=np.uint32)

    def combine(self, parts: list[tuple[Vec, Vec]], count: bool) -> tuple[Vec, Vec]:
        """Join per-chunk (or per-shard) results: OR products multiply, counts add (local).

        A part is the OR product P (1 element) or, in count mode, (c, P) (2 elements).
        """
        if not parts:
            parts = [self.const_pair(1, 1)]
            if count:
                parts = [(np.array([0, 1], dtype=np.uint32), np.array([0, 1], dtype=np.uint32))]
        k = 1 if count else 0  # where P sits in a part
        pa, pb = self.or_tree(np.array([a[k] for a, _ in parts]), np.array([b[k] for _, b in parts]))
        if not count:
            return pa, pb
        sa = sum(int(a[0]) for a, _ in parts) % P
        sb = sum(int(b[0]) for _, b in parts) % P
        return np.array([sa, pa[0]], dtype=np.uint32), np.array([sb, pb[0]], dtype=np.uint32)

    def evaluate(
        self, cols: SetColumns | SharedColumns, xa: Vec, xb: Vec, chunk: int, count: bool = False
    ) -> tuple[Vec, Vec]:
        """Shared P = Π_k f_k over the whole set; with ``count``, (c, P), c the entries within r.

        Works in chunks of ``chunk`` entries, so memory stays bounded at any set size.
        """
        if isinstance(cols, SetColumns):
            tab_a, tab_b = column_tables(xa), column_tables(xb)
        parts = []
        for start in range(0, len(cols), chunk):
            part = cols.slice(start, start + chunk)
            if isinstance(part, SetColumns):
                wa, wb = self.clear_distances(part, tab_a, tab_b)
            else:
                wa, wb = self.shared_distances(part, xa, xb)
            fa, fb = self.zero_test(wa, wb, cols.radius)
            pa, pb = self.or_tree(fa, fb)
            if count:
                ca, cb = self.count_zeros(fa, fb)
                pa, pb = np.concatenate([ca, pa]), np.concatenate([cb, pb])
            parts.append((pa, pb))
        return self.combine(parts, count)

    def mask(self, pa: Vec, pb: Vec) -> tuple[Vec, Vec]:
        """v_m = ρ_m · P for MASKS fresh uniform ρ_m no party knows."""
        ra, rb = self.keys.random(self._next_label(), MASKS)
        return self.mul(ra, rb, np.repeat(pa, MASKS), np.repeat(pb, MASKS))

    def open_to(self, learner: int, va: Vec, vb: Vec) -> Vec | None:
        """Open v to party ``learner``: the party that lacks component learner+2 gets it."""
        missing_holder = (learner + 2) % 3  # holds component learner+2 as its a
        if self.i == missing_holder and self.i != learner:
            self.send(learner, to_wire(va))
            return None
        if self.i == learner:
            vc = self._recv_elems(missing_holder, va.size)
            return (va + vb + vc) % _P32
        return None


class ShardRunner(Protocol):
    """The other shards of this party's set (``_workers.ShardPool``)."""

    last_party_bytes: int

    def start(self, run_id: bytes, xa: Vec, xb: Vec, count: bool) -> None: ...

    def collect(self, run_id: bytes) -> list[tuple[Vec, Vec]]: ...


def run_party(
    circuit: PartyCircuit,
    cols: SetColumns | SharedColumns,
    xa: Vec,
    xb: Vec,
    check_key: bytes,
    open_to_party0: bool,
    chunk: int = 1 << 19,
    shards: ShardRunner | None = None,
    count: bool = False,
) -> Vec | None:
    """The whole query at one party: checks, circuit, masks (and the count), opening.

    With ``shards``, the other shards run on the checked inputs while this process
    evaluates ``cols``; their results join this one's (products in the OR tree,
    counts summed) before the masks. Returns this party's component of the outputs
    (client-learns: the client adds the three) or, server-learns, the opened values
    at party 0 and None elsewhere.
    """
    circuit.check_inputs(xa, xb, check_key)
    if shards is not None:
        shards.start(circuit.run_id, xa, xb, count)
    parts = [circuit.evaluate(cols, xa, xb, chunk, count)]
    if shards is not None:
        parts += shards.collect(circuit.run_id)
    pa, pb = circuit.combine(parts, count) if len(parts) > 1 else parts[0]
    if count:  # (c, ρ_1·P, …, ρ_K·P)
        ma, mb = circuit.mask(pa[1:], pb[1:])
        va, vb = np.concatenate([pa[:1], ma]), np.concatenate([pb[:1], mb])
    else:
        va, vb = circuit.mask(pa, pb)
    if open_to_party0:
        return circuit.open_to(0, va, vb)
    return va


def read_outputs(opened: Vec, count: bool) -> tuple[bool, int | None]:
    """(matched, count) from the opened outputs: (ρ_1·P, …) or, in count mode, (c, ρ_1·P, …).

    The verdict always comes from the masked OR, so it stays exact when c (a sum mod p)
    wraps at p matching entries.
    """
    if count:
        return bool(np.all(opened[1:] == 0)), int(opened[0])
    return bool(np.all(opened == 0)), None
