"""BFV through TenSEAL's SEAL bindings (``tenseal.sealapi``), wrapped once.

Why ``sealapi`` rather than TenSEAL's ``BFVVector``: the ``he`` protocol needs
things the high-level API hides — Galois keys for two chosen rotation steps only
(TenSEAL's ``generate_galois_keys()`` makes all of them: 446 MB at N=16384), the
invariant noise budget, modulus switching, ``encrypt_zero`` for re-randomisation,
NTT-form plaintext products and seeded (half-size) serialisation. ``sealapi`` is
the SEAL library that TenSEAL ships; nothing here re-implements SEAL.

What this layer adds on top of SEAL, and why:

* **Named parameter sets** (``PARAM_SETS``). A client accepts only these, so a
  server cannot talk it into insecure parameters; SEAL itself enforces the
  HomomorphicEncryption.org 128-bit bound on the coefficient modulus.
* **Pre-parse checks of untrusted SEAL bytes** (``check_seal_blob``): magic,
  header size, SEAL version, compression mode and the declared size against a cap
  computed from the parameters — before SEAL sees a byte.
* **Raw ciphertext transport** (``export_raw`` / ``import_raw``): result
  ciphertexts travel as bare ``uint64`` RNS coefficients whose length and range
  are checked with numpy; the receiver rebuilds the SEAL object itself, so a
  server can never feed a client's SEAL parser a compressed stream (no zstd bomb).
* **Noise flooding** (``flood_raw``): after re-randomisation the server adds a
  uniform polynomial E, |E| ≤ 2^β ≤ q/(8t), to c0. If the circuit noise e has
  invariant budget b, the statistical distance between e + E and E is at most
  N·2^(1−b) (Gentry 2009, §21). Callers check b ≥ ``flood_budget_required``.

(De)serialisation goes through files because ``sealapi`` exposes only
path-based ``save``/``load``; they live in a private 0700 temporary directory
(on ``/dev/shm`` when available) and are unlinked at once.
"""

from __future__ import annotations

import math
import os
import secrets
import struct
import tempfile
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import DecodeError, LengthError, ParameterError

__all__ = [
    "FLOOD_STAT_BITS",
    "PARAM_SETS",
    "Bfv",
    "EvalKeys",
    "KeyMaterial",
    "ParamSet",
    "check_seal_blob",
    "galois_elt",
    "get_param_set",
    "new_ciphertext",
    "param_set_by_id",
    "public_encryptor",
]


class _LazySealApi:
    """``tenseal.sealapi``, imported on first use.

    Why: every blindmatch process imports this module (the registry lists ``he``),
    but only one that runs BFV needs SEAL; importing TenSEAL costs about 0.2 s of
    start-up for every CLI call, server and party process otherwise.
    """

    def __getattr__(self, name: str) -> Any:
        import tenseal.sealapi

        return getattr(tenseal.sealapi, name)


seal: Any = _LazySealApi()

FLOOD_STAT_BITS = 40  # statistical security of noise flooding, in bits
_SEAL_MAGIC = 0xA15E
_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compr, reserved, size
_COMPR_NONE, _COMPR_ZLIB, _COMPR_ZSTD = 0, 1, 2


@dataclass(frozen=True)
class ParamSet:
    """One BFV parameter set. ``coeff_bits[-1]`` is SEAL's special (key-switching) prime."""

    name: str
    set_id: int
    poly_degree: int
    coeff_bits: tuple[int, ...]
    plain_modulus: int
    output_primes: int  # data primes kept in result ciphertexts

    @property
    def slots(self) -> int:
        return self.poly_degree

    @property
    def row(self) -> int:
        return self.poly_degree // 2

    @property
    def data_primes(self) -> int:
        return len(self.coeff_bits) - 1

    def ciphertext_bytes(self, primes: int | None = None, polys: int = 2) -> int:
        """Unseeded, uncompressed size of one ciphertext's coefficient data."""
        return polys * (primes or self.data_primes) * self.poly_degree * 8

    def kswitch_key_bytes(self) -> int:
        """One key-switching key (relin key or one Galois step), unseeded."""
        k = self.data_primes
        return k * 2 * (k + 1) * self.poly_degree * 8

    def public_key_bytes(self) -> int:
        return 2 * (self.data_primes + 1) * self.poly_degree * 8


