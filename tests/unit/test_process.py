"""SupervisedProcess: restart of a killed child (by pid), clean stop, SIGKILL escalation,
prompt death detection, children dying with their parent, crash-loop health."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
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
        # no restart after a deliberate stop: the watcher (the only restarter) is gone and
        # no task is left on the loop that could start the child again
        assert proc._task is None and asyncio.all_tasks() == {asyncio.current_task()}
        assert proc.pid is None and proc.restarts == 1

    asyncio.run(scenario())


@pytest.mark.slow  # waits out real time (deadlines, back-off, idle sampling)
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


@pytest.mark.slow  # waits out real time (deadlines, back-off, idle sampling)
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


def test_death_is_noticed_while_a_grandchild_holds_the_output_pipe(tmp_path: Path) -> None:
    """dnsmasq's lease-hook helper keeps its stdout open after dnsmasq died: the watcher
    must not wait for the pipe (asyncio's Process.wait() does)."""
    grandchild = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, pathlib; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"pathlib.Path({str(grandchild)!r}).write_text(str(p.pid)); "
            "import time; time.sleep(120)")

    async def scenario() -> None:
        proc = SupervisedProcess([sys.executable, "-c", code], "parent", min_backoff=0.05)
        await proc.start()
        try:
            first = proc.pid
            assert first is not None
            await _until(lambda: grandchild.exists() and grandchild.read_text() != "", 30)
            os.kill(first, signal.SIGKILL)
            # well before the grandchild (holding the pipe) ends after 120 s
            await _until(lambda: proc.restarts == 1, 30)
            assert proc.last_exit == -signal.SIGKILL
            assert proc.health()[0] == "degraded"
        finally:
            await proc.stop()
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(grandchild.read_text()), signal.SIGKILL)

    asyncio.run(scenario())


OWNER = """
import asyncio, sys
from edgesec.process import SupervisedProcess

async def main():
    proc = SupervisedProcess([sys.executable, "-c", "import time; time.sleep(120)"], "child")
    await proc.start()
    print(proc.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_children_die_with_the_daemon() -> None:
    """kill -9 of the owner: the kernel sends the child SIGTERM (PR_SET_PDEATHSIG)."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert _alive(child)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30
    while _alive(child):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            raise AssertionError(f"child {child} outlived its parent")
        time.sleep(0.05)


def test_crash_loop_is_reported_failed() -> None:
    async def scenario() -> None:
        proc = SupervisedProcess([sys.executable, "-c", "raise SystemExit(5)"], "crasher",
                                 min_backoff=0.05, max_backoff=0.1)
        assert proc.health()[0] == "ok"  # not started: nothing wrong yet
        await proc.start()
        try:
            await _until(lambda: proc.health()[0] == "failed", 30)
            _state, why = proc.health()
            assert "crash-looping" in why and "last exit 5" in why, why
        finally:
            await proc.stop()
        # a stable child is ok
        steady = SupervisedProcess(SLEEPER, "sleeper")
        await steady.start()
        try:
            assert steady.health() == ("ok", "")
        finally:
            await steady.stop()

    asyncio.run(scenario())
