"""A log that cannot be flooded: at most a burst of lines per window, the rest counted.

Whoever can write to a control socket could otherwise fill the disk with
log lines about their own bad requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOG_BURST = 10  # lines per window
LOG_WINDOW_S = 10.0


@dataclass
class RateLimitedLog:
    """At most ``burst`` lines per ``window`` seconds; the rest are counted and
    summarised in one line when the next window opens."""

    logger: logging.Logger
    what: str  # plural noun for the summary line, e.g. "malformed datagrams"
    level: int = logging.WARNING
    burst: int = LOG_BURST
    window: float = LOG_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    window_start: float = field(default=float("-inf"), init=False)
    count: int = field(default=0, init=False)
    suppressed: int = field(default=0, init=False)

    def log(self, msg: str, *args: Any, extra: dict[str, Any] | None = None) -> None:
        now = self.clock()
        if now - self.window_start > self.window:
            if self.suppressed:
                self.logger.log(self.level, "%d more %s were not logged", self.suppressed,
                                self.what)
            self.window_start, self.count, self.suppressed = now, 0, 0
        if self.count < self.burst:
            self.count += 1
            self.logger.log(self.level, msg, *args, extra=extra)
        else:
            self.suppressed += 1

    def saturated(self) -> bool:
        """True when the next line would not be logged; it is then counted as
        suppressed.  A hot path asks first and skips building a line (its
        arguments, its structured fields) that would be dropped anyway."""
        if self.clock() - self.window_start > self.window or self.count < self.burst:
            return False
        self.suppressed += 1
        return True