PARAM_SETS: dict[str, ParamSet] = {
    # Default: depth-5 zero test for PDQ r=31 with ~70 bits to spare after flooding needs.
    "bfv-n16384-v1": ParamSet("bfv-n16384-v1", 1, 16384, (60,) * 7, 65537, 2),
    # Small: enough only for the exact test (r=0); fuzzy radii fail the set-up check.
    "bfv-n8192-v1": ParamSet("bfv-n8192-v1", 2, 8192, (54, 54, 55, 55), 65537, 2),
}


def get_param_set(name: str) -> ParamSet:
    try:
        return PARAM_SETS[name]
    except KeyError:
        raise ParameterError(f"unknown BFV parameter set {name!r}; known: {sorted(PARAM_SETS)}") from None


def param_set_by_id(set_id: int) -> ParamSet:
    for p in PARAM_SETS.values():
        if p.set_id == set_id:
            return p
    raise ParameterError(f"unknown BFV parameter set id {set_id}")


def galois_elt(step: int, poly_degree: int) -> int:
    """SEAL's Galois element for a left row rotation by ``step`` (0 < step < N/2)."""
    if not 0 < step < poly_degree // 2:
        raise ParameterError(f"rotation step {step} out of range")
    return pow(3, step, 2 * poly_degree)


# --------------------------------------------------------------------------- files


_TMP_LOCK = threading.Lock()
_TMP_DIR: str | None = None


def _tmpdir() -> str:
    global _TMP_DIR
    with _TMP_LOCK:
        if _TMP_DIR is None or not os.path.isdir(_TMP_DIR):
            # mkdtemp makes a fresh 0700 directory with an unpredictable name: no races
            base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108
            _TMP_DIR = tempfile.mkdtemp(prefix="blindmatch-he-", dir=base)  # mode 0700
        return _TMP_DIR


def _save(obj: Any) -> bytes:
    path = os.path.join(_tmpdir(), uuid.uuid4().hex)
    try:
        obj.save(path)
        return Path(path).read_bytes()
    finally:
        if os.path.exists(path):
            os.unlink(path)


def _load(obj: Any, context: Any, data: bytes) -> None:
    path = os.path.join(_tmpdir(), uuid.uuid4().hex)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        obj.load(context, path)
    finally:
        os.unlink(path)


_VERSION: tuple[int, int] | None = None


def _seal_version() -> tuple[int, int]:
    """SEAL's serialisation version, read from a header SEAL itself wrote."""
    global _VERSION
    if _VERSION is None:
        m = seal.Modulus(65537)
        blob = _save(m)
        _, _, major, minor, _, _, _ = _HEADER.unpack_from(blob, 0)
        _VERSION = (major, minor)
    return _VERSION


def check_seal_blob(blob: bytes, max_size: int, what: str) -> None:
    """Validate a SEAL serialisation header without parsing the body.

    Run on untrusted bytes in the server process before a worker hands them to
    SEAL: wrong magic or version, an unknown compression mode, a declared size
    that differs from the blob or exceeds ``max_size`` are ``DecodeError``s.
    """
    if len(blob) < _HEADER.size:
        raise LengthError(f"{what}: shorter than a SEAL header")
    if len(blob) > max_size:
        raise LengthError(f"{what}: {len(blob)} bytes exceeds the {max_size}-byte cap")
    magic, hsize, major, minor, compr, reserved, size = _HEADER.unpack_from(blob, 0)
    if magic != _SEAL_MAGIC or hsize != _HEADER.size or reserved != 0:
        raise DecodeError(f"{what}: not a SEAL object")
    if (major, minor) != _seal_version():
        raise DecodeError(f"{what}: SEAL serialisation version {major}.{minor} not supported")
    if compr not in (_COMPR_NONE, _COMPR_ZLIB, _COMPR_ZSTD):
        raise DecodeError(f"{what}: unknown compression mode")
    if size != len(blob):
        raise LengthError(f"{what}: declared size {size} != {len(blob)} bytes received")


# --------------------------------------------------------------------------- context


