"""Supervised child processes (dnsmasq, hostapd, ...): started, watched and stopped by pid.

A child that exits unexpectedly is restarted with exponential back-off
(reset after it has run for a while).  Stopping sends SIGTERM to the pid we
started, then SIGKILL after a grace period; nothing is ever signalled by name.
A missing binary is a clear error at start, not an endless retry loop.

Children die with the daemon: each one asks the kernel, between fork and
exec, for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a
``kill -9`` of the daemon leaves no orphan holding ports for the next one.

A death is noticed at once: the watcher waits on a pidfd (``pidfd_open``,
readable when the child exits) on the event loop, not on asyncio's
``Process.wait()``, which also waits until every copy of the child's output
pipe is closed, and dnsmasq's lease-hook helper keeps one open while hooks run.

:meth:`SupervisedProcess.health` says ``failed`` for a child that keeps dying
(crash loop), ``degraded`` for one that died recently, ``ok`` otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from edgesec.aiotasks import cancel_and_wait

log = logging.getLogger(__name__)

STABLE_AFTER_S = 10.0
CRASH_WINDOW_S = 60.0  # exits counted for health()
CRASH_LOOP_EXITS = 3  # this many unexpected exits within the window: failed
MAX_LINE = 4096  # longest child output line relayed to the log
PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """The child cannot be started."""


def _die_with_parent(parent: int, sig: int) -> Callable[[], None]:
    """preexec_fn: ``PR_SET_PDEATHSIG``, and exit if the parent is already gone."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
    option, value, zero = ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(int(sig)), \
        ctypes.c_ulong(0)

    def setup() -> None:
        prctl(option, value, zero, zero, zero)
        if os.getppid() != parent:  # died between fork and prctl
            os._exit(1)

    return setup


