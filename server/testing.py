"""A real uvicorn server on 127.0.0.1 for integration tests, benchmarks and demos.

Runs in a child process (not a thread) so tests can SIGKILL it to check
durability, and so server CPU is measured apart from the client's. The parent
binds the listening socket and hands it to the child, so no other process can
take the port between its choice and the server's start (tests run in parallel).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

__all__ = ["LiveParties", "LiveServer", "free_port", "free_port_block"]


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default verifying context, built once: each build loads the CA bundle (~27 ms)."""
    return httpx.create_ssl_context()


def _listen(port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` (0: a free port the kernel picks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart on the same port
        sock.bind(("127.0.0.1", port))
        sock.listen(2048)  # uvicorn's default backlog
    except OSError:
        sock.close()
        raise
    return sock


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(n: int) -> int:
    """A base port p such that p .. p+n-1 are free on 127.0.0.1 right now."""
    for _ in range(500):
        base = free_port()
        if base + n >= 65536:
            continue
        socks = []
        try:
            for i in range(n):
                sk = socket.socket()
                socks.append(sk)
                sk.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for sk in socks:
                sk.close()
    raise RuntimeError("no block of free ports")


_PORT_ATTEMPTS = 5
_PORT_IN_USE = (b"Address already in use", b"[Errno 98]")


class LiveParties:
    """The three ``mpc`` parties as three uvicorn processes; ``url`` is party 0 (the front door).

    Same face as ``LiveServer`` (url, proc, start, stop, context manager), so tools that
    verify a protocol over loopback can run a multi-process one unchanged. The parties bind
    their HTTP and peer ports themselves, so a port found free can be taken by another
    process before a party binds it: a party that exits with "address in use" during
    start-up makes all three start again on another block of ports.

    Output goes to ``log_dir/party-<i>.log``, else all three to ``log_file``, else to
    temporary files that ``stop`` deletes.
    """

    def __init__(
        self,
        set_dir: Path,
        env: dict[str, str] | None = None,
        startup_timeout: float = 300.0,
        log_level: str = "warning",
        log_file: Path | None = None,
        workers: int = 1,
        log_dir: Path | None = None,
    ) -> None:
        self.set_dir = Path(set_dir)
        self.env = env or {}
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.log_file = log_file
        self.log_dir = log_dir
        self.port = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.procs[0] if self.procs else None

    def start(self) -> Self:
        for _ in range(_PORT_ATTEMPTS):
            if self._launch():
                return self
        raise RuntimeError(f"mpc parties lost their ports to other processes {_PORT_ATTEMPTS} times")

    def _log_paths(self) -> list[Path]:
        if self.log_dir is not None:
            return [Path(self.log_dir) / f"party-{i}.log" for i in range(3)]
        if self.log_file is not None:
            return [Path(self.log_file)] * 3
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="blindmatch-parties-")
        return [Path(self._tmp.name) / f"party-{i}.log" for i in range(3)]

    def _launch(self) -> bool:
        """Start the parties on a new block of ports and wait for party 0's manifest.

        False when a party exited because another process took one of its ports.
        """
        from .mpc import party_commands

        self.port = free_port_block(3 + 3 * self.workers)
        logs = self._log_paths()
        offsets = [p.stat().st_size if p.exists() else 0 for p in logs]
        commands = party_commands(self.set_dir, "127.0.0.1", self.port, self.log_level, self.workers)
        for (cmd, env), log in zip(commands, logs, strict=True):
            with open(log, "ab") as out:
                self.procs.append(
                    subprocess.Popen(cmd, env={**env, **self.env}, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
                )
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=5.0, verify=_tls()) as probe:
            return self._await_ready(probe, deadline, logs, offsets)

    def _await_ready(
        self, probe: httpx.Client, deadline: float, logs: list[Path], offsets: list[int]
    ) -> bool:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                self.stop(keep_logs=True)
                output = b"".join(_read_from(p, o) for p, o in dict(zip(logs, offsets, strict=True)).items())
                if any(m in output for m in _PORT_IN_USE):
                    return False
                self.stop()
                tail = output.decode(errors="replace")[-2000:]
                raise RuntimeError(f"an mpc party exited during start-up: {tail}")
            if self._ready(probe):
                return True
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("mpc parties did not become ready in time")

    def _ready(self, probe: httpx.Client) -> bool:
        """Every party answers over HTTP (its peer port is bound before that) and party 0
        serves the manifest."""
        urls = [f"http://127.0.0.1:{self.port + i}/healthz" for i in range(1, 3)]
        try:
            return all(probe.get(u).status_code == 200 for u in urls) and (
                probe.get(self.url + "/v1/mpc/manifest").status_code == 200
            )
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, keep_logs: bool = False) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(sig)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        if self._tmp is not None and not keep_logs:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


class LiveServer:
    """``with LiveServer(set_dir) as srv: srv.url`` — uvicorn on a free loopback port."""

    def __init__(
        self,
        set_dir: Path,
        env: dict[str, str] | None = None,
        workers: int = 1,
        port: int | None = None,
        startup_timeout: float = 120.0,
        log_level: str = "warning",
        log_file: Path | None = None,
    ) -> None:
        self.set_dir = Path(set_dir)
        self.env = env or {}
        self.workers = workers
        self.port = port or 0  # 0: the first start binds a free port and keeps it for restarts
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        env = {**os.environ, "BLINDMATCH_DB": str(self.set_dir), **self.env}
        listener = _listen(self.port)
        self.port = int(listener.getsockname()[1])
        # blindmatch.server.run, not `python -m uvicorn`: it keeps TCP_NODELAY with several workers
        cmd = [
            sys.executable,
            "-m",
            "blindmatch.server.run",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
            "--workers",
            str(self.workers),
            "--fd",
            str(listener.fileno()),
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        errout = subprocess.STDOUT if self.log_file else subprocess.PIPE
        with listener:  # the child holds its own copy of the socket
            self.proc = subprocess.Popen(  # noqa: S603
                cmd, env=env, stdout=out, stderr=errout, pass_fds=(listener.fileno(),)
            )
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0, verify=_tls()) as probe:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise RuntimeError(f"server exited with {self.proc.returncode}: {err[-2000:]}")
                try:
                    if probe.get(self.url + "/healthz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become healthy in time")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
