"""Secret key files: created 0600, refused when group/world readable, never logged.

Why refuse instead of fixing permissions: a key that was readable by others may
already be compromised; the operator must decide, so the server will not start.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import CorruptStoreError, InsecureKeyFileError
from .files import atomic_write

__all__ = ["read_secret", "write_secret"]


def write_secret(path: Path, data: bytes) -> None:
    """Atomically create or replace ``path`` with mode 0600 holding ``data``, durably.

    Through ``files.atomic_write``: the temporary file has an unpredictable name and is
    created with O_EXCL|O_NOFOLLOW, so a link planted in the folder can neither receive the
    secret nor have its target's mode changed; the mode is set on the open descriptor
    (fchmod), and the file and then its folder are fsynced so the rename survives a crash.
    """
    atomic_write(path, data, mode=0o600)


def read_secret(path: Path, expected_len: int | None = None) -> bytes:
    """Read a key file, refusing links, insecure modes and wrong lengths (naming the file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CorruptStoreError(f"{path}: key file missing") from None
    except OSError:
        raise InsecureKeyFileError(f"{path}: key file is a symbolic link or unreadable") from None
    try:
        st = os.fstat(fd)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFileError(f"{path}: key file is group/world accessible; chmod 600 it")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
    if expected_len is not None and len(data) != expected_len:
        raise CorruptStoreError(f"{path}: key file has {len(data)} bytes, expected {expected_len}")
    return data