class _Child:
    """One started child: its Popen, a pidfd watched by the loop, and its output relay."""

    def __init__(self, popen: subprocess.Popen[bytes], name: str,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.loop = loop
        self.exited: asyncio.Future[int] = loop.create_future()
        self.pidfd = os.pidfd_open(popen.pid)
        loop.add_reader(self.pidfd, self._on_exit)
        self.out = popen.stdout
        self._buf = b""
        self._log = logging.getLogger(f"edgesec.child.{name}")
        if self.out is not None:
            os.set_blocking(self.out.fileno(), False)
            loop.add_reader(self.out.fileno(), self._on_output)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def _on_exit(self) -> None:
        code = self.popen.poll()  # readable pidfd: the child exited, this reaps it
        if code is None:
            return
        self.loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        if not self.exited.done():
            self.exited.set_result(code)

    def _on_output(self) -> None:
        assert self.out is not None
        try:
            data = os.read(self.out.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # every writer closed (the child and whatever it forked)
            self._close_output()
            return
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()[-MAX_LINE:]
        for line in lines:
            self._log.debug("%s", line[:MAX_LINE].decode(errors="replace").rstrip())

    def _close_output(self) -> None:
        if self.out is not None:
            self.loop.remove_reader(self.out.fileno())
            self.out.close()
            self.out = None

    def send_signal(self, sig: int) -> None:
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                # through the pidfd: never a recycled pid
                if self.pidfd >= 0:
                    signal.pidfd_send_signal(self.pidfd, sig)
                else:
                    os.kill(self.pid, sig)

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)

    def close(self) -> None:
        """Forget the child's fds (after it exited; output still buffered is dropped)."""
        self._close_output()
        if self.pidfd >= 0:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1


class SupervisedProcess:
    """Run ``argv`` as a child, restart it when it dies, stop it by pid."""

    def __init__(self, argv: Sequence[str], name: str, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, min_backoff: float = 0.1, max_backoff: float = 10.0,
                 on_started: Callable[[int], Awaitable[None] | None] | None = None,
                 stop_timeout: float = 5.0, death_signal: int = signal.SIGTERM) -> None:
        self.argv = list(argv)
        self.name = name
        self.env = env
        self.cwd = cwd
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.on_started = on_started
        self.stop_timeout = stop_timeout
        self.death_signal = death_signal
        self.proc: _Child | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.restart_error = ""
        self.exits: collections.deque[float] = collections.deque(maxlen=CRASH_LOOP_EXITS)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._clock: Callable[[], float] = time.monotonic

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.returncode is None else None

    def status(self) -> str:
        state, why = self.health()
        note = f"; {why}" if state != "ok" else ""
        if self.pid:
            return f"running pid {self.pid} (restarts {self.restarts}{note})"
        return f"not running (last exit {self.last_exit}, restarts {self.restarts}{note})"

    def health(self) -> tuple[str, str]:
        """``("failed", why)`` when crash-looping or not restartable; ``degraded`` after a
        recent unexpected exit; else ``ok`` (the service contract of ``STATUS``)."""
        now = self._clock()
        recent = [t for t in self.exits if now - t <= CRASH_WINDOW_S]
        if self.restart_error:
            return "failed", f"{self.name} cannot be restarted: {self.restart_error}"
        if len(recent) >= CRASH_LOOP_EXITS:
            return "failed", (f"{self.name} crash-looping: {len(recent)} exits in "
                              f"{CRASH_WINDOW_S:.0f} s, last exit {self.last_exit}")
        if self.proc is not None and self.pid is None and not self._stopping:
            return "degraded", f"{self.name} exited ({self.last_exit}); restarting"
        if recent:
            return "degraded", f"{self.name} exited {len(recent)}x in {CRASH_WINDOW_S:.0f} s"
        return "ok", ""

    async def start(self) -> None:
        """Start the child and its watcher; raises :class:`ProcessError` if it cannot run."""
        binary = self.argv[0]
        if not (os.path.isabs(binary) and os.access(binary, os.X_OK)) and not shutil.which(binary):
            raise ProcessError(f"{self.name}: {binary} is not an executable file")
        self._stopping = False
        try:
            await self._spawn()
        except OSError as exc:  # exec format error, permission denied, ...
            raise ProcessError(f"{self.name}: cannot run {binary}: {exc.strerror or exc}") from None
        self._task = asyncio.create_task(self._watch(), name=f"watch-{self.name}")

    async def _spawn(self) -> None:
        env = None if self.env is None else {**os.environ, **self.env}
        popen = subprocess.Popen(
            self.argv, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid(), self.death_signal))
        self.proc = _Child(popen, self.name, asyncio.get_running_loop())
        log.info("%s started: pid %d", self.name, popen.pid)
        if self.on_started is not None:
            result = self.on_started(popen.pid)
            if asyncio.iscoroutine(result):
                await result

    async def _watch(self) -> None:
        backoff = self.min_backoff
        while not self._stopping:
            child = self.proc
            assert child is not None
            started = self._clock()
            code = await child.wait()
            self.last_exit = code
            if self._stopping:
                return
            child.close()
            self.exits.append(self._clock())
            if self._clock() - started > STABLE_AFTER_S:
                backoff = self.min_backoff
            log.warning("%s (pid %d) exited with %s; restarting in %.1fs", self.name,
                        child.pid, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            if self._stopping:
                return
            try:
                await self._spawn()
                self.restarts += 1
                self.restart_error = ""
            except Exception as exc:  # binary removed meanwhile, fork failure...
                self.restart_error = str(exc)  # retried with back-off: the old child's
                log.error("%s: restart failed: %s", self.name, exc)  # wait() returns at once

    async def stop(self) -> None:
        """SIGTERM the child by pid, SIGKILL after ``stop_timeout``; stop watching."""
        self._stopping = True
        await cancel_and_wait(self._task)
        self._task = None
        child = self.proc
        if child is None:
            return
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), self.stop_timeout)
            except TimeoutError:
                log.warning("%s (pid %d) ignored SIGTERM; killing", self.name, child.pid)
                child.send_signal(signal.SIGKILL)
                await child.wait()
        self.last_exit = child.returncode
        child.close()

    def send_signal(self, sig: int) -> bool:
        """Signal the running child (e.g. SIGHUP to reload); False if not running."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        self.proc.send_signal(sig)
        return True
