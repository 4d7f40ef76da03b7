"""The API service: serves :mod:`edgesec.api.app` on a UNIX socket and, optionally, TCP.

* UNIX stream socket at ``[api] socketPath`` (mode 0660, group ``socketGroup``
  when set): the local access control, like the supervisor's socket.
* TCP at ``[api] address``:``port`` (off while ``port`` is 0): every request
  needs a bearer token; on any address other than loopback only HTTPS is
  served (``certFile``/``keyFile``), so tokens never cross the LAN in clear.

The service binds and listens at start (a taken port, a bad certificate, a
missing group stop the start as before), but imports the web server (aiohttp
and the app: ~16 MB resident) only when the first connection
waits on one of its sockets; that connection stays in the kernel's accept queue
and is answered once the server runs. A gateway whose API nobody calls does not
pay for it; the first request after start pays the import (~0.2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import importlib.util
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesec import unixsock
from edgesec.aiotasks import cancel_and_wait
from edgesec.api.tokens import TokenStore
from edgesec.config import Settings
from edgesec.registry import Registry

if TYPE_CHECKING:
    from aiohttp import web

    from edgesec.api.app import ApiContext

log = logging.getLogger(__name__)

BACKLOG = 128  # aiohttp's own default


class ApiError(RuntimeError):
    """The API cannot be served as configured."""


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS for the TCP listener; required on any non-loopback address."""
    api = settings.api
    if api.cert_file is None or api.key_file is None:
        if not ipaddress.ip_address(api.address).is_loopback:
            raise ApiError(f"[api] address = {api.address} is not loopback: set certFile and "
                           "keyFile (plain HTTP would send tokens across the LAN in clear)")
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(api.cert_file, api.key_file)
    return ctx


class ApiService:
    name = "api"

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self._status: Callable[[], list[str]] = list
        self._counters: Callable[[], dict[str, dict[str, float]]] = dict
        self._runner: web.AppRunner | None = None
        self._sockets: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        self._serving: asyncio.Task[None] | None = None
        self._tokens: TokenStore | None = None
        self._started = 0.0
        self.context: ApiContext | None = None
        self.listening: list[str] = []
        self.failure = ""

    def attach(self, status_lines: Callable[[], list[str]],
               counters: Callable[[], dict[str, dict[str, float]]]) -> None:
        """The gateway's STATUS lines and service counters, read per request."""
        self._status, self._counters = status_lines, counters

    async def start(self) -> None:
        api = self.settings.api
        if importlib.util.find_spec("aiohttp") is None:
            raise ApiError("the API needs aiohttp, which is not installed")
        self._tokens = TokenStore(api.token_file or Path("/var/lib/edgesec/api-tokens.json"))
        self._started = time.time()
        tls = tls_context(self.settings) if api.port else None
        try:
            if api.socket_path is not None:
                self._listen_unix(api.socket_path, api.socket_group)
            if api.port:
                self._listen_tcp(api.address, api.port, tls)
        except BaseException:
            await self.stop()
            raise
        loop = asyncio.get_running_loop()
        for sock, _ in self._sockets:
            loop.add_reader(sock.fileno(), self._first_connection)

    def _first_connection(self) -> None:
        """A client waits: stop watching, start the web server on the same sockets."""
        loop = asyncio.get_running_loop()
        for sock, _ in self._sockets:
            loop.remove_reader(sock.fileno())
        if self._serving is None:
            self._serving = loop.create_task(self._serve(), name="api-serve")

    async def _serve(self) -> None:
        from aiohttp import web

        from edgesec.api.app import ApiContext, build_app

        assert self._tokens is not None
        try:
            self.context = ApiContext(self.settings, self.registry, lambda: self._status(),
                                      lambda: self._counters(), self._tokens,
                                      started=self._started)
            runner = web.AppRunner(build_app(self.context), access_log=None,
                                   handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            self._runner = runner
            for sock, tls in self._sockets:
                await web.SockSite(runner, sock, ssl_context=tls).start()
        except Exception as exc:  # never leave clients waiting on a socket nobody serves
            self.failure = f"cannot serve: {exc}"
            log.error("API %s; its sockets are closed", self.failure)
            await self.stop()

    def _listen_unix(self, path: Path, group: str) -> None:
        if path.exists():
            if unixsock.answers(path):
                raise ApiError(f"{path}: another process is serving this socket")
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)  # created 0660, never briefly wider
        try:
            sock.bind(str(path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        self._adopt(sock, None, f"unix:{path}")
        if group:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                raise ApiError(f"[api] socketGroup = {group}: no such group") from None
        os.chmod(path, 0o660)

    def _listen_tcp(self, address: str, port: int, tls: ssl.SSLContext | None) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)  # no SO_REUSEADDR: see docs
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            raise
        self._adopt(sock, tls, f"{'https' if tls else 'http'}://{address}:{port}")

    def _adopt(self, sock: socket.socket, tls: ssl.SSLContext | None, name: str) -> None:
        try:
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sockets.append((sock, tls))
        self.listening.append(name)

    async def stop(self) -> None:
        task, self._serving = self._serving, None
        if task is not asyncio.current_task():  # _serve() stops us itself when it fails
            await cancel_and_wait(task)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        loop = asyncio.get_running_loop()
        for sock, _ in self._sockets:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        path = self.settings.api.socket_path
        if path is not None and any(x == f"unix:{path}" for x in self.listening):
            with contextlib.suppress(OSError):
                path.unlink()
        self.listening.clear()

    @property
    def serving(self) -> bool:
        """Whether the web server runs (it starts on the first connection)."""
        return self._runner is not None

    def health(self) -> tuple[str, str]:
        """``failed`` once the web server could not be started on its sockets."""
        return ("failed", self.failure) if self.failure else ("ok", "")

    def status(self) -> str:
        if not self.listening:
            return "stopped"
        ctx = self.context
        subscribers = ctx.sse_clients if ctx else 0
        return f"listening {' '.join(self.listening)} event subscribers {subscribers}"


def build_api_service(settings: Settings, registry: Registry, **_: Any) -> ApiService:
    """Factory for the gateway."""
    return ApiService(settings, registry)
