"""he's typed options. ``None`` means "the default for the set's hash algorithm"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import OptionError
from ..options import Options, option

__all__ = ["HEClientOptions", "HEServerOptions"]


def _at_least(name: str, value: float | None, lo: float) -> None:
    if value is not None and value < lo:
        raise OptionError(f"he option {name!r}={value} must be >= {lo}")


@dataclass(frozen=True)
class HEServerOptions(Options):
    """Server options (``open_server(..., options)``, ``BLINDMATCH_HE_*``)."""

    protocol = "he"

    param_set: str | None = option(None, "named BFV parameter set (None: by hash size)")
    radius: int | None = option(None, "Hamming radius r (None: the algorithm's default threshold)")
    baby_step: int | None = option(None, "baby-step size of the rotation circuit (None: by hash size)")
    recheck_noise: bool = option(False, "re-run the noise check even if a cached report passed")
    noise_cache_dir: str | None = option(
        None, "folder where servers on this machine share passing noise-check reports "
        "(None: $XDG_CACHE_HOME/blindmatch, else ~/.cache/blindmatch; '': the state dir only)"
    )
    modes: str = option("client-learns,server-learns", "comma-separated modes offered")
    psi_max_slots: int = option(1 << 16, "largest server-learns PSI message, in slots")
    psi_pad: int = option(256, "server-learns PSI slot counts are rounded up to this")
    worker_timeout_s: float = option(120.0, "base time limit of one isolated worker job")
    worker_timeout_per_group_s: float = option(30.0, "extra time limit per result ciphertext")
    session_ttl_s: float = option(600.0, "how long a server-learns session waits for its PSI step")
    key_cache_mb: int = option(512, "memory for cached client-learns evaluation keys (reused per client)")
    session_key_cache_mb: int = option(
        64, "memory for server-learns evaluation keys (one bundle per client session; idle ones "
        "leave after session_ttl_s)"
    )
    lsh: bool = option(True, "offer LSH-bucketed queries")
    lsh_k: int | None = option(None, "sampled bits per LSH table (None: by hash size)")
    lsh_tables: int | None = option(None, "LSH tables (None: by hash size)")
    workers: int | None = option(None, "isolated worker processes (None: all cores)")
    worker_memory_mb: int = option(4096, "address-space cap of each worker (0: none)")

    def check(self) -> None:
        _at_least("radius", self.radius, 0)
        _at_least("baby_step", self.baby_step, 1)
        for name, lo, hi in (
            ("psi_max_slots", 1, 1 << 20),
            ("psi_pad", 1, 1 << 16),
            ("key_cache_mb", 1, 1 << 16),
            ("session_key_cache_mb", 1, 1 << 16),
            ("worker_memory_mb", 0, 1 << 20),
        ):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise OptionError(f"he option {name!r}={v} outside [{lo}, {hi}]")
        for name, lo, hi in (("lsh_k", 1, 24), ("lsh_tables", 1, 64), ("workers", 1, 256)):
            v = getattr(self, name)
            if v is not None and not lo <= v <= hi:
                raise OptionError(f"he option {name!r}={v} outside [{lo}, {hi}]")
        for name in ("worker_timeout_s", "worker_timeout_per_group_s", "session_ttl_s"):
            _at_least(name, getattr(self, name), 0.0)


@dataclass(frozen=True)
class HEClientOptions(Options):
    """Client options (``new_client(..., options)``)."""

    protocol = "he"

    mode: Literal["client-learns", "server-learns"] = option(
        "client-learns", "who learns the verdict: the client, or the server (DH-PSI step)"
    )
    allow_server_learns: bool = option(
        False, "accept server-learns, which hides the hash from a semi-honest server only"
    )
    max_psi_slots: int = option(1 << 16, "refuse server-learns over more PSI slots (each can leak a bit)")
    bucketed: bool = option(False, "query only the LSH candidates (reveals the sampled bits)")
    max_groups: int = option(4096, "refuse a server whose set needs more result ciphertexts")

    def check(self) -> None:
        _at_least("max_groups", self.max_groups, 1)
        _at_least("max_psi_slots", self.max_psi_slots, 1)
