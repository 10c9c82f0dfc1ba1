"""Per-client token buckets: OPRF evaluation is a dictionary-attack oracle.

Each (client, protocol) pair gets ``burst`` tokens refilled at ``rate`` per
second; an endpoint call costs one token per item (batch size), so batching does
not bypass the limit. Memory is bounded by evicting the least recently seen keys.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from blindmatch.protocol import RateLimitedError

__all__ = ["TokenBuckets"]


class TokenBuckets:
    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens or raise ``RateLimitedError`` with the wait time."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._b.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if cost > self.burst:
                self._b[key] = (tokens, now)
                raise RateLimitedError(cost / self.rate, "request larger than the rate-limit burst")
            if tokens < cost:
                self._b[key] = (tokens, now)
                raise RateLimitedError((cost - tokens) / self.rate)
            self._b[key] = (tokens - cost, now)
            while len(self._b) > self.max_keys:
                self._b.popitem(last=False)
