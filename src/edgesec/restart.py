"""Restarting a worker child with exponential back-off (one policy for all services).

The capture and detect services each run one worker process whose JSON-lines
output they read (:class:`WorkerReader`); when it exits on its own they restart
it after a delay that doubles per failure up to a cap and resets once the
worker says anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

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


class WorkerReader:
    """Mixin: read a worker's JSON lines, restart it with back-off when it exits.

    The service sets ``_proc`` (by ``_spawn``) and ``_stopping``, and says what
    a message means (``_on_message``), where errors go (``_report``) and what a
    restart counts (``_restarted``); ``_exited`` may take over an exit it caused.
    """

    _what = "worker"
    _spawn_errors: type[Exception] | tuple[type[Exception], ...] = RuntimeError
    _proc: asyncio.subprocess.Process | None
    _stopping: bool

    async def _spawn(self) -> None:
        raise NotImplementedError

    def _on_message(self, msg: Any) -> None:
        raise NotImplementedError

    def _report(self, error: str) -> None:
        raise NotImplementedError

    def _restarted(self) -> None:
        """A new worker runs after an unexpected exit (count it)."""

    async def _exited(self, backoff: Backoff) -> bool:
        """The worker exited while not stopping: True when that was expected and handled."""
        return False

    async def _read_loop(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            proc = self._proc
            assert proc is not None and proc.stdout is not None
            async for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                self._on_message(msg)
                backoff.reset()
            await proc.wait()
            if self._stopping:
                return
            if await self._exited(backoff):
                continue
            if await restart_with_backoff(self._what, proc.returncode, backoff, self._spawn,
                                          self._spawn_errors, self._report):
                self._restarted()
