"""mpc's typed options (``BLINDMATCH_MPC_*`` on the server)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import OptionError, UnknownPartyError
from ..options import Options, option, pin_bytes

__all__ = ["MpcClientOptions", "MpcServerOptions"]


@dataclass(frozen=True)
class MpcServerOptions(Options):
    """Server options (``open_server(..., options)``, ``BLINDMATCH_MPC_*``)."""

    protocol = "mpc"

    party: int | None = option(None, "this process is party 0, 1 or 2 (None: not an mpc party)")
    peers: str | None = option(None, "the three party-channel addresses HOST:PORT,HOST:PORT,HOST:PORT")
    chunk: int = option(1 << 19, "set entries per circuit chunk; equal at all parties (in the handshake)")
    timeout_s: float = option(120.0, "how long a party waits for a peer's frame")
    radius: int | None = option(None, "Hamming radius r (None: the algorithm's default threshold)")
    workers: int = option(1, "processes this party splits its set over; equal at all parties")
    worker_port_step: int = option(3, "shard w's channel listens on the party's channel port + w·step")
    set_sharing: Literal["clear", "shared"] = option(
        "clear",
        "clear: the party holds the hash set; shared: it holds only its replicated share of the set "
        "(state/mpc/set-share-I.bin, dealt by `blindmatch mpc share-set`)",
    )

    def check(self) -> None:
        if self.party is not None and self.party not in (0, 1, 2):
            raise UnknownPartyError(f"party index {self.party} is not 0, 1 or 2")
        if not 1 <= self.chunk <= 1 << 24:
            raise OptionError(f"mpc option 'chunk'={self.chunk} outside [1, 2^24]")
        if self.timeout_s <= 0:
            raise OptionError("mpc option 'timeout_s' must be positive")
        if not 1 <= self.workers <= 64:
            raise OptionError(f"mpc option 'workers'={self.workers} outside [1, 64]")
        if self.workers > 1 and self.worker_port_step < 1:
            raise OptionError("mpc option 'worker_port_step' must be positive")
        if self.set_sharing == "shared" and self.workers > 1:
            raise OptionError("mpc option set_sharing='shared' runs one process per party (workers=1)")
        if self.radius is not None and not 0 <= self.radius <= 255:
            raise OptionError(f"mpc option 'radius'={self.radius} outside [0, 255]")


@dataclass(frozen=True)
class MpcClientOptions(Options):
    """Client options (``new_client(..., options)``)."""

    protocol = "mpc"

    mode: Literal["client-learns", "server-learns"] = option(
        "client-learns", "who learns the verdict: the client, or party 0 (the provider)"
    )
    output: Literal["any", "count"] = option(
        "any", "what the learner gets: whether any entry is within r, or how many are (count)"
    )
    pinned_signing_key: str | None = option(
        None, "hex Ed25519 key of party 0 the manifest must be signed with (None: trust on first use)"
    )
    pinned_signing_keys: str | None = option(
        None,
        "hex Ed25519 keys of parties 0,1,2, comma-separated, each obtained from its own operator "
        "(`blindmatch db info`); without them the client trusts party 0 to name the other two",
    )

    def check(self) -> None:
        pins = self.pins()
        one = self.pinned_signing_key
        if pins[0] is not None and one is not None and bytes.fromhex(one) != pins[0]:
            raise OptionError("pinned_signing_key and pinned_signing_keys disagree about party 0")

    def pins(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The pinned signing key of each party (None where not pinned)."""
        one = pin_bytes("mpc", "pinned_signing_key", self.pinned_signing_key)
        if self.pinned_signing_keys is None:
            return one, None, None
        parts = [p.strip() for p in self.pinned_signing_keys.split(",")]
        if len(parts) != 3:
            raise OptionError("mpc option pinned_signing_keys needs three comma-separated keys")
        keys = [pin_bytes("mpc", "pinned_signing_keys", p) for p in parts]
        if len(set(keys)) != 3:
            raise OptionError("mpc option pinned_signing_keys names one key twice")
        return keys[0], keys[1], keys[2]
