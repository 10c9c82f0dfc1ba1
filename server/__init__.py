"""The blindmatch HTTP service: holds the set, the keys and received vouchers.

Public API: ``create_app`` / ``app_from_env`` (FastAPI), ``Settings``,
``SetDir`` (the on-disk set), ``LiveServer`` (a real uvicorn on loopback).
``LiveServer`` and ``free_port`` load on first use, so a serving process does not
import the launcher's HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .app import app_from_env, create_app
from .setdir import SetDir
from .settings import Settings, get_settings

if TYPE_CHECKING:
    from .testing import LiveServer, free_port

__all__ = ["LiveServer", "SetDir", "Settings", "app_from_env", "create_app", "free_port", "get_settings"]

_LAZY = {"LiveServer", "free_port"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import testing

        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
