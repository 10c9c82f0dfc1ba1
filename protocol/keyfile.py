"""Secret key files: created 0600, refused when group/world readable, never logged.

Why refuse instead of fixing permissions: a key that was readable by others may
already be compromised; the operator must decide, so the server will not start.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import CorruptStoreError, InsecureKeyFileError
from .files import atomic_write

__all__ = ["read_secret", "write_secret"]


def write_secret(path: Path, data: bytes) -> None:
    """Atomically create ``path`` with mode 0600 holding ``data``.

    The temporary file is never group/world readable: it is created 0600 under a fresh
    name with ``O_EXCL | O_NOFOLLOW`` and ``fchmod``-ed, then fsynced and renamed.
    """
    atomic_write(path, data, mode=0o600)


def read_secret(path: Path, expected_len: int | None = None) -> bytes:
    """Read a key file, refusing insecure modes and wrong lengths (naming the file)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CorruptStoreError(f"{path}: key file missing") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFileError(f"{path}: key file is group/world accessible; chmod 600 it")
    data = path.read_bytes()
    if expected_len is not None and len(data) != expected_len:
        raise CorruptStoreError(f"{path}: key file has {len(data)} bytes, expected {expected_len}")
    return data
