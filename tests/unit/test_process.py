"""SupervisedProcess: restart of a killed child (by pid), clean stop, SIGKILL escalation."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from edgesec.process import ProcessError, SupervisedProcess

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_killed_child_is_restarted_and_stop_ends_it() -> None:
    async def scenario() -> None:
        started: list[int] = []
        proc = SupervisedProcess(SLEEPER, "sleeper", min_backoff=0.05,
                                 on_started=started.append)
        await proc.start()
        try:
            first = proc.pid
            assert first is not None and started == [first] and _alive(first)
            os.kill(first, signal.SIGKILL)
            await _until(lambda: proc.pid is not None and proc.pid != first)
            second = proc.pid
            assert proc.restarts == 1 and started == [first, second]
            assert proc.last_exit == -signal.SIGKILL
            assert "running pid" in proc.status()
        finally:
            await proc.stop()
        assert proc.pid is None and not _alive(second)
        assert proc.last_exit == -signal.SIGTERM
        assert "not running" in proc.status()
        await asyncio.sleep(0.3)  # no restart after a deliberate stop
        assert proc.pid is None and proc.restarts == 1

    asyncio.run(scenario())


def test_child_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = ("import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"pathlib.Path({str(ready)!r}).touch(); time.sleep(120)")

    async def scenario() -> None:
        proc = SupervisedProcess([sys.executable, "-c", code], "stubborn", stop_timeout=0.5)
        await proc.start()
        pid = proc.pid
        assert pid is not None
        await _until(ready.exists)
        await proc.stop()
        assert proc.last_exit == -signal.SIGKILL and not _alive(pid)

    asyncio.run(scenario())


def test_restart_backoff_grows() -> None:
    async def scenario() -> None:
        proc = SupervisedProcess([sys.executable, "-c", "raise SystemExit(3)"], "crasher",
                                 min_backoff=0.05, max_backoff=0.2)
        await proc.start()
        try:
            await _until(lambda: proc.restarts >= 3)
            assert proc.last_exit == 3
        finally:
            await proc.stop()
        assert proc.pid is None

    asyncio.run(scenario())


@pytest.mark.parametrize(("name", "mode", "reason"), [
    ("/nonexistent/dnsmasq", None, "not an executable"),
    ("no-such-binary-edgesec-test", None, "not an executable"),
    ("plain-file", 0o644, "not an executable"),
    ("garbage-exe", 0o755, "cannot run"),  # executable bit but no valid format
])
def test_missing_or_broken_binary_is_a_clear_error(tmp_path: Path, name: str, mode: int | None,
                                                   reason: str) -> None:
    binary = name
    if mode is not None:
        path = tmp_path / name
        path.write_bytes(b"\x00\x01not a program")
        path.chmod(mode)
        binary = str(path)

    async def scenario() -> None:
        proc = SupervisedProcess([binary], "dhcp")
        with pytest.raises(ProcessError, match=reason):
            await proc.start()
        assert proc.pid is None

    asyncio.run(scenario())


def test_send_signal_reaches_the_child(tmp_path: Path) -> None:
    marker = tmp_path / "hup"
    code = ("import signal, time, pathlib; "
            f"signal.signal(signal.SIGHUP, lambda *a: pathlib.Path({str(marker)!r}).touch()); "
            f"pathlib.Path({str(marker) + '.ready'!r}).touch(); time.sleep(120)")

    async def scenario() -> None:
        proc = SupervisedProcess([sys.executable, "-c", code], "hupper")
        assert not proc.send_signal(signal.SIGHUP)  # not started yet
        await proc.start()
        try:
            await _until(Path(str(marker) + ".ready").exists)
            assert proc.send_signal(signal.SIGHUP)
            await _until(marker.exists)
        finally:
            await proc.stop()

    asyncio.run(scenario())
