"""``tpsi``: threshold PSI with associated data, after the Apple PSI System (2021).

Who learns what: the client never learns whether an image matched. The server
learns, per voucher, only whether its outer layer opened — which real matches
*and* synthetic vouchers both do — until an account holds ``t`` real matching
vouchers; then it reconstructs the account key and decrypts the associated
data (AD) of exactly the matching vouchers. The client sees only the blinded
table, never the hashes in it. Design, sizes and limits: docs/protocols/tpsi.md.

Module map: ``_wire`` (messages), ``_core`` (voucher cryptography), ``_table``
and ``_cuckoo`` (server set-up), ``_store`` (SQLite), ``_options`` (typed options),
``_server`` / ``_client`` (the halves); primitives in ``hazmat.aead``,
``hazmat.shamir``, ``hazmat.dhf``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..base import Leakage, Learner, Matching, Protocol, register
from ..costfloor import CostFloor, Floor, Term
from ..errors import InputError
from ..hashes import HashAlgo
from ..options import OptionsIn
from . import _cuckoo
from ._client import TpsiClient
from ._options import TpsiClientOptions, TpsiServerOptions
from ._server import ServerParams, TpsiServer, rotate_signing_key
from ._store import DB_NAME, Reveal, read_reveals
from ._table import table_size_bytes
from ._wire import PROTOCOL_ID, Manifest, TableMsg, UploadBatch, UploadReply, Voucher

__all__ = [
    "DB_NAME",
    "TPSI",
    "Manifest",
    "Reveal",
    "ServerParams",
    "TableMsg",
    "Tpsi",
    "TpsiClient",
    "TpsiClientOptions",
    "TpsiServer",
    "TpsiServerOptions",
    "UploadBatch",
    "UploadReply",
    "Voucher",
    "describe_state",
    "detection_probability",
    "enroll_account",
    "false_report_probability",
    "list_reveals",
    "rotate_signing_key",
    "table_size_bytes",
]


def _binomial_tail(n: int, p: float, t: int) -> float:
    """P[Binomial(n, p) >= t], summed in log space so 1e-300 tails stay accurate."""
    if t <= 0:
        return 1.0
    if t > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    mean = n * p
    if t <= mean:  # the upper tail is the bulk: use the complement of the lower tail
        return 1.0 - _binomial_cdf(n, p, t - 1, lp, lq)
    k = t
    log_term = (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq
    )
    total = 0.0
    term = math.exp(log_term)
    ratio_base = p / (1.0 - p)
    while k <= n:
        total += term
        if term < total * 1e-18 or term == 0.0:
            break
        term *= (n - k) / (k + 1) * ratio_base
        k += 1
    if total == 0.0:  # underflow of exp(): report the log-space leading term
        return math.exp(log_term) if log_term > -745 else 0.0
    return min(1.0, total)


def _binomial_cdf(n: int, p: float, k: int, lp: float, lq: float) -> float:
    total = 0.0
    for i in range(0, k + 1):
        total += math.exp(
            math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        )
    return min(1.0, total)


def false_report_probability(
    per_image_fm_rate: float, images_per_account: int, t: int, synthetic_rate: float = 0.0
) -> float:
    """P[an innocent account is revealed]: P[Binomial(N, p·(1 - s)) >= t].

    ``p`` is the per-image false-match rate of the perceptual hash against the
    set, ``N`` the images an account uploads in the period, ``t`` the
    threshold. Synthetic vouchers never count (their shares are junk and the
    detection step discards them), and an image whose voucher is synthetic
    cannot count either, hence the factor (1 - s). Apple's design target was
    below 1e-12 per account per year. Exact binomial tail, log-space.
    """
    if not 0.0 <= per_image_fm_rate <= 1.0 or not 0.0 <= synthetic_rate <= 1.0:
        raise InputError("rates must be in [0, 1]")
    if images_per_account < 0 or t < 1:
        raise InputError("images_per_account must be >= 0 and t >= 1")
    return _binomial_tail(images_per_account, per_image_fm_rate * (1.0 - synthetic_rate), t)


def detection_probability(matching_images: int, t: int, synthetic_rate: float) -> float:
    """P[an account holding ``matching_images`` true matches is revealed] = P[Bin(M, 1-s) >= t].

    Exact matching only: an image whose hash differs from the set entry by
    even one bit (and is not covered by a probe) does not count at all.
    """
    if not 0.0 <= synthetic_rate <= 1.0:
        raise InputError("synthetic_rate must be in [0, 1]")
    return _binomial_tail(matching_images, 1.0 - synthetic_rate, t)


def describe_state(state_dir: Path | str) -> dict[str, Any]:
    """The served manifest of a tpsi state dir (for ``db info``): digest to publish; no secrets."""
    path = Path(state_dir) / "manifest.bin"
    if not path.is_file():
        return {"manifest_digest": None}
    m = Manifest.from_bytes(path.read_bytes())
    return {
        "manifest_digest": m.digest().hex(),
        "epoch": m.epoch,
        "signing_key": m.public_key.hex(),
        "rotated_from": m.prev_key.hex() or None,
        "threshold": m.threshold,
        "synthetic_rate": m.synthetic_ppm / 1_000_000,
        "set_digest": m.set_digest.hex(),
    }


def enroll_account(state_dir: Path | str, account: str, client_key: bytes) -> None:
    """Operator enrolment of an account's client key, straight into the store (audited)."""
    from ._store import TpsiStore
    from ._wire import account_bytes

    account_bytes(account)
    if len(client_key) != 32:
        raise InputError("client key must be 32 bytes (Ed25519 public key)")
    d = Path(state_dir)
    if not (d / DB_NAME).is_file() and (d / "state" / "tpsi" / DB_NAME).is_file():
        d = d / "state" / "tpsi"
    if not (d / DB_NAME).is_file():
        raise InputError(f"{d}: no tpsi store here (has the server run tpsi?)")
    store = TpsiStore(d / DB_NAME)
    try:
        store.enroll(account, client_key)
    finally:
        store.close()


