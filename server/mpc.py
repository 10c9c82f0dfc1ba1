"""``blindmatch mpc up``: the three mpc parties as three server processes on one machine.

For demos and tests only: a deployment runs each party on its own operator's
machine with ``blindmatch serve --mpc-party I``; putting all three under one
operator voids the honest-majority assumption. Party i serves clients on
``port + i`` and its party channel on ``port + 3 + i``; the pinned keys are the
``party-I.pub`` files each party writes into the shared state directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

__all__ = ["party_commands", "run_parties"]


def party_commands(
    db: Path, host: str, port: int, log_level: str = "warning", workers: int = 1, shared_set: bool = False
) -> list[tuple[list[str], dict[str, str]]]:
    """The command and environment of each party process (shard w's channels on port + 3(w + 1) + i).

    With ``shared_set`` each party loads its dealt share ``state/mpc/set-share-I.bin``
    instead of the clear set (``share_set_for_demo`` deals them).
    """
    peers = ",".join(f"{host}:{port + 3 + i}" for i in range(3))
    out = []
    for i in range(3):
        env = {
            **os.environ,
            "BLINDMATCH_DB": str(db),
            "BLINDMATCH_PROTOCOLS": "mpc",
            "BLINDMATCH_MPC_PARTY": str(i),
            "BLINDMATCH_MPC_PEERS": peers,
            "BLINDMATCH_MPC_WORKERS": str(workers),
            "BLINDMATCH_MPC_WORKER_PORT_STEP": "3",
            "BLINDMATCH_MPC_SET_SHARING": "shared" if shared_set else "clear",
        }
        cmd = [
            sys.executable,
            "-m",
            "blindmatch.server.run",
            "--host",
            host,
            "--port",
            str(port + i),
            "--log-level",
            log_level,
        ]
        out.append((cmd, env))
    return out


def run_parties(db: Path, host: str, port: int, workers: int = 1, shared_set: bool = False) -> None:
    """Start the three parties, print their URLs, and stop all of them on SIGTERM/SIGINT."""
    commands = party_commands(db, host, port, workers=workers, shared_set=shared_set)
    procs = [subprocess.Popen(cmd, env=env) for cmd, env in commands]  # noqa: S603
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(3):
        sys.stderr.write(f"mpc party {i}: http://{host}:{port + i}\n")
    code = 0
    while not stopping:
        if any(p.poll() is not None for p in procs):
            sys.stderr.write("error: an mpc party exited; stopping the others\n")
            code = 1
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if code:
        sys.exit(code)
