"""HTTP transport for client halves, with byte accounting and typed errors.

Why count bodies only: the in-process transport can only count bodies, and the
two must agree so simulated and measured bandwidth are comparable. HTTP framing
overhead is reported separately by the benchmarks.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping

import httpx
from blindmatch.protocol import BlindmatchError, Transport, TransportReply

__all__ = ["HttpTransport", "ServerError", "ServerUnreachableError"]


class ServerError(BlindmatchError):
    """The server answered 4xx/5xx; ``code`` is the server's error code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"server {status} {code}: {detail}")
        self.code = code
        self.http_status = status
        self.retry_after: str | None = None


class ServerUnreachableError(ServerError):
    """No HTTP answer at all: refused, reset, timed out, or not HTTP (status 0)."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "transport_error", detail)


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default verifying context, built once: each build loads the CA bundle (~20 ms)."""
    return httpx.create_ssl_context()


class HttpTransport(Transport):
    """Sends a protocol's requests to ``{base_url}/v1/{protocol}/{path}``."""

    def __init__(
        self,
        base_url: str,
        protocol: str,
        client: httpx.Client | None = None,
        client_id: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self._prefix = f"{self.base_url}/v1/{protocol}/"
        self._client = client or httpx.Client(timeout=timeout, verify=_tls())
        self._own = client is None
        self._headers = {"x-blindmatch-client": client_id} if client_id else {}

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        hdrs = {**self._headers, **(headers or {})}
        if method == "POST":
            hdrs.setdefault("content-type", "application/octet-stream")
        try:
            r = self._client.request(method, self._prefix + path, content=body, headers=hdrs)
        except httpx.HTTPError as e:
            raise ServerUnreachableError(f"{type(e).__name__}: {e}") from None
        self.bytes_up += len(body)
        self.bytes_down += len(r.content)
        if r.status_code >= 400:
            try:
                j = r.json()
                code, detail = str(j.get("error", "http_error")), str(j.get("detail", ""))
            except ValueError:
                code, detail = "http_error", r.text[:200]
            err = ServerError(r.status_code, code, detail)
            if "retry-after" in r.headers:
                err.retry_after = r.headers["retry-after"]
            raise err
        return TransportReply(r.status_code, r.content, dict(r.headers))

    def close(self) -> None:
        if self._own:
            self._client.close()
