"""Server settings, read once from ``BLINDMATCH_*`` environment variables.

Library objects never read the environment; only ``get_settings`` does, and tests
override it (or pass a ``Settings`` to ``create_app``) instead of patching os.environ.

Protocol options are not listed here: each registered protocol declares its
server options as a typed dataclass (``Protocol.server_options_type``) and
``BLINDMATCH_<PROTOCOL>_<OPTION>`` sets one of them (``BLINDMATCH_TPSI_THRESHOLD``,
``BLINDMATCH_OPRF_MODE``, ``BLINDMATCH_HE_WORKER_MEMORY_MB``, …). A protocol
added to the registry gets its variables with no edit here; an unknown
variable under a protocol's prefix is an ``OptionError`` at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from blindmatch.protocol import REGISTRY, Options
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "env_prefix", "get_settings", "protocol_options_from_env"]


def env_prefix(protocol: str) -> str:
    """``BLINDMATCH_<NAME>_`` with the name in capitals and ``-`` as ``_``."""
    return f"BLINDMATCH_{protocol.upper().replace('-', '_')}_"


def protocol_options_from_env(environ: Mapping[str, str]) -> dict[str, Options]:
    """Each registered protocol's server options from its ``BLINDMATCH_<NAME>_*`` variables.

    A variable under a longer registered prefix (protocol ``he-x`` beside ``he``)
    belongs to that protocol, not to the shorter one.
    """
    prefixes = {name: env_prefix(name) for name in REGISTRY}
    out: dict[str, Options] = {}
    for name, proto in REGISTRY.items():
        mine = prefixes[name]
        longer = [p for p in prefixes.values() if p != mine and p.startswith(mine)]
        env = {k: v for k, v in environ.items() if not any(k.startswith(p) for p in longer)}
        out[name] = proto.server_options_type.from_env(env, mine)
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BLINDMATCH_", extra="ignore")

    db: Path = Field(description="Set directory built by `blindmatch db build`")
    protocols: str = Field("*", description="Comma-separated protocol names to serve, or *")
    max_body_bytes: int = Field(
        64 * 1024 * 1024, description="Hard cap on any request body, per endpoint caps apply too"
    )
    rate_per_second: float = Field(50.0, description="Token-bucket refill per client per protocol")
    rate_burst: float = Field(200.0, description="Token-bucket capacity per client per protocol")
    admin_token: SecretStr | None = Field(None, description="Bearer token for admin endpoints")
    request_timeout_s: float = Field(30.0, description="Per-request body read timeout")
    protocol_options: dict[str, Any] = Field(
        default_factory=lambda: protocol_options_from_env(os.environ),
        description="Server options per protocol (typed Options or mappings), "
        "from BLINDMATCH_<PROTOCOL>_* unless given",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated peer addresses of reverse proxies whose X-Blindmatch-Client "
        "header names the client for rate limits; from any other peer the header is ignored and "
        "the peer address is the key",
    )

    def trusted_proxy_set(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.trusted_proxies.split(",") if p.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]
