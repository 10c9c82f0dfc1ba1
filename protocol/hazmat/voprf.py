"""RFC 9497 OPRF, VOPRF and POPRF for the suite ``ristretto255-SHA512``.

Why a hand-written protocol layer over libsodium rather than a dependency: the
``voprf`` Rust package is not installable here and the rest of blindmatch
already uses libsodium's ristretto255 through :mod:`.ristretto`. Only the
protocol logic of RFC 9497 lives here (§2.2 DLEQ proofs, §3 modes, §4.1 suite);
every group operation, hash and scalar reduction is libsodium's or
``cryptography``'s. Correctness is pinned by every ristretto255-SHA512 vector
of RFC 9497 Appendix A.1 (``tests/vectors/rfc9497_ristretto255.json``).

Names follow the RFC: ``blind``, ``blind_evaluate``, ``finalize``,
``evaluate``, ``generate_proof``, ``verify_proof``, ``compute_composites``,
``compute_composites_fast``; errors are ``DeserializeError``,
``InvalidInputError``, ``VerifyError`` and ``InverseError``.

Randomness: public methods draw blinds and proof nonces from libsodium. The
methods prefixed ``_`` take them as arguments; they exist only so the RFC's
fixed ``Blind`` and ``ProofRandomScalar`` values can be replayed in tests.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from ..errors import (
    DeserializeError,
    InvalidInputError,
    InverseError,
    LengthError,
    VerifyError,
)
from . import ristretto as R

__all__ = [
    "ELEMENT_BYTES",
    "OUTPUT_BYTES",
    "PROOF_BYTES",
    "SCALAR_BYTES",
    "SUITE_ID",
    "Mode",
    "OPRFClient",
    "OPRFServer",
    "POPRFClient",
    "POPRFServer",
    "Proof",
    "VOPRFClient",
    "VOPRFServer",
    "compute_composites",
    "compute_composites_fast",
    "context_string",
    "derive_key_pair",
    "generate_proof",
    "verify_proof",
]

SUITE_ID = b"ristretto255-SHA512"
ELEMENT_BYTES = R.ELEMENT_BYTES  # Ne
SCALAR_BYTES = R.SCALAR_BYTES  # Ns
OUTPUT_BYTES = 64  # Nh (SHA-512)
PROOF_BYTES = 2 * SCALAR_BYTES
MAX_INPUT = 0xFFFF - 1  # RFC 9497 §5.1: inputs MUST be shorter than 2^16-1 bytes
_GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")


class Mode(enum.IntEnum):
    """RFC 9497 §3.1 mode identifiers."""

    OPRF = 0x00
    VOPRF = 0x01
    POPRF = 0x02


def context_string(mode: Mode) -> bytes:
    """``"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier`` (RFC 9497 §3.1)."""
    return b"OPRFV1-" + bytes([int(mode)]) + b"-" + SUITE_ID


