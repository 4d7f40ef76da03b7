"""Restarting a worker child with exponential back-off (one policy for all services).

The capture and detect services each run one worker process whose JSON-lines
output they read; when it exits on its own they restart it after a delay that
doubles per failure up to a cap and resets once the worker says anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Backoff:
    """A delay of ``first`` seconds, doubled on every :meth:`sleep` up to ``cap``."""

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap, self.delay = first, cap, first

    def reset(self) -> None:
        """The worker is healthy again: the next failure waits ``first`` seconds."""
        self.delay = self.first

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)


async def restart_with_backoff(what: str, returncode: int | None, backoff: Backoff,
                               spawn: Callable[[], Awaitable[None]],
                               errors: type[Exception] | tuple[type[Exception], ...],
                               report: Callable[[str], None]) -> bool:
    """The worker of ``what`` exited with ``returncode``: wait the back-off, ``spawn`` again.

    ``report`` gets the reason to show at once ("worker exited with N") and, if
    the new worker cannot start (one of ``errors``), why; True when it started.
    """
    error = f"worker exited with {returncode}"
    report(error)
    log.warning("%s %s; restarting in %.0f s", what, error, backoff.delay)
    await backoff.sleep()
    try:
        await spawn()
    except errors as exc:
        report(str(exc))
        return False
    return True
