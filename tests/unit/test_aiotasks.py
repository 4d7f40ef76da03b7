"""cancel_and_wait ends a task even when one cancellation is lost (edgesec.aiotasks)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from edgesec.aiotasks import cancel_and_wait


async def _stubborn(event: asyncio.Event, rounds: list[int]) -> None:
    """A keep-alive loop of the kind that used to outlive its cancel on Python 3.11."""
    while True:
        rounds.append(1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 0.2)
        event.clear()


async def _lose_one_cancel() -> tuple[asyncio.Task[None], asyncio.Event, list[int]]:
    event, rounds = asyncio.Event(), []
    task = asyncio.create_task(_stubborn(event, rounds))
    await asyncio.sleep(0)  # the task now waits inside wait_for
    event.set()  # its inner wait completes ...
    task.cancel()  # ... in the same loop turn as the cancellation
    return task, event, rounds


def test_one_cancel_can_be_lost_inside_wait_for() -> None:
    """The reason for the helper (CPython gh-86296; 3.12 no longer loses it)."""
    async def main() -> bool:
        task, _, _ = await _lose_one_cancel()
        await asyncio.wait({task}, timeout=1.0)
        still_running = not task.done()
        await cancel_and_wait(task)
        return still_running

    assert asyncio.run(main()) is (sys.version_info < (3, 12))


def test_cancel_and_wait_ends_the_task_anyway() -> None:
    async def main() -> None:
        task, event, rounds = await _lose_one_cancel()
        await asyncio.wait_for(cancel_and_wait(task), 30)
        assert task.done()
        seen = len(rounds)
        event.set()
        await asyncio.sleep(0.3)
        assert len(rounds) == seen  # nothing runs any more

    asyncio.run(main())


def test_cancel_and_wait_takes_none_and_finished_tasks() -> None:
    async def fails() -> None:
        raise RuntimeError("its own error")

    async def main() -> None:
        await cancel_and_wait(None)
        task = asyncio.create_task(fails())
        await asyncio.wait({task})
        await cancel_and_wait(task)  # the error is retrieved, not raised

    asyncio.run(main())