def list_reveals(state_dir: Path | str, account: str) -> list[Reveal]:
    """Revealed AD for ``account`` from the server's store (read-only; empty below threshold).

    ``state_dir`` is the tpsi state directory (``SET_DIR/state/tpsi``); a set
    directory is accepted too and resolved to it. Each ``Reveal`` has
    ``voucher_id`` (hex), ``epoch``, ``ad`` (bytes), ``revealed_at`` (Unix
    time) and ``as_json()``.
    """
    d = Path(state_dir)
    if not (d / DB_NAME).is_file() and (d / "state" / "tpsi" / DB_NAME).is_file():
        d = d / "state" / "tpsi"
    return read_reveals(d, account)


class Tpsi(Protocol):
    name = "tpsi"
    protocol_id = PROTOCOL_ID
    learner = Learner.SERVER
    matching = Matching.EXACT
    supported_algos = ("pdq", "phash", "dhash", "sha256")
    server_options_type = TpsiServerOptions
    client_options_type = TpsiClientOptions
    server_half_type = TpsiServer
    client_half_type = TpsiClient
    leakage = Leakage(
        client=(
            "nothing about matches: the reply only acknowledges stored voucher ids",
            "the blinded cuckoo table (set size, slot count) and the signed manifest parameters",
        ),
        server=(
            "per voucher: the account id, voucher id, arrival time and whether the outer layer "
            "opened (true for real matches and for synthetic vouchers alike)",
            "per account below t real matches: the number of vouchers and of opened vouchers, "
            "which bounds the real-match count only up to the synthetic noise",
            "at or above t real matches: the account key, hence which opened vouchers were real, "
            "and the AD of exactly those vouchers",
            "equality of shares for a repeated hash within one account (same x-coordinate)",
            "the probe count per image when multi-probe is on (2^k vouchers per image)",
            "per account: the client public key its uploads are signed with (bound on first "
            "use or by enrolment); it links nothing the account id does not already link",
        ),
        network=(
            "with TLS: voucher counts, sizes (fixed per voucher) and timing; AD length is padded",
        ),
        server_sees_hash=False,
        client_sees_set=False,
    )

    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        p = TpsiServerOptions()
        return table_size_bytes(set_size, p.eps, p.n_hash) + _manifest_bytes()

    def cost_floor(
        self, set_size: int, algo: HashAlgo,
        server_options: OptionsIn = None, client_options: OptionsIn = None,
    ) -> CostFloor:
        """Per voucher location: the client's DH tuple and the server's α·Q (docs/protocols/tpsi.md).

        Per probe; ``probe_bits`` multiplies every per-query term by 2^k.
        """
        k = TpsiServerOptions.from_options(server_options).n_hash
        e = 1 << TpsiClientOptions.from_options(client_options).probe_bits
        h2g, sm, base, add = "r255.hash_to_group", "r255.scalar_mult", "r255.base_mult", "r255.add"

        def per(text: str) -> str:
            return f"{e} probes × ({text})" if e > 1 else text

        return CostFloor(
            setup_s=Floor(
                (Term(set_size, h2g), Term(set_size, sm)),
                "n × (hash-to-group + scalar mult) ÷ cores",
                parallel=True,
            ),
            download_bytes=Floor.constant(32.0 * set_size, "n × 32 B points (a table with no empty slots)"),
            client_cpu_s=Floor(
                (Term(e, h2g), Term(e * 3 * k, sm), Term(e * k, base), Term(e * 2 * k, add)),
                per(f"hash-to-group + {k} locations × (3 scalar mults + 1 base mult + 2 adds)"),
            ),
            server_cpu_s=Floor((Term(e * k, sm),), per(f"{k} scalar mults (α·Q per location)")),
            bytes_per_query=Floor.constant(
                e * k * (32.0 + 16.0), per(f"{k} × (32 B point + 16 B AEAD tag)")
            ),
            params={"cuckoo_hashes": k, "probes": e},
        )


_DEFAULTS = TpsiServerOptions()


def _manifest_bytes() -> int:
    m = Manifest(
        epoch=1,
        algo_id=1,
        set_size=1,
        n_slots=_cuckoo.table_slots(1, _DEFAULTS.eps, _DEFAULTS.n_hash),
        n_hash=_DEFAULTS.n_hash,
        cuckoo_seed=bytes(16),
        table_digest=bytes(32),
        big_l=bytes(32),
        threshold=_DEFAULTS.threshold,
        synthetic_ppm=0,
        dhf_dim=1,
        ad_max=0,
        set_digest=bytes(32),
        created=0,
        public_key=bytes(32),
        signature=bytes(64),
    )
    return len(m.to_bytes())


TPSI = register(Tpsi())
