"""FastAPI app factory: mounts every registered protocol's endpoints.

Why generic routes: protocols are HTTP-agnostic (bytes in, bytes out), so the
limits that protect the server — body caps read as a stream, per-client token
buckets, admin tokens compared in constant time, one error mapping — are written
once here and apply to every protocol alike.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from blindmatch.protocol import (
    REGISTRY,
    BlindmatchError,
    BodyTooLargeError,
    Endpoint,
    InputError,
    RateLimitedError,
    Request,
    ServerHalf,
    StorageUnavailableError,
)
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from .ratelimit import TokenBuckets
from .setdir import SetDir
from .settings import Settings, get_settings

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("blindmatch.server")

_ERROR_SCHEMA = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        }
    }
}
_BINARY_BODY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _map_error(e: BlindmatchError) -> JSONResponse:
    headers = None
    if isinstance(e, RateLimitedError):
        headers = {"Retry-After": str(max(1, int(e.retry_after + 0.999)))}
    return _error(e.http_status, e.code, e.detail, headers)


async def _read_body(request: HttpRequest, cap: int, timeout: float) -> bytes:
    """Read at most ``cap`` bytes, streaming; never buffer an unbounded body."""
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            if int(cl) > cap:
                raise BodyTooLargeError(f"body of {cl} bytes exceeds the {cap}-byte limit")
        except ValueError:
            raise BodyTooLargeError("unparseable Content-Length") from None
    buf = bytearray()

    async def pump() -> None:
        async for chunk in request.stream():
            buf.extend(chunk)
            if len(buf) > cap:
                raise BodyTooLargeError(f"body exceeds the {cap}-byte limit")

    try:
        await asyncio.wait_for(pump(), timeout)
    except TimeoutError:
        raise BodyTooLargeError("request body not received in time") from None
    return bytes(buf)


def _client_key(request: HttpRequest, proxies: frozenset[str]) -> str:
    """The rate-limit key: the peer address, or the client header if a trusted proxy set it.

    Any client can put any value in a header, so trusting it from everyone
    would give each invented value a fresh token bucket.
    """
    peer = request.client.host if request.client else "unknown"
    if peer in proxies:
        cid = request.headers.get("x-blindmatch-client")
        if cid:
            return "via-proxy:" + cid[:128]
    return peer


def _make_route(
    proto: str, ep: Endpoint, settings: Settings, buckets: TokenBuckets
) -> Callable[[HttpRequest], Coroutine[Any, Any, Response]]:
    cap = min(ep.max_body, settings.max_body_bytes)
    proxies = settings.trusted_proxy_set()

    async def route(request: HttpRequest) -> Response:
        if ep.admin and not _admin_ok(request, settings):
            return _error(401, "unauthorized", "admin token required")
        body = await _read_body(request, cap, settings.request_timeout_s) if ep.method == "POST" else b""
        client = _client_key(request, proxies)
        if ep.rate_limited:
            cost = ep.cost(body) if ep.cost else 1
            buckets.take(f"{proto}:{client}", float(max(1, cost)))
        req = Request(
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            client_id=client,
        )
        try:
            rep = await run_in_threadpool(ep.handler, req)
        except sqlite3.OperationalError as e:
            raise StorageUnavailableError(f"storage write failed: {e}") from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
                raise StorageUnavailableError(f"storage write failed: {e.strerror}") from None
            raise
        return Response(
            content=rep.body, status_code=rep.status, headers=dict(rep.headers), media_type=rep.media_type
        )

    route.__name__ = f"{proto}_{ep.path}".replace("/", "_")
    return route


def _admin_ok(request: HttpRequest, settings: Settings) -> bool:
    token = settings.admin_token.get_secret_value().encode() if settings.admin_token else None
    given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
    return token is not None and hmac.compare_digest(given, token)


def _verdicts_route(
    srv: ServerHalf, settings: Settings
) -> Callable[[HttpRequest], Coroutine[Any, Any, Response]]:
    """``ServerHalf.settle`` then ``server_verdicts`` for one account, as JSON (admin only)."""

    async def route(request: HttpRequest) -> Response:
        if not _admin_ok(request, settings):
            return _error(401, "unauthorized", "admin token required")
        account = request.headers.get("x-blindmatch-account", "")
        if not account:
            raise InputError("X-Blindmatch-Account header required")

        def read() -> list[dict[str, Any]]:
            srv.settle(account)
            return [v.as_json() for v in srv.server_verdicts(account)]

        verdicts = await run_in_threadpool(read)
        return JSONResponse({"account": account, "verdicts": verdicts})

    return route


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for one set directory; opens (and prepares) each protocol."""
    settings = settings or get_settings()
    setdir = SetDir.open(settings.db)
    wanted = (
        sorted(REGISTRY)
        if settings.protocols.strip() == "*"
        else [p.strip() for p in settings.protocols.split(",") if p.strip()]
    )
    servers: dict[str, ServerHalf] = {}
    for name in wanted:
        proto = REGISTRY.get(name)
        if proto is None:
            raise BlindmatchError(f"unknown protocol {name!r} in BLINDMATCH_PROTOCOLS")
        if setdir.algo.name not in proto.supported_algos:
            log.info("protocol %s does not support %s sets; not served", name, setdir.algo.name)
            continue
        options = proto.server_options(settings.protocol_options.get(name))
        servers[name] = proto.open_server(setdir.hashes, setdir.state_dir(name), options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for s in servers.values():
            s.close()

    app = FastAPI(
        title="blindmatch",
        version="1",
        lifespan=lifespan,
        description="Private set membership against a perceptual-hash set. Bodies are binary wire messages.",
    )
    app.state.settings = settings
    app.state.setdir = setdir
    app.state.servers = servers
    buckets = TokenBuckets(settings.rate_per_second, settings.rate_burst)
    app.state.buckets = buckets

    @app.exception_handler(BlindmatchError)
    async def _blindmatch_error(request: HttpRequest, exc: BlindmatchError) -> JSONResponse:
        return _map_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: HttpRequest, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: HttpRequest, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "bad_request", str(exc.errors())[:500])

    @app.get("/healthz", summary="Liveness and the set being served")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "set": {"algo": setdir.algo.name, "count": len(setdir.hashes), "digest": setdir.digest},
            "protocols": sorted(servers),
        }

    @app.get("/v1/set", summary="The set's root digest and the curators' attestations of it")
    def set_info() -> dict[str, Any]:
        return {
            "algo": setdir.algo.name,
            "count": len(setdir.hashes),
            "digest": setdir.digest,
            "attestations": setdir.attestations(),
        }

    @app.get("/v1/protocols", summary="Declared properties and leakage of each served protocol")
    def protocols() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, srv in servers.items():
            p = REGISTRY[name]
            out[name] = {
                "learner": p.learner.value,
                "matching": p.matching.value,
                "private": p.private,
                "setup_bytes": srv.setup_bytes(),
                "leakage": {
                    "client": list(p.leakage.client),
                    "server": list(p.leakage.server),
                    "network": list(p.leakage.network),
                },
            }
        return out

    for name, srv in servers.items():
        app.add_api_route(
            f"/v1/{name}/admin/verdicts",
            _verdicts_route(srv, settings),
            methods=["GET"],
            summary=f"{name}: what the server learned about an account (admin; X-Blindmatch-Account)",
            openapi_extra={
                "responses": {"401": {"description": "Admin token required", "content": _ERROR_SCHEMA}}
            },
        )
        for ep in srv.endpoints():
            extra: dict[str, Any] = {
                "responses": {
                    "200": {"content": _BINARY_BODY},
                    "400": {"description": "Malformed request", "content": _ERROR_SCHEMA},
                    "404": {"description": "Unknown resource", "content": _ERROR_SCHEMA},
                    "413": {"description": "Body or batch too large", "content": _ERROR_SCHEMA},
                    "429": {"description": "Rate limited", "content": _ERROR_SCHEMA},
                    "503": {"description": "Storage unavailable", "content": _ERROR_SCHEMA},
                }
            }
            if ep.method == "POST":
                extra["requestBody"] = {
                    "required": True,
                    "content": _BINARY_BODY,
                }
            if ep.admin:
                extra["responses"]["401"] = {"description": "Admin token required", "content": _ERROR_SCHEMA}
            app.add_api_route(
                f"/v1/{name}/{ep.path}",
                _make_route(name, ep, settings, buckets),
                methods=[ep.method],
                summary=ep.summary or f"{name} {ep.path}",
                openapi_extra=extra,
                response_class=Response,
            )
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory: ``uvicorn --factory blindmatch.server.app:app_from_env``."""
    return create_app(get_settings())
