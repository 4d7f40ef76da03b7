"""Refused requests are logged without letting a client flood the log."""

from __future__ import annotations

import logging

import pytest

from edgesec.ratelog import RateLimitFilter, install
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


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR,
            exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise OSError("boom")
        except OSError:
            import sys
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def test_filter_keys_by_template_and_reports_what_it_dropped() -> None:
    now = [0.0]
    flt = RateLimitFilter(burst=3, window=60.0, clock=lambda: now[0])
    passed = [flt.filter(_record("edgesec.radius", "admission of %s failed", f"mac{i}",
                                 exc=True)) for i in range(1000)]
    assert passed[:3] == [True] * 3 and not any(passed[3:])
    assert flt.suppressed_total == 997
    # another template, another logger, another level: their own budgets
    assert flt.filter(_record("edgesec.radius", "reject %s", "x", level=logging.INFO))
    assert flt.filter(_record("edgesec.gateway", "admission of %s failed", "x"))
    assert flt.filter(_record("edgesec.radius", "admission of %s failed", "x",
                              level=logging.WARNING))
    # debug is never limited
    assert all(flt.filter(_record("edgesec.x", "d", level=logging.DEBUG)) for _ in range(50))
    # the next window: the first record carries the count of what was dropped
    now[0] = 61.0
    rec = _record("edgesec.radius", "admission of %s failed", "macZ")
    assert flt.filter(rec)
    assert rec.getMessage() == ("admission of macZ failed [997 more like this in 60 s were "
                                "not logged]")


def test_filter_forgets_the_oldest_template_beyond_its_bound() -> None:
    flt = RateLimitFilter(burst=1, max_keys=10)
    for i in range(1000):
        flt.filter(_record("edgesec.x", f"line {i}"))  # a template per line: bounded memory
    assert len(flt._keys) == 10


def test_install_limits_every_handler_of_a_logger(tmp_path) -> None:
    logger = logging.getLogger("test.ratelog.install")
    logger.propagate = False
    handler = logging.FileHandler(tmp_path / "log")
    logger.addHandler(handler)
    try:
        install(logger, burst=5)
        install(logger, burst=5)  # idempotent
        for i in range(10_000):
            logger.error("disk full on command %d", i)
        handler.flush()
        assert len((tmp_path / "log").read_text().splitlines()) == 5
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_the_operators_audit_trail_keeps_its_own_budget() -> None:
    flt = RateLimitFilter(burst=1)
    assert all(flt.filter(_record("edgesec.audit", "ACCEPT_MAC %s", str(i),
                                  level=logging.INFO)) for i in range(100))
    # what a device drives is limited, audit or not
    passed = [flt.filter(_record("edgesec.audit.radius", "reject %s", str(i),
                                 level=logging.INFO)) for i in range(100)]
    assert passed.count(True) == 1
