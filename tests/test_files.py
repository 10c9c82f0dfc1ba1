"""protocol.files.atomic_write: whole old file or whole new file, exact modes, no leftovers."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from blindmatch.protocol import atomic_write, atomic_writer


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_writes_and_replaces(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "f.bin"
    atomic_write(p, b"one")
    atomic_write(p, "two ✓")
    assert p.read_bytes() == "two ✓".encode()
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.bin"]


def test_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        atomic_write(tmp_path / "secret", b"k", mode=0o600)
        atomic_write(tmp_path / "plain", b"p")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secret") == 0o600
    assert _mode(tmp_path / "plain") == 0o666
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "public", b"p", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "public") == 0o644


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "f"
    atomic_write(p, b"old")
    with pytest.raises(RuntimeError), atomic_writer(p) as fh:
        fh.write(b"half of the ne")
        raise RuntimeError("writer died")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f"]


def test_a_link_planted_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / "f").symlink_to(victim)
    atomic_write(tmp_path / "f", b"new")
    assert victim.read_bytes() == b"untouched"
    assert not (tmp_path / "f").is_symlink() and (tmp_path / "f").read_bytes() == b"new"


def test_concurrent_writers_never_tear_or_collide(tmp_path: Path) -> None:
    p = tmp_path / "f"
    bodies = [bytes([i]) * 65536 for i in range(8)]
    errors: list[BaseException] = []

    def write(body: bytes) -> None:
        try:
            for _ in range(20):
                atomic_write(p, body)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert p.read_bytes() in bodies
    assert [x.name for x in tmp_path.iterdir()] == ["f"]
