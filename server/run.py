"""Run the app under uvicorn with TCP_NODELAY on every connection, whatever the worker count.

Why not plain ``uvicorn.run``: with ``--workers`` > 1 uvicorn binds the listening socket
itself as ``socket.socket(family)``, protocol 0. asyncio sets TCP_NODELAY only on sockets
whose ``proto`` is IPPROTO_TCP, so on those connections Nagle stays on and a keep-alive
client waits for its own delayed ACK (~40 ms) on every response (Kludex/uvicorn#3149).
Re-wrapping the listening socket with ``proto=IPPROTO_TCP`` fixes it: accepted sockets
take the listener's protocol, and the socket keeps it when it is handed to the workers.
"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

__all__ = ["main", "serve", "tcp_listener"]

APP = "blindmatch.server.app:app_from_env"
_STARTUP_FAILURE = 3


def tcp_listener(sock: socket.socket) -> socket.socket:
    """The same listening socket, re-wrapped so that its ``proto`` is IPPROTO_TCP."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tcp.set_inheritable(True)
    return tcp


def serve(
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    app: str = APP,
    listener: socket.socket | None = None,
) -> None:
    """What ``blindmatch serve`` and ``LiveServer`` run (the app reads BLINDMATCH_* itself).

    ``listener``: an already bound and listening TCP socket to serve on instead of binding
    ``host:port``; a parent that binds the port itself (``LiveServer``) cannot lose it to
    another process between choosing it and the server starting.
    """
    config = uvicorn.Config(
        app, factory=True, host=host, port=port, workers=workers, log_level=log_level
    )
    if config.workers > 1:
        sock = listener if listener is not None else config.bind_socket()
        Multiprocess(config, sockets=[tcp_listener(sock)]).run()
        return
    server = uvicorn.Server(config)
    server.run(sockets=None if listener is None else [tcp_listener(listener)])
    if not server.started:
        sys.exit(_STARTUP_FAILURE)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m blindmatch.server.run", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--fd", type=int, default=None, help="serve on this inherited listening socket")
    a = ap.parse_args(argv)
    listener = None if a.fd is None else socket.socket(fileno=a.fd)
    serve(a.host, a.port, a.workers, a.log_level, listener=listener)


if __name__ == "__main__":
    main()
