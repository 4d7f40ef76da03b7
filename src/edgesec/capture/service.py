"""CaptureService: the live capture as a gateway Service (own process).

``CaptureService(settings, interfaces)`` implements the Service protocol of
docs/architecture.md. ``start()`` spawns ``python -m edgesec.capture.worker``
for the interfaces and waits until it reports ready (or raises with the
worker's error, e.g. an unknown interface or a bad filter); a reader task
keeps the latest status line. If the worker dies it is restarted with
back-off (1 s doubling to 30 s). ``stop()`` sends SIGTERM to the pid it
started, waits, then SIGKILL. Capture and decoding never run on the
control-plane event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesec.aiotasks import cancel_and_wait
from edgesec.capture.options import CaptureOptions
from edgesec.restart import Backoff, WorkerReader

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.registry import Registry

log = logging.getLogger(__name__)

BRIDGE_POLL_S = 2.0
RECENT_ERROR_S = 60.0  # a socket error this recent makes capture "degraded"


class CaptureError(RuntimeError):
    """The capture worker could not start."""


def device_bridges(settings: Settings | None) -> list[str]:
    """The configured device bridges that exist now (order kept, no repeats)."""
    names: list[str] = []
    for subnet in settings.interfaces.subnets if settings is not None else ():
        if subnet.bridge not in names and Path("/sys/class/net", subnet.bridge).exists():
            names.append(subnet.bridge)
    return names


def build_capture_service(settings: Settings, registry: Registry | None = None
                          ) -> CaptureService:
    """Gateway factory: capture on ``captureInterfaces``, else the device bridges."""
    return CaptureService(settings)


class CaptureService(WorkerReader):
    """Live capture on ``interfaces`` into the capture DB and middlewares."""

    _what = "capture"
    _spawn_errors = CaptureError

    name = "capture"

    def __init__(self, settings: Settings | None, interfaces: list[str] | None = None, *,
                 options: CaptureOptions | None = None, python: str = sys.executable,
                 prefix: tuple[str, ...] = (), ready_timeout: float = 15.0) -> None:
        if options is None:
            if settings is None:
                raise ValueError("CaptureService needs settings or options")
            options = CaptureOptions.from_settings(settings.capture)
        self.options = options
        self._settings = settings
        self._explicit = interfaces is not None or bool(self.options.capture_interfaces)
        self.interfaces = list(interfaces if interfaces is not None
                               else self.options.capture_interfaces)
        self._python = python
        self._prefix = prefix  # e.g. ("ip", "netns", "exec", NS): must exec, keeping the pid
        self._ready_timeout = ready_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._reconfigure = False
        self._stopping = False
        self._last: dict[str, Any] = {}
        self._restarts = 0
        self._error = ""

    @property
    def pid(self) -> int | None:
        """Pid of the running worker."""
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    def stats(self) -> dict[str, Any]:
        """The worker's latest counters (packets, kernel_drops, own_drops, ...)."""
        return dict(self._last)

    async def _spawn(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._prefix, self._python, "-m", "edgesec.capture.worker",
            "--options", self.options.to_json(),
            *[arg for i in self.interfaces for arg in ("--interface", i)],
            stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self._ready_timeout)
        except TimeoutError:
            await self._kill(proc)
            raise CaptureError("capture worker did not become ready") from None
        msg = json.loads(line) if line.strip() else {}
        if not msg.get("ready"):
            await self._kill(proc)
            raise CaptureError(msg.get("error") or "capture worker exited at start-up")
        self._proc = proc

    async def start(self) -> None:
        """Start the worker; raises CaptureError if it cannot capture.

        Without explicit interfaces the service follows the device bridges:
        bridges created later (VLAN pool subnets appear with their first
        device) are picked up within ``BRIDGE_POLL_S`` by restarting the worker
        on the new set.
        """
        self._stopping = False
        loop = asyncio.get_running_loop()
        if not self._explicit:
            self.interfaces = device_bridges(self._settings)
            self._follower = loop.create_task(self._follow_bridges())
            if not self.interfaces:
                return  # the follower starts the worker when a bridge appears
        if not self.interfaces:
            raise CaptureError("no interfaces to capture on")
        await self._spawn()
        self._error = ""
        self._reader = loop.create_task(self._read_loop())

    async def _follow_bridges(self) -> None:
        while not self._stopping:
            await asyncio.sleep(BRIDGE_POLL_S)
            current = device_bridges(self._settings)
            if not current or current == self.interfaces:
                continue
            log.info("capture: device bridges now %s", ",".join(current))
            self.interfaces = current
            if self._proc is None:
                try:
                    await self._spawn()
                except CaptureError as exc:
                    self._error = str(exc)
                    continue
                self._reader = asyncio.get_running_loop().create_task(self._read_loop())
            else:
                self._reconfigure = True
                await self._kill(self._proc)

    def _on_message(self, msg: Any) -> None:
        self._last = msg

    async def _exited(self, backoff: Backoff) -> bool:
        """An exit we asked for (new options): start the new worker at once."""
        if not self._reconfigure:
            return False
        self._reconfigure = False
        try:
            await self._spawn()
        except CaptureError as exc:
            self._error = str(exc)
            await asyncio.sleep(backoff.delay)
        return True

    def _report(self, error: str) -> None:
        self._error = error

    def _restarted(self) -> None:
        self._restarts += 1

    async def _kill(self, proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def stop(self) -> None:
        """SIGTERM the worker (by its pid), wait for the final flush."""
        self._stopping = True
        await cancel_and_wait(self._follower)
        self._follower = None
        if self._proc is not None:
            await self._kill(self._proc)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5)
            self._reader = None

    def health(self) -> tuple[str, str]:
        """``(state, why)`` for STATUS: failed when the worker is down with an error,
        degraded while storage is refused or after a recent socket error."""
        s = self._last
        if self.pid is None:
            if self._error and not self._stopping:
                return "failed", self._error
            return "ok", ""
        if s.get("storage"):
            return "degraded", s["storage"]
        age = time.time() - float(s.get("last_error_at") or 0)
        if s.get("last_error") and age < RECENT_ERROR_S:
            return "degraded", f"socket error {s['last_error']} {age:.0f} s ago"
        return "ok", ""

    def counters(self) -> dict[str, float]:
        """Captured packets and drops, the kernel's and our own (for metrics)."""
        s = self._last
        return {"packets": s.get("packets", 0), "dropped|by=kernel": s.get("kernel_drops", 0),
                "dropped|by=edgesec": s.get("own_drops", 0),
                "dropped|by=storage": s.get("storage_drops", 0)}

    def status(self) -> str:
        """One line: state, pid, packets and drops (and storage/socket trouble)."""
        s = self._last
        counters = (f"packets {s.get('packets', 0)} kernel_drops {s.get('kernel_drops', 0)} "
                    f"own_drops {s.get('own_drops', 0)}")
        if s.get("storage_drops"):
            counters += f" storage_drops {s['storage_drops']}"
        if s.get("errors"):
            counters += f" socket_errors {s['errors']} (last {s.get('last_error', '')})"
        if self.pid is not None:
            extra = f" restarts {self._restarts}" if self._restarts else ""
            return f"running pid {self.pid} on {','.join(self.interfaces)} {counters}{extra}"
        if self._error:
            return f"failed: {self._error} ({counters})"
        if self._follower is not None and not self._stopping:
            return "waiting for a device bridge to appear"
        return f"stopped ({counters})"
