"""``blindmatch.server.run``: uvicorn with several workers keeps TCP_NODELAY (uvicorn#3149)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import numpy as np
import pytest
from blindmatch.protocol import get_algo
from blindmatch.server.run import tcp_listener
from blindmatch.server.setdir import SetDir
from blindmatch.server.testing import LiveServer


async def _nodelay_of_accepted(listener: socket.socket) -> int:
    """TCP_NODELAY of the connection asyncio accepts on ``listener`` (as uvicorn's workers do)."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=listener)
    port = listener.getsockname()[1]
    _, w = await asyncio.open_connection("127.0.0.1", port)
    value = await asyncio.wait_for(seen, 5)
    w.close()
    server.close()
    await server.wait_closed()
    return value


def _uvicorn_style_listener() -> socket.socket:
    """A listener bound the way uvicorn's Config.bind_socket does it: protocol 0."""
    sock = socket.socket(family=socket.AF_INET)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_plain_uvicorn_listener_loses_nodelay() -> None:
    # the control: this is the bug the runner exists for
    assert asyncio.run(_nodelay_of_accepted(_uvicorn_style_listener())) == 0


def test_rewrapped_listener_gives_nodelay() -> None:
    sock = tcp_listener(_uvicorn_style_listener())
    assert sock.proto == socket.IPPROTO_TCP
    assert asyncio.run(_nodelay_of_accepted(sock)) != 0


@pytest.mark.parametrize("workers", [2])
def test_live_server_with_workers_answers(tmp_path, workers: int) -> None:  # type: ignore[no-untyped-def]
    pdq = get_algo("pdq")
    rng = np.random.default_rng(2)
    sd = SetDir.build(tmp_path / "set", pdq, [pdq.from_bytes(rng.bytes(32)) for _ in range(20)])
    env = {"BLINDMATCH_PROTOCOLS": "plain"}
    with LiveServer(sd.path, workers=workers, env=env) as srv, httpx.Client() as c:
        assert all(c.get(f"{srv.url}/healthz").status_code == 200 for _ in range(5))
