"""The server's cache of uploaded evaluation-key bundles, bounded in bytes and in time.

Why bounded both ways: a key bundle is ~18 MB (PDQ), and server-learns clients make
fresh keys for every session, so an unbounded (or merely large) cache grows by one
bundle per session that will never be used again. Entries leave oldest-use first
once the cache passes ``max_bytes`` (the newest entry always stays, so one bundle
larger than the budget still serves its query) and after ``ttl_s`` without use. A
query naming an evicted bundle gets 409 ``unknown_keys`` and the client resends it
once; nothing acknowledged depends on a cached bundle.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["KeyCache"]


class KeyCache:
    """LRU of key bundles by digest, at most ``max_bytes`` and ``ttl_s`` idle (0: no TTL)."""

    def __init__(
        self, max_bytes: int, ttl_s: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    def put(self, digest: bytes, bundle: bytes) -> None:
        with self._lock:
            self._drop(digest)
            self._items[digest] = (bundle, self._clock())
            self._bytes += len(bundle)
            self._expire()
            while self._bytes > self.max_bytes and len(self._items) > 1:
                self._drop(next(iter(self._items)))

    def get(self, digest: bytes) -> bytes | None:
        """The bundle (and mark it used), or None if it was never sent, evicted or expired."""
        with self._lock:
            self._expire()
            hit = self._items.get(digest)
            if hit is None:
                return None
            self._items[digest] = (hit[0], self._clock())
            self._items.move_to_end(digest)
            return hit[0]

    def pop(self, digest: bytes) -> None:
        with self._lock:
            self._drop(digest)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def _drop(self, digest: bytes) -> None:
        hit = self._items.pop(digest, None)
        if hit is not None:
            self._bytes -= len(hit[0])

    def _expire(self) -> None:
        if self.ttl_s <= 0:
            return
        cutoff = self._clock() - self.ttl_s
        while self._items:
            oldest = next(iter(self._items))
            if self._items[oldest][1] >= cutoff:
                break
            self._drop(oldest)
