"""The API service: serves :mod:`edgesec.api.app` on a UNIX socket and, optionally, TCP.

* UNIX stream socket at ``[api] socketPath`` (mode 0660, group ``socketGroup``
  when set): the local access control, like the supervisor's socket.
* TCP at ``[api] address``:``port`` (off while ``port`` is 0): every request
  needs a bearer token; on any address other than loopback only HTTPS is
  served (``certFile``/``keyFile``), so tokens never cross the LAN in clear.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from edgesec import unixsock
from edgesec.api.app import ApiContext, build_app
from edgesec.api.tokens import TokenStore
from edgesec.config import Settings
from edgesec.registry import Registry

log = logging.getLogger(__name__)


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
        self.context: ApiContext | None = None
        self.listening: list[str] = []

    def attach(self, status_lines: Callable[[], list[str]],
               counters: Callable[[], dict[str, dict[str, float]]]) -> None:
        """The gateway's STATUS lines and service counters, read per request."""
        self._status, self._counters = status_lines, counters

    async def start(self) -> None:
        api = self.settings.api
        token_file = api.token_file or Path("/var/lib/edgesec/api-tokens.json")
        self.context = ApiContext(self.settings, self.registry, lambda: self._status(),
                                  lambda: self._counters(), TokenStore(token_file))
        tls = tls_context(self.settings) if api.port else None
        runner = web.AppRunner(build_app(self.context), access_log=None,
                               handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        try:
            if api.socket_path is not None:
                await self._serve_unix(runner, api.socket_path, api.socket_group)
            if api.port:
                site = web.TCPSite(runner, api.address, api.port, ssl_context=tls,
                                   reuse_address=False)
                await site.start()
                self.listening.append(f"{'https' if tls else 'http'}://{api.address}:{api.port}")
        except BaseException:
            await self.stop()
            raise

    async def _serve_unix(self, runner: web.AppRunner, path: Path, group: str) -> None:
        if path.exists():
            if unixsock.answers(path):
                raise ApiError(f"{path}: another process is serving this socket")
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o117)  # created 0660, never briefly wider
        try:
            await web.UnixSite(runner, str(path)).start()
        finally:
            os.umask(old)
        if group:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                raise ApiError(f"[api] socketGroup = {group}: no such group") from None
        os.chmod(path, 0o660)
        self.listening.append(f"unix:{path}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        path = self.settings.api.socket_path
        if path is not None and any(x == f"unix:{path}" for x in self.listening):
            with contextlib.suppress(OSError):
                path.unlink()
        self.listening.clear()

    def status(self) -> str:
        if not self.listening:
            return "stopped"
        ctx = self.context
        subscribers = ctx.sse_clients if ctx else 0
        return f"listening {' '.join(self.listening)} event subscribers {subscribers}"


def build_api_service(settings: Settings, registry: Registry, **_: Any) -> ApiService:
    """Factory for the gateway."""
    return ApiService(settings, registry)
