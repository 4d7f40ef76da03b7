"""A small supervisor client: one request datagram, one reply (UNIX or UDP)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgesec.supervisor import protocol as proto

DEFAULT_TIMEOUT_S = 5.0


class ClientError(RuntimeError):
    """No (valid) reply from the supervisor."""


class SupervisorClient:
    """Talks to the supervisor over its UNIX socket, or over UDP (optionally authenticated)."""

    def __init__(self, unix_path: Path | str | None = None, udp: tuple[str, int] | None = None,
                 key: bytes = b"", timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if (unix_path is None) == (udp is None):
            raise ValueError("give exactly one of unix_path and udp")
        self.udp = udp
        self.key = key
        self._tmpdir = ""
        if unix_path is not None:
            self.target: str | tuple[str, int] = str(unix_path)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A filesystem address (not an abstract one: those are private to a
            # network namespace, and the daemon may run in another one).
            self._tmpdir = tempfile.mkdtemp(prefix="edgesec-ctl-")
            self.sock.bind(os.path.join(self._tmpdir, "client.sock"))
        else:
            assert udp is not None  # exactly one of the two, checked above
            self.target = udp
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> SupervisorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, command: str) -> str:
        """Send ``command`` and return the reply text."""
        if self.key:
            data, nonce = proto.sign_request(self.key, command)
        else:
            data, nonce = command.encode(), ""
        try:
            self.sock.sendto(data, self.target)
            reply = self.sock.recv(4 * 1024 * 1024)
        except TimeoutError:
            raise ClientError(f"no reply from the supervisor at {self.target}") from None
        except OSError as exc:
            raise ClientError(f"cannot reach the supervisor at {self.target}: "
                              f"{exc.strerror or exc}") from None
        if self.key:
            try:
                return proto.verify_reply(self.key, nonce, reply)
            except proto.ProtocolError as exc:
                raise ClientError(str(exc)) from None
        return reply.decode("utf-8", "replace")

    def events(self) -> Iterator[str]:
        """Subscribe and yield event lines forever."""
        reply = self.request("SUBSCRIBE_EVENTS")
        if reply != proto.OK:
            raise ClientError(f"SUBSCRIBE_EVENTS answered {reply.strip()!r}")
        self.sock.settimeout(None)
        while True:
            data = self.sock.recv(65536)
            yield data.decode("utf-8", "replace").rstrip("\n")


def default_socket() -> str:
    return os.environ.get("EDGESEC_SOCKET", "/run/edgesec/edgesec.sock")
