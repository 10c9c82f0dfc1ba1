"""Server settings, read once from ``BLINDMATCH_*`` environment variables.

Library objects never read the environment; only ``get_settings`` does, and tests
override it (or pass a ``Settings`` to ``create_app``) instead of patching os.environ.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


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
    oprf_grace_seconds: float = Field(7 * 24 * 3600.0, description="How long old OPRF epochs live")
    oprf_mode: str = Field(
        "voprf", description="oprf epochs: voprf (DLEQ proofs) or oprf (no proofs, unverifiable)"
    )
    he_worker_memory_mb: int = Field(4096, description="Address-space cap of the HE worker")
    tpsi_threshold: int = Field(30, description="Matches before the server may decrypt")
    tpsi_synthetic_rate: float = Field(0.05, description="Client synthetic-voucher probability")
    mpc_party: int | None = Field(None, description="mpc: this process is party 0, 1 or 2")
    mpc_peers: str | None = Field(None, description="mpc: the three party-channel HOST:PORT, comma-separated")
    mpc_chunk: int = Field(1 << 19, description="mpc: set entries per circuit chunk (same at every party)")
    mpc_timeout_s: float = Field(120.0, description="mpc: how long a party waits for a peer's frame")
    trust_client_header: bool = Field(
        True, description="Use X-Blindmatch-Client as the rate-limit key (else the peer address)"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]