@dataclass
class Bfv:
    """A SEAL context for one parameter set plus the stateless helpers around it."""

    params: ParamSet
    context: Any = field(repr=False)
    encoder: Any = field(repr=False)
    evaluator: Any = field(repr=False)
    primes: tuple[int, ...]
    levels: dict[int, list[int]] = field(repr=False)  # data primes -> parms_id, top to output level

    @classmethod
    def create(cls, params: ParamSet) -> Bfv:
        n = params.poly_degree
        if n & (n - 1) or n < 4096:
            raise ParameterError("poly degree must be a power of two ≥ 4096")
        t = params.plain_modulus
        if (t - 1) % (2 * n):
            raise ParameterError(f"t={t} is not 1 mod 2N: batching impossible")
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(n)
        parms.set_coeff_modulus(seal.CoeffModulus.Create(n, list(params.coeff_bits)))
        parms.set_plain_modulus(seal.Modulus(t))
        ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not ctx.parameters_set():
            raise ParameterError(f"SEAL rejects {params.name}: {ctx.parameters_error_message()}")
        if not ctx.first_context_data().qualifiers().using_batching:
            raise ParameterError(f"{params.name}: batching unavailable")
        primes = tuple(int(m.value()) for m in parms.coeff_modulus())
        data = ctx.first_context_data()
        levels = {len(data.parms().coeff_modulus()): list(data.parms_id())}
        while data.parms().coeff_modulus().__len__() > params.output_primes:
            nxt = data.next_context_data()
            if nxt is None:
                raise ParameterError("modulus chain shorter than the output level")
            data = nxt
            levels[len(data.parms().coeff_modulus())] = list(data.parms_id())
        if len(data.parms().coeff_modulus()) != params.output_primes:
            raise ParameterError("output level not in the modulus chain")
        return cls(
            params=params,
            context=ctx,
            encoder=seal.BatchEncoder(ctx),
            evaluator=seal.Evaluator(ctx),
            primes=primes,
            levels=levels,
        )

    @property
    def output_parms_id(self) -> list[int]:
        """The level result ciphertexts are switched to (``params.output_primes`` data primes)."""
        return self.levels[self.params.output_primes]

    # -- plaintexts -------------------------------------------------------
    def encode(self, values: npt.NDArray[np.int64] | Sequence[int]) -> Any:
        """Batch-encode N integers (reduced mod t here) into a plaintext."""
        arr = np.asarray(values, dtype=np.int64) % self.params.plain_modulus
        if arr.shape != (self.params.slots,):
            raise ValueError("need exactly N slot values")
        pt = seal.Plaintext()
        self.encoder.encode(arr.astype(np.uint64).tolist(), pt)
        return pt

    def encode_ntt(self, values: npt.NDArray[np.int64], parms_id: list[int]) -> Any:
        pt = self.encode(values)
        out = seal.Plaintext()
        self.evaluator.transform_to_ntt(pt, parms_id, out)
        return out

    def constant(self, c: int) -> Any:
        """Plaintext holding ``c`` in every slot (the constant polynomial c)."""
        return seal.Plaintext(format(c % self.params.plain_modulus, "x"))

    def decode(self, pt: Any) -> npt.NDArray[np.int64]:
        return np.asarray(self.encoder.decode_uint64(pt), dtype=np.int64)

    # -- raw ciphertext transport ------------------------------------------
    @property
    def output_primes(self) -> tuple[int, ...]:
        return self.primes[: self.params.output_primes]

    def export_raw(self, ct: Any) -> npt.NDArray[np.uint64]:
        """A ciphertext's RNS coefficients, shape (polys, primes, N)."""
        arr = ct.dyn_array()
        n = arr.size()
        flat = np.fromiter((arr[i] for i in range(n)), dtype=np.uint64, count=n)
        return flat.reshape(ct.size(), ct.coeff_modulus_size(), self.params.poly_degree)

    def import_raw(self, raw: npt.NDArray[np.uint64], parms_id: list[int]) -> Any:
        """Rebuild a 2-poly ciphertext at ``parms_id`` from checked raw coefficients."""
        primes = self._primes_at(parms_id)
        n = self.params.poly_degree
        if raw.dtype != np.uint64 or raw.shape != (2, len(primes), n):
            raise LengthError("raw ciphertext has the wrong shape")
        if np.any(raw >= np.asarray(primes, dtype=np.uint64)[None, :, None]):
            raise DecodeError("raw ciphertext coefficient out of range")
        data = np.ascontiguousarray(raw, dtype="<u8").tobytes()
        major, minor = _seal_version()
        dyn = _HEADER.pack(_SEAL_MAGIC, 16, major, minor, _COMPR_NONE, 0, 16 + 8 + len(data))
        dyn += struct.pack("<Q", raw.size) + data
        body = struct.pack("<4Q", *parms_id) + b"\x00"
        body += struct.pack("<QQQdQ", 2, n, len(primes), 1.0, 1) + dyn
        blob = _HEADER.pack(_SEAL_MAGIC, 16, major, minor, _COMPR_NONE, 0, 16 + len(body)) + body
        ct = seal.Ciphertext()
        try:
            _load(ct, self.context, blob)
        except (RuntimeError, ValueError) as e:
            raise DecodeError(f"ciphertext rejected: {e}") from None
        return ct

    def _primes_at(self, parms_id: list[int]) -> tuple[int, ...]:
        data = self.context.get_context_data(parms_id)
        if data is None:
            raise ParameterError("parms_id not in this context")
        return tuple(int(m.value()) for m in data.parms().coeff_modulus())

    # -- flooding -----------------------------------------------------------
    def flood_beta(self) -> int:
        """log2 of the flooding bound: 2^β ≤ q_out / (8t)."""
        q = math.prod(self.output_primes)
        return (q // (8 * self.params.plain_modulus)).bit_length() - 1

    def flood_budget_required(self) -> int:
        """Noise budget b needed before flooding so that N·2^(1−b) ≤ 2^-FLOOD_STAT_BITS."""
        return FLOOD_STAT_BITS + int(math.log2(self.params.poly_degree)) + 1

    def flood_raw(self, raw: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """Add E ~ U[-2^β, 2^β) (fresh, from ``secrets``) to c0 of an output-level ciphertext."""
        primes = self.output_primes
        n = self.params.poly_degree
        if raw.shape != (2, len(primes), n):
            raise ValueError("flooding applies to output-level ciphertexts")
        beta = self.flood_beta()
        width = (beta + 1 + 7) // 8
        rnd = secrets.token_bytes(width * n)
        mask = (1 << (beta + 1)) - 1
        e = [
            (int.from_bytes(rnd[i * width : (i + 1) * width], "little") & mask) - (1 << beta)
            for i in range(n)
        ]
        out = raw.copy()
        for j, q in enumerate(primes):
            ej = np.fromiter((x % q for x in e), dtype=np.uint64, count=n)
            out[0, j] = (out[0, j] + ej) % np.uint64(q)
        return out

    # -- keys ----------------------------------------------------------------
    def keygen(self, galois_steps: Sequence[int]) -> KeyMaterial:
        """Fresh secret key and the evaluation keys the circuit needs (seeded, serialised)."""
        kg = seal.KeyGenerator(self.context)
        sk = kg.secret_key()
        pk = seal.PublicKey()
        kg.create_public_key(pk)  # sealapi binds no seeded Serializable<PublicKey>
        pk_blob = _save(pk)
        rk_blob = _save(kg.create_relin_keys())
        elts = [galois_elt(s, self.params.poly_degree) for s in galois_steps]
        gk_blob = _save(kg.create_galois_keys(elts)) if elts else b""
        return KeyMaterial(self, sk, pk_blob, rk_blob, gk_blob, tuple(galois_steps))

    def secret_key_from_bytes(self, data: bytes) -> Any:
        sk = seal.SecretKey()
        try:
            _load(sk, self.context, data)
        except (RuntimeError, ValueError) as e:
            raise ParameterError(f"stored secret key does not fit {self.params.name}: {e}") from None
        return sk

    def load_eval_keys(self, pk: bytes, rk: bytes, gk: bytes, galois_steps: Sequence[int]) -> EvalKeys:
        """Deserialise a client's evaluation keys (untrusted: call inside the worker)."""
        p = self.params
        check_seal_blob(pk, p.public_key_bytes() + 4096, "public key")
        check_seal_blob(rk, p.kswitch_key_bytes() + 4096, "relinearisation key")
        steps = list(galois_steps)
        if steps:
            check_seal_blob(gk, len(steps) * (p.kswitch_key_bytes() + 4096), "Galois keys")
        elif gk:
            raise DecodeError("Galois keys sent but none needed")
        public = seal.PublicKey()
        relin = seal.RelinKeys()
        galois = seal.GaloisKeys()
        try:
            _load(public, self.context, pk)
            _load(relin, self.context, rk)
            if steps:
                _load(galois, self.context, gk)
        except (RuntimeError, ValueError) as e:
            raise DecodeError(f"evaluation keys rejected: {e}") from None
        if relin.size() != 1:
            raise DecodeError("relinearisation key must cover exactly s^2")
        want = {galois_elt(s, p.poly_degree) for s in steps}
        if steps and (galois.size() != len(want) or not all(galois.has_key(e) for e in want)):
            raise DecodeError("Galois keys do not cover exactly the circuit's rotation steps")
        return EvalKeys(public, relin, galois)

    def load_ciphertext(self, blob: bytes) -> Any:
        """Deserialise a client's query ciphertext (untrusted: call inside the worker)."""
        check_seal_blob(blob, self.params.ciphertext_bytes() + 4096, "query ciphertext")
        ct = seal.Ciphertext()
        try:
            _load(ct, self.context, blob)
        except (RuntimeError, ValueError) as e:
            raise DecodeError(f"query ciphertext rejected: {e}") from None
        if ct.size() != 2 or list(ct.parms_id()) != list(self.context.first_parms_id()):
            raise DecodeError("query ciphertext must be a fresh 2-poly top-level ciphertext")
        return ct


@dataclass(frozen=True)
class EvalKeys:
    """A client's public evaluation keys, deserialised in a worker."""

    public: Any = field(repr=False)
    relin: Any = field(repr=False)
    galois: Any = field(repr=False)


@dataclass
class KeyMaterial:
    """The client's keys: the secret stays local, the three public blobs are uploaded."""

    bfv: Bfv
    secret: Any = field(repr=False)
    public_blob: bytes = field(repr=False)
    relin_blob: bytes = field(repr=False)
    galois_blob: bytes = field(repr=False)
    galois_steps: tuple[int, ...]
    _enc: Any = field(default=None, repr=False)
    _dec: Any = field(default=None, repr=False)

    @classmethod
    def restore(
        cls, bfv: Bfv, secret: bytes, public: bytes, relin: bytes, galois: bytes, steps: Sequence[int]
    ) -> KeyMaterial:
        """Keys persisted by a previous run (secret from a 0600 key file)."""
        return cls(bfv, bfv.secret_key_from_bytes(secret), public, relin, galois, tuple(steps))

    def secret_bytes(self) -> bytes:
        return _save(self.secret)

    def encryptor(self) -> Any:
        if self._enc is None:
            self._enc = seal.Encryptor(self.bfv.context, self.secret)
        return self._enc

    def decryptor(self) -> Any:
        if self._dec is None:
            self._dec = seal.Decryptor(self.bfv.context, self.secret)
        return self._dec

    def encrypt_symmetric(self, values: npt.NDArray[np.int64]) -> bytes:
        """Secret-key encryption, serialised in SEAL's seeded form (half the size)."""
        return _save(self.encryptor().encrypt_symmetric(self.bfv.encode(values)))

    def decrypt(self, ct: Any) -> tuple[npt.NDArray[np.int64], int]:
        """Slot values and the invariant noise budget left (0 means undecryptable)."""
        dec = self.decryptor()
        budget = int(dec.invariant_noise_budget(ct))
        pt = seal.Plaintext()
        dec.decrypt(ct, pt)
        return self.bfv.decode(pt), budget


def new_ciphertext() -> Any:
    """An empty SEAL ciphertext for an evaluator to write into (SEAL's out-parameter style)."""
    return seal.Ciphertext()


def public_encryptor(bfv: Bfv, public_key: Any) -> Any:
    """An encryptor under a client's public key: the server's masks and noise flooding."""
    return seal.Encryptor(bfv.context, public_key)
