"""Refused requests are logged without letting a client flood the log."""

from __future__ import annotations

import logging

import pytest

from edgesec.supervisor.commands import CommandTable, Request
from edgesec.supervisor.ratelog import RateLimitedLog


def test_a_burst_is_logged_then_counted_then_summarised(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    logger = logging.getLogger("test.ratelog")
    limited = RateLimitedLog(logger, "bad things", logging.INFO, burst=3, window=10.0,
                             clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.ratelog"):
        for i in range(8):
            limited.log("bad thing %d", i)
        assert [r.getMessage() for r in caplog.records] == [
            "bad thing 0", "bad thing 1", "bad thing 2"]
        now[0] = 111.0
        limited.log("bad thing %d", 8)
    assert [r.getMessage() for r in caplog.records][3:] == [
        "5 more bad things were not logged", "bad thing 8"]


def test_unknown_commands_cannot_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    table = CommandTable()
    with caplog.at_level(logging.INFO, logger="edgesec.supervisor.commands"):
        replies = {table.dispatch(Request(f"NO_SUCH_COMMAND_{i}", ())) for i in range(1000)}
    assert replies == {"FAIL\n"}
    lines = [r for r in caplog.records if "unknown command" in r.getMessage()]
    assert 1 <= len(lines) <= 10


def test_saturated_counts_like_a_dropped_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="t")
    now = [100.0]
    rl = RateLimitedLog(logging.getLogger("t"), "things", logging.INFO, 3, 10.0,
                        clock=lambda: now[0])
    for i in range(5):
        if not rl.saturated():
            rl.log("thing %d", i)
    assert [r.getMessage() for r in caplog.records] == ["thing 0", "thing 1", "thing 2"]
    assert rl.suppressed == 2
    now[0] += 11  # a new window: not saturated, and the summary comes first
    assert not rl.saturated()
    rl.log("thing 5")
    assert [r.getMessage() for r in caplog.records][-2:] == [
        "2 more things were not logged", "thing 5"]
