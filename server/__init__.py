"""The blindmatch HTTP service: holds the set, the keys and received vouchers.

Public API: ``create_app`` / ``app_from_env`` (FastAPI), ``Settings``,
``SetDir`` (the on-disk set), ``LiveServer`` (a real uvicorn on loopback).
"""

from .app import app_from_env, create_app
from .setdir import SetDir
from .settings import Settings, get_settings
from .testing import LiveServer, free_port

__all__ = ["LiveServer", "SetDir", "Settings", "app_from_env", "create_app", "free_port", "get_settings"]
