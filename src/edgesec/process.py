"""Supervised child processes (dnsmasq, hostapd, ...): started, watched and stopped by pid.

A child that exits unexpectedly is restarted with exponential back-off
(reset after it has run for a while).  Stopping sends SIGTERM to the pid we
started, then SIGKILL after a grace period; nothing is ever signalled by name.
A missing binary is a clear error at start, not an endless retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STABLE_AFTER_S = 10.0


class ProcessError(RuntimeError):
    """The child cannot be started."""


class SupervisedProcess:
    """Run ``argv`` as a child, restart it when it dies, stop it by pid."""

    def __init__(self, argv: Sequence[str], name: str, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, min_backoff: float = 0.1, max_backoff: float = 10.0,
                 on_started: Callable[[int], Awaitable[None] | None] | None = None,
                 stop_timeout: float = 5.0) -> None:
        self.argv = list(argv)
        self.name = name
        self.env = env
        self.cwd = cwd
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.on_started = on_started
        self.stop_timeout = stop_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._relay: asyncio.Task[None] | None = None
        self._stopping = False
        self._started = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.returncode is None else None

    def status(self) -> str:
        if self.pid:
            return f"running pid {self.pid} (restarts {self.restarts})"
        return f"not running (last exit {self.last_exit}, restarts {self.restarts})"

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
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=env, cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        log.info("%s started: pid %d", self.name, self.proc.pid)
        self._relay = asyncio.create_task(self._relay_output(self.proc), name=f"log-{self.name}")
        if self.on_started is not None:
            result = self.on_started(self.proc.pid)
            if asyncio.iscoroutine(result):
                await result

    async def _relay_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        child_log = logging.getLogger(f"edgesec.child.{self.name}")
        with contextlib.suppress(Exception):
            async for line in proc.stdout:
                child_log.debug("%s", line.decode(errors="replace").rstrip())

    async def _watch(self) -> None:
        backoff = self.min_backoff
        while not self._stopping:
            assert self.proc is not None
            started = time.monotonic()
            code = await self.proc.wait()
            self.last_exit = code
            if self._stopping:
                return
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff = self.min_backoff
            log.warning("%s (pid %d) exited with %s; restarting in %.1fs", self.name,
                        self.proc.pid, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            if self._stopping:
                return
            try:
                await self._spawn()
                self.restarts += 1
            except Exception as exc:  # binary removed meanwhile, fork failure...
                log.error("%s: restart failed: %s", self.name, exc)

    async def stop(self) -> None:
        """SIGTERM the child by pid, SIGKILL after ``stop_timeout``; stop watching."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning("%s (pid %d) ignored SIGTERM; killing", self.name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        self.last_exit = proc.returncode

    def send_signal(self, sig: int) -> bool:
        """Signal the running child (e.g. SIGHUP to reload); False if not running."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        self.proc.send_signal(sig)
        return True
