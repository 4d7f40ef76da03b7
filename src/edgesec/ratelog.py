"""Logs that cannot be flooded: a burst of lines per window, the rest counted.

Whatever a device or a local client can trigger repeatedly (a RADIUS request
on a full VLAN pool, a command on a full disk, a malformed datagram) would
otherwise write the disk full with the same line.  Two tools:

* :class:`RateLimitFilter`, a :class:`logging.Filter` installed on the
  daemon's log handlers (:func:`install`): every record at INFO or above is
  keyed by (logger, level, message template), so ``"admission of %s failed"``
  for a thousand MACs is one key.  Each key passes ``burst`` records per
  ``window``; the first record after a window in which some were dropped
  carries the count ("... [37 more like this in 60 s were not logged]").
  The operators' audit trail (``edgesec.audit``: policy commands) is exempt:
  its site limits itself with its own budget; what a device drives (RADIUS
  decisions in ``edgesec.audit.radius``) is not.
* :class:`RateLimitedLog`, for one call site that wants its own budget and a
  summary line naming what was dropped ("12 more malformed datagrams were not
  logged").
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOG_BURST = 10  # lines per window
LOG_WINDOW_S = 10.0
FILTER_BURST = 10  # per (logger, level, template) and window, for the handler filter
FILTER_WINDOW_S = 60.0
FILTER_MAX_KEYS = 1024  # templates tracked at once (least recently used forgotten)
# Loggers (exact names) with their own budget, not limited twice: the operators' audit
# trail (policy commands) keeps the burst its site chose. Device-driven lines, RADIUS
# decisions in ``edgesec.audit.radius`` included, get the filter's tighter bound.
FILTER_EXEMPT = ("edgesec.audit",)


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


class RateLimitFilter(logging.Filter):
    """Pass ``burst`` records per (logger, level, template) and ``window``; count the rest."""

    def __init__(self, burst: int = FILTER_BURST, window: float = FILTER_WINDOW_S,
                 level: int = logging.INFO, max_keys: int = FILTER_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic,
                 exempt: tuple[str, ...] = FILTER_EXEMPT) -> None:
        super().__init__()
        self.burst, self.window, self.level = burst, window, level
        self.exempt = exempt
        self.max_keys, self.clock = max_keys, clock
        # key -> [window start, passed in window, suppressed in window]
        self._keys: collections.OrderedDict[tuple[str, int, str], list[Any]] = \
            collections.OrderedDict()
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or record.name in self.exempt:
            return True
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, record.levelno, template)
        now = self.clock()
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = [now, 0, 0]
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        if now - state[0] > self.window:
            if state[2]:
                record.msg = (f"{record.getMessage()} [{state[2]} more like this in "
                              f"{self.window:.0f} s were not logged]")
                record.args = None
            state[:] = [now, 0, 0]
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        self.suppressed_total += 1
        return False


def install(logger: logging.Logger | None = None, **kw: Any) -> RateLimitFilter:
    """Put one :class:`RateLimitFilter` on every handler of ``logger`` (default: root)."""
    target = logger or logging.getLogger()
    flt = RateLimitFilter(**kw)
    for handler in target.handlers:
        if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt
