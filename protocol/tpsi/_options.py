"""tpsi's typed options: the server's (threshold, synthetic rate, table shape) and the client's.

The threshold default is written here and nowhere else: the server settings,
the benchmarks and the simulator read it from ``TpsiServerOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import OptionError
from ..multiprobe import check_probe_bits
from ..options import Options, option, pin_bytes

__all__ = ["TpsiClientOptions", "TpsiServerOptions"]


def _within(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise OptionError(f"tpsi option {name} must be in {lo}..{hi}, not {value}")


def _pin(name: str, value: str | None) -> None:
    pin_bytes("tpsi", name, value)


@dataclass(frozen=True)
class TpsiServerOptions(Options):
    """Server options (``open_server(..., options)``, ``BLINDMATCH_TPSI_*``); safe defaults."""

    protocol = "tpsi"

    threshold: int = option(30, "real matches an account needs before the server may decrypt")
    synthetic_rate: float = option(0.05, "probability that a client's voucher is synthetic")
    dhf_dim: int = option(128, "detection-polynomial dimension (bounds vouchers per reveal round)")
    ad_max: int = option(256, "maximum associated-data bytes per voucher (padded to this)")
    n_hash: int = option(3, "cuckoo hash functions (locations per voucher): 2, 3 or 4")
    eps: float = option(0.3, "cuckoo table slack: slots = (1 + eps) × set size")
    workers: int | None = option(None, "processes for the table build (None = all cores)")
    reveal_mode: Literal["background", "inline", "manual"] = option(
        "background", "when reveals run: a background thread, inline in the upload, or on demand"
    )
    max_batch: int = option(256, "vouchers per upload request")
    max_pages: int | None = option(None, "SQLite page cap of the voucher store (None = unbounded)")
    enrollment: Literal["first-use", "admin"] = option(
        "first-use",
        "account binding: the first signed upload binds an account to its client key, "
        "or only keys an operator enrolled (POST accounts, `blindmatch admin enroll`)",
    )

    def check(self) -> None:
        _within("threshold", self.threshold, 2, 1000)
        _within("synthetic_rate", self.synthetic_rate, 0.0, 1.0)
        _within("dhf_dim", self.dhf_dim, 1, 2000)
        _within("ad_max", self.ad_max, 0, 60000)
        _within("max_batch", self.max_batch, 1, 10000)
        if self.n_hash not in (2, 3, 4):
            raise OptionError("tpsi option n_hash must be 2, 3 or 4")

    @property
    def synthetic_ppm(self) -> int:
        return round(self.synthetic_rate * 1_000_000)


@dataclass(frozen=True)
class TpsiClientOptions(Options):
    """Client options (``new_client(..., options)``)."""

    protocol = "tpsi"

    probe_bits: int = option(0, "multi-probe: also upload vouchers for 2^k flips (PDQ)")
    pinned_signing_key: str | None = option(
        None, "hex Ed25519 key the manifest must be signed with (pin out of band)"
    )
    pinned_set_digest: str | None = option(
        None, "hex SHA-256 root digest of the hash set the manifest must commit to"
    )
    pinned_manifest_digest: str | None = option(
        None, "hex Manifest.digest() of the whole signed manifest (`blindmatch db info`)"
    )
    min_threshold: int = option(
        10, "refuse a server whose signed threshold is lower (policy floor)"
    )
    min_synthetic_rate: float = option(
        0.01, "refuse a server whose signed synthetic-voucher rate is lower (policy floor)"
    )
    max_batch: int = option(256, "vouchers per upload request")

    def check(self) -> None:
        check_probe_bits(self.probe_bits)
        _pin("pinned_signing_key", self.pinned_signing_key)
        _pin("pinned_set_digest", self.pinned_set_digest)
        _pin("pinned_manifest_digest", self.pinned_manifest_digest)
        _within("min_threshold", self.min_threshold, 2, 1000)
        _within("min_synthetic_rate", self.min_synthetic_rate, 0.0, 1.0)
        _within("max_batch", self.max_batch, 1, 10000)
