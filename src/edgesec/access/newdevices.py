"""The rate of new devices: one token bucket shared by all MACs without a record.

Owns ``[radius] newDeviceRate`` (tokens per minute) and ``newDeviceBurst``.
Known devices never take a token; an unknown device takes one only when it is
admitted (a rejected stranger costs nothing, so a flood of strangers while
the gateway is closed cannot starve a device with a ticket).  A device sees
random MACs as a way to create records, allocate pool VLANs and burn
tickets; this bounds how fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class NewDeviceLimiter:
    """Token bucket: ``per_minute`` tokens a minute, at most ``burst`` saved.

    ``per_minute = 0`` switches the limit off.
    """

    def __init__(self, per_minute: int, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 0 or burst < 0:
            raise ValueError("newDeviceRate and newDeviceBurst must not be negative")
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self.clock = clock
        self._tokens = self.burst
        self._at = clock()
        self.limited = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _refill(self) -> float:
        now = self.clock()
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens

    def available(self) -> bool:
        """A new device may be admitted now (nothing taken); counts a refusal."""
        if not self.enabled or self._refill() >= 1.0:
            return True
        self.limited += 1
        return False

    def take(self) -> None:
        """A new device was admitted: spend one token."""
        if self.enabled:
            self._tokens = max(0.0, self._refill() - 1.0)
