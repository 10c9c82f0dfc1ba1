"""oprf's typed options: the server's epoch parameters and the client's trust and probing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import OptionError
from ..multiprobe import check_probe_bits, probe_count
from ..options import Options, option
from ..options import pin_bytes as _shared_pin_bytes
from ._store import DEFAULT_FPR, DEFAULT_GRACE_SECONDS

__all__ = ["DEFAULT_MAX_BATCH", "OprfClientOptions", "OprfServerOptions", "pin_bytes"]

DEFAULT_MAX_BATCH = 1024


def pin_bytes(name: str, value: str | None) -> bytes | None:
    """A pinned 32-byte value given as hex, or None; ``OptionError`` if malformed."""
    return _shared_pin_bytes("oprf", name, value)


@dataclass(frozen=True)
class OprfServerOptions(Options):
    """Server options (``open_server(..., options)``, ``BLINDMATCH_OPRF_*``)."""

    protocol = "oprf"

    fpr: float | None = option(
        None, f"filter false-positive rate; None keeps the current epoch's ({DEFAULT_FPR:.3g} for a new one)"
    )
    grace_seconds: float = option(DEFAULT_GRACE_SECONDS, "how long a retired key epoch is still served")
    workers: int | None = option(None, "processes for the set preparation (None = all cores)")
    mode: Literal["voprf", "oprf"] = option(
        "voprf", "voprf (DLEQ proofs, verifiable) or oprf (no proofs, unverifiable)"
    )
    max_batch: int = option(DEFAULT_MAX_BATCH, "blinded elements per evaluate request")

    def check(self) -> None:
        if self.fpr is not None and not 0.0 < self.fpr < 1.0:
            raise OptionError("oprf option fpr must be in (0, 1)")
        if self.grace_seconds < 0:
            raise OptionError("oprf option grace_seconds must be >= 0")
        if self.max_batch < 1:
            raise OptionError("oprf option max_batch must be >= 1")

    @property
    def effective_fpr(self) -> float:
        """The false-positive rate a new epoch gets."""
        return DEFAULT_FPR if self.fpr is None else self.fpr


@dataclass(frozen=True)
class OprfClientOptions(Options):
    """Client options (``new_client(..., options)``)."""

    protocol = "oprf"

    probe_bits: int = option(0, "multi-probe: also evaluate 2^k flips of the least-stable bits (PDQ)")
    max_batch: int = option(DEFAULT_MAX_BATCH, "blinded elements per evaluate request")
    manifest_ttl: float = option(300.0, "seconds before the manifest is checked again")
    allow_unverified: bool = option(False, "accept a server in OPRF mode (no DLEQ proofs)")
    pinned_signing_key: str | None = option(
        None, "hex Ed25519 key the manifest must be signed with (else trust on first use)"
    )
    pinned_set_digest: str | None = option(
        None, "hex SHA-256 root digest of the hash set the manifest must commit to"
    )
    pinned_root_digest: str | None = option(
        None, "hex root digest of one epoch's whole manifest (changes at every key rotation)"
    )

    def check(self) -> None:
        check_probe_bits(self.probe_bits)
        if self.max_batch < probe_count(self.probe_bits):
            raise OptionError("oprf option max_batch must hold all 2^probe_bits probes of one query")
        for name in ("pinned_signing_key", "pinned_set_digest", "pinned_root_digest"):
            pin_bytes(name, getattr(self, name))
