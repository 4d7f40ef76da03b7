"""Asyncio client of hostapd's control interface (the wpa_ctrl protocol).

Owns the socket side: a UNIX datagram socket bound to a private path, connected
to ``<ctrl_interface>/<ifname>``; one request per datagram, one reply back.
After ``ATTACH`` hostapd also sends unsolicited events (``<3>AP-STA-CONNECTED
aa:bb:...``) to the socket; those go to the ``on_event`` callback, anything
else is the reply to the pending request.  Requests are serialised, so each
reply belongs to its request.  Also the pure parsers for events and the
STA-FIRST/STA-NEXT listing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgesec.device_status import DeviceStatus

_counter = itertools.count()
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_LEVEL = re.compile(r"<\d+>")


class CtrlError(OSError):
    """The control interface is unreachable, timed out or answered FAIL."""


@dataclass(frozen=True, slots=True)
class StationEvent:
    """A parsed station event: ``status`` 1 connected, 2 disconnected."""

    mac: str
    status: DeviceStatus
    fields: dict[str, str]


def parse_event(text: str) -> StationEvent | None:
    """Parse one unsolicited message; None unless it is AP-STA-(DIS)CONNECTED.

    ``<3>AP-STA-CONNECTED 02:00:00:00:00:01 keyid=dev1`` ->
    StationEvent("02:00:00:00:00:01", 1, {"keyid": "dev1"}).
    """
    text = _LEVEL.sub("", text.strip(), count=1)
    parts = text.split()
    if len(parts) < 2:
        return None
    if parts[0] == "AP-STA-CONNECTED":
        status = DeviceStatus.CONNECTED
    elif parts[0] == "AP-STA-DISCONNECTED":
        status = DeviceStatus.DISCONNECTED
    else:
        return None
    mac = parts[1].lower()
    if not _MAC.fullmatch(mac):
        return None
    fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return StationEvent(mac, status, fields)


def parse_sta_mac(reply: str) -> str | None:
    """The station MAC from a STA/STA-FIRST/STA-NEXT reply (its first line)."""
    first = reply.split("\n", 1)[0].strip().lower()
    return first if _MAC.fullmatch(first) else None


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, owner: WpaCtrl) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.owner._received(data)

    def error_received(self, exc: Exception) -> None:
        self.owner._failed(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._failed(exc or ConnectionResetError("control socket closed"))


class WpaCtrl:
    """One connection to hostapd's control socket ``path``."""

    def __init__(self, path: Path | str, on_event: Callable[[str], None] | None = None,
                 timeout: float = 5.0) -> None:
        self.path = str(path)
        self.on_event = on_event
        self.timeout = timeout
        self._transport: asyncio.DatagramTransport | None = None
        self._local: str | None = None
        self._dir: str | None = None
        self._pending: asyncio.Future[str] | None = None
        self._lock = asyncio.Lock()
        self.attached = False

    async def open(self) -> None:
        """Bind a private socket and connect it to hostapd; raises CtrlError if absent."""
        self.close()
        self._dir = tempfile.mkdtemp(prefix="edgesec-ctrl-")
        os.chmod(self._dir, 0o700)
        self._local = os.path.join(self._dir, f"c{os.getpid()}-{next(_counter)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self._local)
            sock.connect(self.path)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self._cleanup_path()
            raise CtrlError(f"cannot connect to hostapd control socket {self.path}: "
                            f"{exc.strerror or exc}") from None
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Proto(self), sock=sock)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.attached = False
        self._cleanup_path()

    def _cleanup_path(self) -> None:
        if self._local:
            with contextlib.suppress(OSError):
                os.unlink(self._local)
            self._local = None
        if self._dir:
            with contextlib.suppress(OSError):
                os.rmdir(self._dir)
            self._dir = None

    def _received(self, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        if text.startswith("<"):
            if self.on_event is not None:
                self.on_event(text)
            return
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(text)

    def _failed(self, exc: Exception) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(CtrlError(f"control socket {self.path}: {exc}"))

    async def request(self, command: str, timeout: float | None = None) -> str:
        """Send one command and return hostapd's reply text."""
        async with self._lock:
            if self._transport is None:
                raise CtrlError(f"control socket {self.path} is not open")
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            try:
                self._transport.sendto(command.encode())
                async with asyncio.timeout(timeout or self.timeout):
                    return await self._pending
            except TimeoutError:
                raise CtrlError(f"hostapd did not answer {command.split()[0]} "
                                f"within {timeout or self.timeout}s") from None
            except OSError as exc:
                if isinstance(exc, CtrlError):
                    raise
                raise CtrlError(f"control socket {self.path}: {exc}") from None
            finally:
                self._pending = None

    async def command_ok(self, command: str) -> None:
        """Send a command that must answer ``OK``."""
        reply = await self.request(command)
        if reply.strip() != "OK":
            raise CtrlError(f"hostapd answered {reply.strip()!r} to {command!r}")

    async def ping(self) -> bool:
        try:
            return (await self.request("PING")).strip() == "PONG"
        except CtrlError:
            return False

    async def attach(self) -> None:
        await self.command_ok("ATTACH")
        self.attached = True

    async def stations(self) -> list[str]:
        """MACs of all stations (STA-FIRST / STA-NEXT)."""
        macs: list[str] = []
        mac = parse_sta_mac(await self.request("STA-FIRST"))
        while mac is not None and len(macs) < 4096:
            macs.append(mac)
            mac = parse_sta_mac(await self.request(f"STA-NEXT {mac}"))
        return macs
