"""edgesec.restart: the back-off policy and one restart step, shared by capture and detect."""

from __future__ import annotations

import asyncio

from edgesec.restart import Backoff, restart_with_backoff


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    b = Backoff(first=0.001, cap=0.004)
    delays = []
    for _ in range(4):
        delays.append(b.delay)
        asyncio.run(b.sleep())
    assert delays == [0.001, 0.002, 0.004, 0.004]
    b.reset()
    assert b.delay == 0.001


def test_a_restart_reports_the_exit_then_starts_a_new_worker() -> None:
    reports: list[str] = []
    spawned: list[int] = []

    async def spawn() -> None:
        spawned.append(1)

    b = Backoff(first=0.001)
    assert asyncio.run(restart_with_backoff("w", 3, b, spawn, RuntimeError, reports.append))
    assert reports == ["worker exited with 3"] and spawned == [1] and b.delay == 0.002


def test_a_restart_that_cannot_start_says_why_and_returns_false() -> None:
    reports: list[str] = []

    async def spawn() -> None:
        raise RuntimeError("no such binary")

    b = Backoff(first=0.001)
    assert not asyncio.run(restart_with_backoff("w", -9, b, spawn, RuntimeError, reports.append))
    assert reports == ["worker exited with -9", "no such binary"]
