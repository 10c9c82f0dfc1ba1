"""One-shot loopback HTTP calls for tests: httpx's own ``get``/``post``/``request``, sharing one
verifying TLS context.

Why: each of httpx's one-shot calls builds a new SSL context and loads the CA bundle (about
27 ms of CPU), and the suite makes hundreds of them. The context is the launcher's
(``server.testing``): the default verifying one, built once. Every call still opens its own
connection, as httpx's one-shot calls do.
"""

from __future__ import annotations

from typing import Any

import httpx
from blindmatch.server.testing import _tls

__all__ = ["get", "post", "request"]


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=_tls(), **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, verify=_tls(), **kwargs)


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, verify=_tls(), **kwargs)
