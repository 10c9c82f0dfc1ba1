"""A real uvicorn server on 127.0.0.1 for integration tests, benchmarks and demos.

Runs in a child process (not a thread) so tests can SIGKILL it to check
durability, and so server CPU is measured apart from the client's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["LiveParties", "LiveServer", "free_port", "free_port_block"]


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


class LiveParties:
    """The three ``mpc`` parties as three uvicorn processes; ``url`` is party 0 (the front door).

    Same face as ``LiveServer`` (url, proc, start, stop, context manager), so tools that
    verify a protocol over loopback can run a multi-process one unchanged.
    """

    def __init__(
        self,
        set_dir: Path,
        env: dict[str, str] | None = None,
        startup_timeout: float = 300.0,
        log_level: str = "warning",
        log_file: Path | None = None,
    ) -> None:
        self.set_dir = Path(set_dir)
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.log_file = log_file
        self.port = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.procs[0] if self.procs else None

    def start(self) -> LiveParties:
        from .mpc import party_commands

        self.port = free_port_block(6)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        for cmd, env in party_commands(self.set_dir, "127.0.0.1", self.port, self.log_level):
            proc = subprocess.Popen(  # noqa: S603
                cmd, env={**env, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )
            self.procs.append(proc)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError("an mpc party exited during start-up")
            try:
                if httpx.get(self.url + "/v1/mpc/manifest", timeout=5.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("mpc parties did not become ready in time")

    def stop(self, sig: int = signal.SIGTERM) -> None:
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

    def __enter__(self) -> LiveParties:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        env = {**os.environ, "BLINDMATCH_DB": str(self.set_dir), **self.env}
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
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        errout = subprocess.STDOUT if self.log_file else subprocess.PIPE
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=errout)  # noqa: S603
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
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
