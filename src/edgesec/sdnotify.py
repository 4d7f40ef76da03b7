"""systemd's notify protocol: one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.

Used for ``Type=notify`` (``READY=1`` once the gateway is up, ``RELOADING=1``,
``STOPPING=1``, ``STATUS=...``) and the watchdog (``WATCHDOG=1`` every half of
``$WATCHDOG_USEC``).  Without ``NOTIFY_SOCKET`` every call is a no-op, so the
daemon runs the same outside systemd.  A socket name starting with ``@`` is an
abstract address (as systemd documents).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages; silent (returns False) when not run by systemd."""

    def __init__(self, address: str | None = None, *, unset_environment: bool = False) -> None:
        """``address`` defaults to ``$NOTIFY_SOCKET``; ``unset_environment`` removes the
        notify variables so children (dnsmasq, hostapd) do not inherit them."""
        address = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        self._watchdog = (os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", ""))
        if unset_environment:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (``ready=1`` becomes ``READY=1``); False if not sent."""
        if not self.address:
            return False
        text = "".join(f"{k.upper()}={str(v).replace(chr(10), ' ')}\n"
                       for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half the timeout), or None if not asked."""
        usec, pid = self._watchdog
        if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
