"""Per-key token buckets with a bounded key table.

Owns the reflector's rate limiting per (source address, interface).  The key
table is an LRU capped at ``max_keys`` so a flood of spoofed sources cannot
grow memory without bound (an evicted key simply starts with a full bucket).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token bucket per key: ``rate`` tokens/s, at most ``burst`` stored."""

    def __init__(self, rate: float, burst: int, max_keys: int = 4096) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate, burst and max_keys must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()
        self.dropped = 0

    def allow(self, key: Hashable, now: float) -> bool:
        """Take one token for ``key`` at time ``now``; False when none is left."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = [self.burst, now]
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
                bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        self.dropped += 1
        return False

    def __len__(self) -> int:
        return len(self._buckets)