def _i2osp2(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _lp(data: bytes) -> bytes:
    """``I2OSP(len(data), 2) || data``."""
    return _i2osp2(len(data)) + data


def _check_input(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise TypeError("OPRF input must be bytes")
    if len(data) > MAX_INPUT:
        raise LengthError("OPRF input must be shorter than 65535 bytes")
    return bytes(data)


def _hash_to_group(ctx: bytes, data: bytes) -> bytes:
    element = R.hash_to_group(data, b"HashToGroup-" + ctx)
    if element == R.IDENTITY:
        raise InvalidInputError("input maps to the identity element")
    return element


def _hash_to_scalar(ctx: bytes, data: bytes) -> bytes:
    return R.hash_to_scalar(data, b"HashToScalar-" + ctx)


def _finalize_hash(input: bytes, element: bytes, info: bytes | None = None) -> bytes:
    info_part = b"" if info is None else _lp(info)
    return R.sha512(_lp(input) + info_part + _lp(element) + b"Finalize")


def _mult(scalar: bytes, element: bytes) -> bytes:
    if element == _GENERATOR:
        return R.base_mult(scalar)
    return R.scalar_mult(scalar, element)


def _is_zero(scalar: bytes) -> bool:
    return scalar == bytes(SCALAR_BYTES)


# --------------------------------------------------------------------------- proofs


@dataclass(frozen=True)
class Proof:
    """A DLEQ proof ``(c, s)``; serialised as ``SerializeScalar(c) || SerializeScalar(s)``."""

    c: bytes
    s: bytes

    def to_bytes(self) -> bytes:
        return self.c + self.s

    @classmethod
    def from_bytes(cls, data: bytes) -> Proof:
        """DeserializeScalar twice; non-canonical scalars are a ``DeserializeError``."""
        if len(data) != PROOF_BYTES:
            raise DeserializeError("proof must be 64 bytes")
        return cls(R.decode_scalar(data[:SCALAR_BYTES]), R.decode_scalar(data[SCALAR_BYTES:]))


def _seed(ctx: bytes, b: bytes) -> bytes:
    return R.sha512(_lp(b) + _lp(b"Seed-" + ctx))


def _composite_weights(ctx: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes]) -> list[bytes]:
    if len(c) != len(d) or not c:
        raise LengthError("proof lists must be non-empty and of equal length")
    if len(c) > 0xFFFF:
        raise LengthError("at most 65535 elements per proof")
    seed = _lp(_seed(ctx, b))
    return [
        _hash_to_scalar(ctx, seed + _i2osp2(i) + _lp(ci) + _lp(di) + b"Composite")
        for i, (ci, di) in enumerate(zip(c, d, strict=True))
    ]


def compute_composites_fast(
    ctx: bytes, k: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9497 §2.2.1: the prover's composites, using its knowledge of ``k``."""
    m = None
    for di, ci in zip(_composite_weights(ctx, b, c, d), c, strict=True):
        term = R.scalar_mult(di, ci)
        m = term if m is None else R.add(term, m)
    assert m is not None
    return m, R.scalar_mult(k, m)


def compute_composites(
    ctx: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9497 §2.2.2: the verifier's composites ``(M, Z)``."""
    m: bytes | None = None
    z: bytes | None = None
    for wi, ci, di in zip(_composite_weights(ctx, b, c, d), c, d, strict=True):
        tm, tz = R.scalar_mult(wi, ci), R.scalar_mult(wi, di)
        m = tm if m is None else R.add(tm, m)
        z = tz if z is None else R.add(tz, z)
    assert m is not None and z is not None
    return m, z


def _challenge(ctx: bytes, b: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes) -> bytes:
    return _hash_to_scalar(ctx, _lp(b) + _lp(m) + _lp(z) + _lp(t2) + _lp(t3) + b"Challenge")


def generate_proof(
    ctx: bytes,
    k: bytes,
    a: bytes,
    b: bytes,
    c: Sequence[bytes],
    d: Sequence[bytes],
    _r: bytes | None = None,
) -> Proof:
    """RFC 9497 §2.2.1 GenerateProof: ``k*A == B`` and ``k*C[i] == D[i]`` for all i."""
    m, z = compute_composites_fast(ctx, k, b, c, d)
    r = R.random_scalar() if _r is None else R.decode_scalar(_r)
    t2 = _mult(r, a)
    t3 = R.scalar_mult(r, m)
    ch = _challenge(ctx, b, m, z, t2, t3)
    s = R.scalar_sub(r, R.scalar_mul(ch, k))
    return Proof(ch, s)


def verify_proof(
    ctx: bytes, a: bytes, b: bytes, c: Sequence[bytes], d: Sequence[bytes], proof: Proof
) -> bool:
    """RFC 9497 §2.2.2 VerifyProof. Any degenerate value (identity, zero) means False."""
    try:
        m, z = compute_composites(ctx, b, c, d)
        t2 = _sum_or_identity(_mult_or_identity(proof.s, a), _mult_or_identity(proof.c, b))
        t3 = _sum_or_identity(_mult_or_identity(proof.s, m), _mult_or_identity(proof.c, z))
    except (DeserializeError, RuntimeError, ValueError):
        return False
    expected = _challenge(ctx, b, m, z, t2, t3)
    return R.ct_equal(expected, proof.c)


def _mult_or_identity(scalar: bytes, element: bytes) -> bytes:
    if _is_zero(scalar):
        return R.IDENTITY
    return _mult(scalar, element)


def _sum_or_identity(x: bytes, y: bytes) -> bytes:
    if x == R.IDENTITY:
        return y
    if y == R.IDENTITY:
        return x
    return R.add(x, y)


# --------------------------------------------------------------------------- keys


def derive_key_pair(mode: Mode, seed: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9497 §3.2.1 DeriveKeyPair: ``(skS, pkS)`` from a secret seed and public info."""
    if len(seed) != SCALAR_BYTES:
        raise LengthError("seed must be 32 bytes")
    if len(info) > MAX_INPUT:
        raise LengthError("info too long")
    derive_input = seed + _lp(info)
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(256):
        sk = R.hash_to_scalar(derive_input + bytes([counter]), dst)
        if not _is_zero(sk):
            return sk, R.base_mult(sk)
    raise InvalidInputError("DeriveKeyPairError")  # pragma: no cover  (probability 2^-2000)


def _batch_invert(scalars: Sequence[bytes]) -> list[bytes]:
    """Montgomery's trick: one libsodium inversion and 3(m-1) multiplications."""
    prefix: list[bytes] = []
    acc: bytes | None = None
    for s in scalars:
        acc = s if acc is None else R.scalar_mul(acc, s)
        prefix.append(acc)
    if acc is None:
        return []
    inv = R.scalar_inverse(acc)
    out = [b""] * len(scalars)
    for i in range(len(scalars) - 1, 0, -1):
        out[i] = R.scalar_mul(inv, prefix[i - 1])
        inv = R.scalar_mul(inv, scalars[i])
    out[0] = inv
    return out


# --------------------------------------------------------------------------- servers


class OPRFServer:
    """RFC 9497 §3.3.1 server, mode OPRF. Holds ``skS``; never prints it."""

    mode: Mode = Mode.OPRF

    def __init__(self, sk: bytes) -> None:
        sk = R.decode_scalar(sk)
        if _is_zero(sk):
            raise DeserializeError("private key must be non-zero")
        self._sk = sk
        self.ctx = context_string(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret>)"

    @classmethod
    def generate(cls) -> Self:
        """GenerateKeyPair with libsodium's CSPRNG."""
        return cls(R.random_scalar())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> Self:
        return cls(data)

    @classmethod
    def derive(cls, seed: bytes, info: bytes) -> Self:
        """DeriveKeyPair for this server's mode."""
        return cls(derive_key_pair(cls.mode, seed, info)[0])

    def private_bytes(self) -> bytes:
        """SerializeScalar(skS): only for writing the 0600 key file."""
        return self._sk

    @property
    def public_key(self) -> bytes:
        return R.base_mult(self._sk)

    def blind_evaluate(self, blinded_element: bytes) -> bytes:
        """OPRF-mode BlindEvaluate; the element must already be deserialised."""
        return R.scalar_mult(self._sk, blinded_element)

    def evaluate(self, input: bytes) -> bytes:
        """RFC 9497 Evaluate: the PRF output without blinding (server's own set)."""
        input = _check_input(input)
        element = R.scalar_mult(self._sk, _hash_to_group(self.ctx, input))
        return _finalize_hash(input, element)

    def evaluate_many(self, inputs: Sequence[bytes]) -> list[bytes]:
        """``evaluate`` for a whole set, as one loop (set preparation is this loop).

        libsodium's calls release the GIL (ctypes), so threads running this on
        disjoint chunks use every core.
        """
        return [self.evaluate(x) for x in inputs]

    def blind_evaluate_batch(self, blinded: Sequence[bytes]) -> tuple[list[bytes], Proof | None]:
        """OPRF mode: one scalar multiplication per element and no proof."""
        return [R.scalar_mult(self._sk, b) for b in blinded], None


class VOPRFServer(OPRFServer):
    """RFC 9497 §3.3.2 server: evaluations come with a batched DLEQ proof."""

    mode = Mode.VOPRF

    def __init__(self, sk: bytes) -> None:
        super().__init__(sk)
        self._pk = R.base_mult(self._sk)

    @property
    def public_key(self) -> bytes:
        return self._pk

    def blind_evaluate(self, blinded_element: bytes) -> tuple[bytes, Proof]:  # type: ignore[override]
        evaluated, proof = self.blind_evaluate_batch([blinded_element])
        return evaluated[0], proof

    def blind_evaluate_batch(self, blinded: Sequence[bytes]) -> tuple[list[bytes], Proof]:
        """Evaluate a batch and prove all of it with one constant-size proof."""
        return self._blind_evaluate_batch(blinded, None)

    def _blind_evaluate_batch(
        self, blinded: Sequence[bytes], r: bytes | None
    ) -> tuple[list[bytes], Proof]:
        evaluated = [R.scalar_mult(self._sk, b) for b in blinded]
        proof = generate_proof(self.ctx, self._sk, _GENERATOR, self._pk, blinded, evaluated, r)
        return evaluated, proof


class POPRFServer(OPRFServer):
    """RFC 9497 §3.3.3 server: the PRF key is tweaked by public ``info``."""

    mode = Mode.POPRF

    def _tweak(self, info: bytes) -> bytes:
        if len(info) > MAX_INPUT:
            raise LengthError("info too long")
        m = _hash_to_scalar(self.ctx, b"Info" + _lp(info))
        t = R.scalar_add(self._sk, m)
        if _is_zero(t):
            raise InverseError("tweaked key has no inverse")
        return t

    def blind_evaluate(  # type: ignore[override]
        self, blinded_element: bytes, info: bytes
    ) -> tuple[bytes, Proof]:
        evaluated, proof = self.blind_evaluate_batch([blinded_element], info)
        return evaluated[0], proof

    def blind_evaluate_batch(  # type: ignore[override]
        self, blinded: Sequence[bytes], info: bytes
    ) -> tuple[list[bytes], Proof]:
        return self._blind_evaluate_batch(blinded, info, None)

    def _blind_evaluate_batch(
        self, blinded: Sequence[bytes], info: bytes, r: bytes | None
    ) -> tuple[list[bytes], Proof]:
        t = self._tweak(info)
        t_inv = R.scalar_inverse(t)
        evaluated = [R.scalar_mult(t_inv, b) for b in blinded]
        tweaked_key = R.base_mult(t)
        proof = generate_proof(self.ctx, t, _GENERATOR, tweaked_key, evaluated, blinded, r)
        return evaluated, proof

    def evaluate(self, input: bytes, info: bytes = b"") -> bytes:
        input = _check_input(input)
        t = self._tweak(info)
        element = R.scalar_mult(R.scalar_inverse(t), _hash_to_group(self.ctx, input))
        return _finalize_hash(input, element, info)


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class Blinded:
    """What the client keeps between ``blind`` and ``finalize``: secret ``blind``
    and, when it was drawn from the pool, its precomputed inverse."""

    input: bytes
    blind: bytes
    blinded_element: bytes
    inverse: bytes = b""

    def __repr__(self) -> str:
        return f"Blinded(blinded_element={self.blinded_element.hex()}, <secret>)"


_BLIND_POOL = 32


class OPRFClient:
    """RFC 9497 §3.3.1 client.

    Blinds come from a pool refilled ``_BLIND_POOL`` at a time with one batched
    inversion (Montgomery's trick): a libsodium scalar inversion costs about as
    much as a scalar multiplication, and every blind needs its inverse to unblind.
    Each pooled blind is a fresh libsodium scalar used once.
    """

    mode: Mode = Mode.OPRF

    def __init__(self) -> None:
        self.ctx = context_string(self.mode)
        self._pool: list[tuple[bytes, bytes]] = []
        self._pool_lock = threading.Lock()  # two threads must never take the same blind

    def _take_blinds(self, n: int) -> list[tuple[bytes, bytes]]:
        with self._pool_lock:
            if len(self._pool) < n:
                fresh = [R.random_scalar() for _ in range(max(_BLIND_POOL, n - len(self._pool)))]
                self._pool.extend(zip(fresh, _batch_invert(fresh), strict=True))
            taken, self._pool = self._pool[:n], self._pool[n:]
        return taken

    def blind(self, input: bytes) -> Blinded:
        """Blind: a fresh libsodium scalar times HashToGroup(input)."""
        r, inv = self._take_blinds(1)[0]
        return self._blind(input, r, inv)

    def blind_many(self, inputs: Sequence[bytes]) -> list[Blinded]:
        """``blind`` for several inputs, with their inverses computed in one batch."""
        return [
            self._blind(x, r, inv)
            for x, (r, inv) in zip(inputs, self._take_blinds(len(inputs)), strict=True)
        ]

    def _blind(self, input: bytes, blind: bytes, inverse: bytes = b"") -> Blinded:
        input = _check_input(input)
        if not inverse:  # a caller's blind (test vectors); pooled ones are libsodium's, non-zero
            blind = R.decode_scalar(blind)
            if _is_zero(blind):
                raise InverseError("blind must be non-zero")
        element = _hash_to_group(self.ctx, input)
        return Blinded(input, blind, R.scalar_mult(blind, element), inverse)

    def _unblind_all(self, states: Sequence[Blinded], evaluated: Sequence[bytes]) -> list[bytes]:
        if len(states) != len(evaluated):
            raise LengthError("one evaluated element per blinded element")
        missing = [st.blind for st in states if not st.inverse]
        computed = iter(_batch_invert(missing))
        inverses = [st.inverse or next(computed) for st in states]
        return [
            _finalize_hash(st.input, R.scalar_mult(inv, ev))
            for st, inv, ev in zip(states, inverses, evaluated, strict=True)
        ]

    def finalize(self, state: Blinded, evaluated_element: bytes) -> bytes:
        """Finalize: unblind and hash; the element must already be deserialised."""
        return self._unblind_all([state], [evaluated_element])[0]

    def finalize_batch(self, states: Sequence[Blinded], evaluated: Sequence[bytes]) -> list[bytes]:
        return self._unblind_all(states, evaluated)


class VOPRFClient(OPRFClient):
    """RFC 9497 §3.3.2 client: checks the server's batched DLEQ proof against ``pkS``."""

    mode = Mode.VOPRF

    def __init__(self, public_key: bytes) -> None:
        super().__init__()
        self.public_key = R.decode_element(public_key)

    def finalize(  # type: ignore[override]
        self, state: Blinded, evaluated_element: bytes, proof: Proof
    ) -> bytes:
        return self.finalize_batch([state], [evaluated_element], proof)[0]

    def finalize_batch(  # type: ignore[override]
        self, states: Sequence[Blinded], evaluated: Sequence[bytes], proof: Proof
    ) -> list[bytes]:
        """Verify one proof for the whole batch, then unblind each element."""
        if len(states) != len(evaluated):
            raise LengthError("one evaluated element per blinded element")
        blinded = [st.blinded_element for st in states]
        if not verify_proof(self.ctx, _GENERATOR, self.public_key, blinded, evaluated, proof):
            raise VerifyError("proof verification failed")
        return self._unblind_all(states, evaluated)


class POPRFClient(OPRFClient):
    """RFC 9497 §3.3.3 client with public ``info``."""

    mode = Mode.POPRF

    def __init__(self, public_key: bytes) -> None:
        super().__init__()
        self.public_key = R.decode_element(public_key)

    def blind(self, input: bytes, info: bytes = b"") -> Blinded:
        """POPRF Blind: also rejects ``info`` whose tweaked key is the identity."""
        self.tweaked_key(info)
        return self._blind(input, R.random_scalar())

    def tweaked_key(self, info: bytes) -> bytes:
        if len(info) > MAX_INPUT:
            raise LengthError("info too long")
        m = _hash_to_scalar(self.ctx, b"Info" + _lp(info))
        tweaked = R.add(R.base_mult(m), self.public_key)
        if tweaked == R.IDENTITY:
            raise InvalidInputError("info maps the tweaked key to the identity")
        return tweaked

    def finalize(  # type: ignore[override]
        self, state: Blinded, evaluated_element: bytes, proof: Proof, info: bytes
    ) -> bytes:
        return self.finalize_batch([state], [evaluated_element], proof, info)[0]

    def finalize_batch(  # type: ignore[override]
        self, states: Sequence[Blinded], evaluated: Sequence[bytes], proof: Proof, info: bytes
    ) -> list[bytes]:
        if len(states) != len(evaluated):
            raise LengthError("one evaluated element per blinded element")
        tweaked = self.tweaked_key(info)
        blinded = [st.blinded_element for st in states]
        if not verify_proof(self.ctx, _GENERATOR, tweaked, evaluated, blinded, proof):
            raise VerifyError("proof verification failed")
        inverses = _batch_invert([st.blind for st in states])
        return [
            _finalize_hash(st.input, R.scalar_mult(inv, ev), info)
            for st, inv, ev in zip(states, inverses, evaluated, strict=True)
        ]
