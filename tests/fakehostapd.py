"""A socket-level stand-in for hostapd's control interface, for unit tests.

:class:`FakeHostapd` binds the UNIX datagram socket ``<ctrl_dir>/<ifname>``
that hostapd would, answers the control commands edgesec sends (PING,
ATTACH/DETACH, STA-FIRST/STA-NEXT, DENY_ACL, DEAUTHENTICATE, RELOAD,
RELOAD_WPA_PSK) one datagram per request, and sends unsolicited events
(``<3>AP-STA-CONNECTED ...``) to attached clients, as ``ctrl_iface.c`` does.
It runs in a thread so a test can drive it while an asyncio loop runs the
service. ``restart()`` drops the socket and its attached clients, as a
restarted hostapd would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path


class FakeHostapd:
    """hostapd's control socket and nothing else; records every command."""

    def __init__(self, ctrl_dir: Path, ifname: str = "wlan0") -> None:
        self.path = Path(ctrl_dir) / ifname
        self.stations: list[str] = []  # what STA-FIRST/STA-NEXT report
        self.deny: set[str] = set()
        self.commands: list[str] = []
        self.attached: set[str] = set()
        # called once the STA-FIRST reply is composed, before it is sent
        self.before_sta_reply: Callable[[], None] | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------
    def start(self) -> FakeHostapd:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.settimeout(0.05)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if sock is not None:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            self.attached.clear()

    def restart(self) -> None:
        """A new hostapd process: a fresh socket, nobody attached."""
        self.stop()
        self.start()

    def __enter__(self) -> FakeHostapd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a test drives ------------------------------------------------------
    def event(self, text: str, level: int = 3) -> int:
        """Send ``<level>text`` to every attached client; how many got it."""
        sock = self._sock
        sent = 0
        with self._lock:
            clients = list(self.attached)
        for addr in clients:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(f"<{level}>{text}".encode(), addr)
                    sent += 1
        return sent

    def associate(self, mac: str, **fields: str) -> int:
        """A station joins: listed by STA-FIRST/NEXT, AP-STA-CONNECTED sent."""
        if mac not in self.stations:
            self.stations.append(mac)
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        return self.event(f"AP-STA-CONNECTED {mac}{extra}")

    def disassociate(self, mac: str) -> int:
        """A station leaves: no longer listed, AP-STA-DISCONNECTED sent."""
        if mac in self.stations:
            self.stations.remove(mac)
        return self.event(f"AP-STA-DISCONNECTED {mac}")

    def saw(self, command: str) -> bool:
        with self._lock:
            return command in self.commands

    # -- the control interface ---------------------------------------------------
    def _serve(self, sock: socket.socket) -> None:
        while self._sock is sock:
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            command = data.decode(errors="replace").strip()
            with self._lock:
                self.commands.append(command)
            reply = self._answer(command, addr)
            if command == "STA-FIRST" and self.before_sta_reply is not None:
                self.before_sta_reply()
            with contextlib.suppress(OSError):
                sock.sendto(reply.encode(), addr)

    def _answer(self, command: str, addr: str) -> str:
        word, _, arg = command.partition(" ")
        if word == "PING":
            return "PONG\n"
        if word == "ATTACH":
            with self._lock:
                self.attached.add(addr)
            return "OK\n"
        if word == "DETACH":
            with self._lock:
                self.attached.discard(addr)
            return "OK\n"
        if word == "STA-FIRST":
            return self._sta(0)
        if word == "STA-NEXT":
            with contextlib.suppress(ValueError):
                return self._sta(self.stations.index(arg.strip()) + 1)
            return "FAIL\n"
        if word == "DENY_ACL":
            verb, _, mac = arg.partition(" ")
            if verb == "ADD_MAC":
                self.deny.add(mac.strip())
                return "OK\n"
            if verb == "DEL_MAC":
                self.deny.discard(mac.strip())
                return "OK\n"
            return "FAIL\n"
        if word in ("DEAUTHENTICATE", "RELOAD", "RELOAD_WPA_PSK"):
            return "OK\n"
        return "UNKNOWN COMMAND\n"

    def _sta(self, index: int) -> str:
        if index >= len(self.stations):
            return ""
        return f"{self.stations[index]}\nflags=[AUTH][ASSOC][AUTHORIZED]\n"




def short_dir(prefix: str = "edgesec-fakeap-") -> Path:
    """A private directory with a short path (UNIX socket paths are limited to 107 bytes)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o700)
    return path
