"""tPSI voucher cryptography, shared by the client, the server and the benchmarks.

The construction follows the Apple PSI System (Bhowmick, Boneh, Myers, Talwar,
Tarbe, 2021), §3-4, in ristretto255:

* Server: secret α, public ``L = α·G``, cuckoo table slot ``P_j = α·H(x_j)``.
* Client, per cuckoo position ``w`` of its hash ``y``: random β, γ;
  ``Q = β·H(y) + γ·G`` and ``S = β·P_w + γ·L``. The pair is
  ``(Q, seal_once(S, rkey))``. The server computes ``α·Q``, which equals ``S``
  exactly when ``P_w = α·H(y)``, i.e. when ``y`` sits in slot ``w``; otherwise
  ``α·Q`` is unrelated to ``S`` and the committing AEAD refuses to open.
* ``rkey`` opens the inner layer: a Shamir share ``(x, f(x))`` of the
  per-account key ``adkey = f(0)``, the detection vector of ``dhf.py``, and
  the associated data (AD) encrypted under ``adkey``.
* Synthetic voucher (Apple §4.3): ``Q = γ·G`` and ``S = γ·L = α·Q`` on one
  randomly placed pair, so the outer layer opens for the server exactly like a
  match, but the share and detection vector are junk and the AD ciphertext is
  under a throw-away key. The other pairs of every voucher that must not open
  are uniformly random points with ciphertexts under random keys.

Per-hash determinism: the x-coordinate, the synthetic coin and the junk values
are PRFs of (account secret, hash). Scanning the same image twice therefore
yields the same share (counted once towards t) and the same real/synthetic
decision, so repeats never let the server tell a real share from a junk one.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import CryptoError, DecodeError, InputError
from ..hazmat import aead, dhf, shamir
from ..hazmat.ristretto import add, base_mult, hash_to_group, random_scalar, scalar_mult
from . import _cuckoo
from ._wire import DOMAIN, Manifest, TableMsg, Voucher

__all__ = [
    "AccountSecrets",
    "Opened",
    "cuckoo_item",
    "h2g",
    "inner_bytes",
    "make_voucher",
    "open_outer",
    "pad_ad",
    "parse_inner",
    "reveal_ad",
    "unpad_ad",
]

LABEL_OUTER = b"tpsi-outer"
LABEL_INNER = b"tpsi-inner"
LABEL_AD = b"tpsi-ad"
_H2G_DST = DOMAIN + b"|H2G"
_U32 = struct.Struct(">I")

IntArray = npt.NDArray[np.int64]


def cuckoo_item(algo_id: int, raw: bytes) -> bytes:
    """The byte string both sides hash into the group and into cuckoo positions."""
    return bytes([algo_id]) + raw


def h2g(item: bytes) -> bytes:
    """H: the RFC 9380 hash_to_ristretto255 of a hash, under the tPSI DST."""
    return hash_to_group(item, _H2G_DST)


def _hkdf(seed: bytes, info: bytes, length: int) -> bytes:
    out = bytearray()
    block = 0
    while len(out) < length:
        n = min(8000, length - len(out))
        out += HKDF(hashes.SHA512(), n, None, info + _U32.pack(block)).derive(seed)
        block += 1
    return bytes(out)


def _prf(key: bytes, msg: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA512())
    h.update(msg)
    return h.finalize()


@dataclass(frozen=True)
class AccountSecrets:
    """Per-account client secrets, all derived from one 32-byte seed kept 0600.

    ``key_coeffs`` is the Shamir polynomial f (degree t-1, ``f(0) = adkey``);
    ``det_coeffs`` are the k detection polynomials (degree t-2) over GF(2^31-1).
    Deriving from (seed, t, k) means a change of t or k starts a new
    polynomial; shares made under different parameters never combine. The
    repr names only t and k: every other field is key material.
    """

    seed: bytes
    t: int
    k: int
    key_coeffs: tuple[int, ...]
    det_coeffs: IntArray
    xkey: bytes
    synkey: bytes
    junkkey: bytes

    @classmethod
    def derive(cls, seed: bytes, t: int, k: int) -> AccountSecrets:
        if len(seed) != 32:
            raise InputError("account seed must be 32 bytes")
        if t < 2 or k < 1:
            raise InputError("threshold must be >= 2 and detection dimension >= 1")
        info = DOMAIN + b"|account|" + struct.pack(">HH", t, k)
        kb = _hkdf(seed, info + b"|f", 64 * t)
        key_coeffs = tuple(
            int.from_bytes(kb[64 * i : 64 * i + 64], "little") % shamir.PRIME for i in range(t)
        )
        db = _hkdf(seed, info + b"|g", 8 * k * (t - 1))
        det = np.frombuffer(db, dtype="<u8").astype(np.uint64) % np.uint64(dhf.Q)
        keys = _hkdf(seed, info + b"|keys", 96)
        return cls(
            seed,
            t,
            k,
            key_coeffs,
            det.astype(np.int64).reshape(k, t - 1),
            keys[:32],
            keys[32:64],
            keys[64:],
        )

    def __repr__(self) -> str:
        return f"AccountSecrets(t={self.t}, k={self.k}, <secret>)"

    __str__ = __repr__

    @property
    def adkey(self) -> bytes:
        return shamir.encode_element(self.key_coeffs[0])

    def x_of(self, item: bytes) -> int:
        """Shamir x-coordinate of a hash: a PRF output in [1, p-1] (never 0)."""
        return 1 + int.from_bytes(_prf(self.xkey, b"x|" + item), "little") % (shamir.PRIME - 1)

    def is_synthetic(self, item: bytes, ppm: int) -> bool:
        """The synthetic coin for this hash: true with probability ppm / 10^6."""
        u = int.from_bytes(_prf(self.synkey, b"coin|" + item)[:8], "little")
        return u * 1_000_000 < ppm * (1 << 64)

    def synthetic_probe(self, item: bytes, ppm: int, n_probes: int) -> int | None:
        """The image's one synthetic coin, shared by all its probes.

        None if the image is real; otherwise the index of the one probe whose
        voucher opens (a PRF of the image, so a re-scan opens the same probe
        with the same junk share, as a re-scanned real match would).
        """
        if not self.is_synthetic(item, ppm):
            return None
        u = int.from_bytes(_prf(self.synkey, b"probe|" + item)[:8], "little")
        return u % n_probes

    def junk(self, item: bytes) -> tuple[int, IntArray]:
        """Deterministic junk share and detection vector for a synthetic voucher."""
        y = int.from_bytes(_prf(self.junkkey, b"y|" + item), "little") % shamir.PRIME
        raw = _hkdf(self.junkkey, DOMAIN + b"|junk-det|" + item, 8 * self.k)
        det = np.frombuffer(raw, dtype="<u8").astype(np.uint64) % np.uint64(dhf.Q)
        return y, det.astype(np.int64)


def pad_ad(ad: bytes, ad_max: int) -> bytes:
    """u16 length || AD || zeros, to a fixed ``2 + ad_max`` bytes (hides AD length)."""
    if len(ad) > ad_max:
        raise InputError(f"associated data is {len(ad)} bytes; this server accepts <= {ad_max}")
    return struct.pack(">H", len(ad)) + ad + bytes(ad_max - len(ad))


def unpad_ad(padded: bytes) -> bytes:
    if len(padded) < 2:
        raise DecodeError("padded AD too short")
    (n,) = struct.unpack(">H", padded[:2])
    if n > len(padded) - 2 or any(padded[2 + n :]):
        raise DecodeError("bad AD padding")
    return padded[2 : 2 + n]


def _aad_outer(epoch: int, vid: bytes, q: bytes) -> bytes:
    return DOMAIN + b"|outer|" + _U32.pack(epoch) + vid + q


def _aad_inner(vid: bytes, account: bytes) -> bytes:
    return DOMAIN + b"|inner|" + vid + account


def _aad_ad(vid: bytes, account: bytes) -> bytes:
    return DOMAIN + b"|ad|" + vid + account


def make_voucher(
    m: Manifest,
    table: TableMsg,
    acct: AccountSecrets,
    account: bytes,
    item: bytes,
    ad: bytes,
    synthetic: bool | None = None,
    vid: bytes | None = None,
    opens: bool = True,
) -> tuple[Voucher, bool]:
    """Build one voucher for ``item``; returns it and whether it is synthetic.

    ``synthetic=None`` draws the per-hash coin at the manifest's rate; tests
    and benchmarks may force either kind. ``opens=False`` makes a synthetic
    voucher with no opening pair: the other probes of a synthetic image,
    which must look like probes that match nothing. Both kinds perform the same group
    operations (per pair: 3 variable-base and 2 fixed-base multiplications)
    and compute both the real and the junk inner values, so that the time a
    voucher takes does not tell which kind it is (best effort in Python).
    """
    if synthetic is None:
        synthetic = acct.is_synthetic(item, m.synthetic_ppm)
    vid = vid or secrets.token_bytes(16)
    padded = pad_ad(ad, m.ad_max)
    rkey = secrets.token_bytes(32)
    hy = h2g(item)
    live = secrets.randbelow(m.n_hash) if opens else -1  # the pair a synthetic voucher opens
    seen: set[int] = set()
    pairs: list[tuple[bytes, bytes]] = []
    for j, w in enumerate(_cuckoo.positions(m.cuckoo_seed, m.n_slots, m.n_hash, item)):
        beta, gamma, delta = random_scalar(), random_scalar(), random_scalar()
        b_h, g_g = scalar_mult(beta, hy), base_mult(gamma)
        b_p, g_l = scalar_mult(beta, table.slot(w)), scalar_mult(gamma, m.big_l)
        noise = base_mult(delta)  # a uniform point for pairs that must not open
        if synthetic:
            opens = j == live
            q, s = (g_g, g_l) if opens else (noise, b"")
        else:
            opens = w not in seen  # a repeated position would give a second opening pair
            q, s = (add(b_h, g_g), add(b_p, g_l)) if opens else (noise, b"")
        seen.add(w)
        key = s if opens else secrets.token_bytes(32)
        body = rkey if opens else secrets.token_bytes(32)
        pairs.append((q, aead.seal_once(key, body, _aad_outer(m.epoch, vid, q), LABEL_OUTER)))
    secrets.SystemRandom().shuffle(pairs)

    x = acct.x_of(item)
    x_bytes = shamir.encode_element(x)
    junk_y, junk_det = acct.junk(item)
    real_y = shamir.share(acct.key_coeffs, x)
    real_det = dhf.evaluate(acct.det_coeffs, dhf.detection_point(x_bytes))
    ad_key = secrets.token_bytes(32) if synthetic else acct.adkey
    adct = aead.seal(
        ad_key, pad_ad(b"", m.ad_max) if synthetic else padded, _aad_ad(vid, account), LABEL_AD
    )
    y, det = (junk_y, junk_det) if synthetic else (real_y, real_det)
    inner = x_bytes + shamir.encode_element(y) + det.astype("<u4").tobytes() + adct
    rct = aead.seal_once(rkey, inner, _aad_inner(vid, account), LABEL_INNER)
    return Voucher(vid, m.epoch, tuple(pairs), rct), synthetic


def open_outer(alpha: bytes, m: Manifest, v: Voucher, account: bytes) -> tuple[int, bytes]:
    """Server side: try every pair with α·Q; returns (status, inner plaintext).

    status 0: no pair opened (not a match, as far as the server can tell);
    1: a pair opened and the inner layer decrypted; 2: a pair opened but the
    inner layer did not (a broken voucher; kept as junk). Every pair is
    always tried so the work done does not depend on which one opens.
    """
    rkey: bytes | None = None
    for q, ct in v.pairs:
        s = scalar_mult(alpha, q)
        try:
            k = aead.open_once(s, ct, _aad_outer(v.epoch, v.vid, q), LABEL_OUTER)
        except CryptoError:
            continue
        if rkey is None and len(k) == 32:
            rkey = k
    if rkey is None:
        return 0, b""
    try:
        return 1, aead.open_once(rkey, v.rct, _aad_inner(v.vid, account), LABEL_INNER)
    except CryptoError:
        return 2, b""


@dataclass(frozen=True)
class Opened:
    """The decoded inner layer of an opened voucher."""

    x: int
    x_bytes: bytes
    y: int
    det: IntArray
    adct: bytes


def inner_bytes(dhf_dim: int, ad_max: int) -> int:
    """Inner plaintext size: x || y || detection vector || AD ciphertext."""
    return 32 + 32 + 4 * dhf_dim + aead.OVERHEAD + 2 + ad_max


def parse_inner(inner: bytes, dhf_dim: int, ad_max: int) -> Opened | None:
    """Decode an inner plaintext; None if it is not well formed (treated as junk)."""
    if len(inner) != inner_bytes(dhf_dim, ad_max):
        return None
    try:
        x = shamir.decode_element(inner[:32])
        y = shamir.decode_element(inner[32:64])
    except (DecodeError, ValueError):
        return None
    if x == 0:
        return None
    det = np.frombuffer(inner[64 : 64 + 4 * dhf_dim], dtype="<u4").astype(np.int64)
    if np.any(det >= dhf.Q):
        return None
    return Opened(x, inner[:32], y, det, inner[64 + 4 * dhf_dim :])


def reveal_ad(adkey: int, o: Opened, vid: bytes, account: bytes) -> bytes | None:
    """Decrypt an opened voucher's AD under a reconstructed key; None if it does not open."""
    try:
        padded = aead.open_(shamir.encode_element(adkey), o.adct, _aad_ad(vid, account), LABEL_AD)
        return unpad_ad(padded)
    except (CryptoError, DecodeError):
        return None
