"""Ending a background task for sure.

On Python 3.11 one ``task.cancel()`` does not always end a task that loops
around ``asyncio.wait_for``: when the cancellation meets the completion of the
awaited future, ``wait_for`` returns the result instead of raising (CPython
gh-86296, fixed in 3.12), the loop goes on, and ``await task`` never returns.
Loops here wait with ``asyncio.timeout`` (which does not lose a cancellation),
and services end their tasks with :func:`cancel_and_wait`, which cancels again
until the task is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

RECANCEL_S = 0.5  # how long one cancellation is given before the next


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and return once it has ended (its own error is retrieved and
    dropped: a stopping service has no use for it)."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_S)
    if not task.cancelled():
        task.exception()
