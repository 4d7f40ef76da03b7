"""The gateway: builds the services the config enables, runs them, stops them cleanly.

Start order follows dependencies (interfaces, firewall, vault, control API,
RADIUS, hostapd, DHCP, mDNS, capture); stop is the reverse.  The control API
(supervisor) is required; any other service that fails to build or start is
logged, reported by ``edgesec ctl STATUS`` and the gateway keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import importlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgesec.config import Settings
from edgesec.detect.commands import QuarantineCommands
from edgesec.events import EventBus
from edgesec.registry import Registry
from edgesec.store import Store
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable, NetworkCommands, Request
from edgesec.supervisor.server import SupervisorServer

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 1.0
BRIDGE_EXPIRY_TICKS = 5  # bridges are checked for expiry every 5 s


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> str: ...


@dataclass(frozen=True)
class ServiceSpec:
    """Where an optional service comes from and which config flag enables it."""

    name: str
    module: str
    factory: str
    enabled: Callable[[Settings], bool]


OPTIONAL_SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("subnets", "edgesec.net.links", "build_subnet_service",
                lambda s: s.system.create_interfaces),
    ServiceSpec("firewall", "edgesec.net.firewall", "build_firewall_service",
                lambda s: s.system.exec_firewall),
    ServiceSpec("radius", "edgesec.access.radius", "build_radius_service",
                lambda s: s.system.exec_radius),
    # execAp decides whether edgesec runs hostapd or attaches to a running one.
    ServiceSpec("hostapd", "edgesec.access.hostapd", "build_hostapd_service",
                lambda s: s.system.exec_ap or bool(s.ap.interface)),
    ServiceSpec("dhcp", "edgesec.dhcp.dnsmasq", "build_dhcp_service",
                lambda s: s.system.exec_dhcp),
    ServiceSpec("mdns", "edgesec.mdns.service", "build_mdns_service",
                lambda s: s.system.exec_mdns_forward),
    ServiceSpec("capture", "edgesec.capture.service", "build_capture_service",
                lambda s: s.system.exec_capture),
    ServiceSpec("detect", "edgesec.detect.service", "build_detect_service",
                lambda s: s.detect.enabled),
)
# Services that must be up before the control API answers (the rest start after it).
EARLY = ("subnets", "firewall")


class Gateway:
    """Owns the registry, the command table and the running services."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus = EventBus()
        self.table = CommandTable()
        self.vault: Any = None
        self._crypt_commands: Any = None
        self.services: list[Service] = []
        self.failed: dict[str, str] = {}
        self._install_crypt()
        self.store = Store(settings.system.connection_db_path)
        self.registry = Registry(settings, self.store, self.bus, vault=self.vault)
        NetworkCommands(self.registry).install(self.table)
        QuarantineCommands(self.registry).install(self.table)
        self.table.register("STATUS", self._status_command, (0,))
        sup = settings.supervisor
        self.supervisor = SupervisorServer(
            self.table, self.bus, sup.supervisor_control_path, sup.supervisor_control_address,
            sup.supervisor_control_port, _control_key(settings))
        self._stop = asyncio.Event()
        self._pidfile: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- building ----------------------------------------------------------------
    def _install_crypt(self) -> None:
        """Crypt commands; without a vault (no passphrase) they answer FAIL."""
        try:
            module = importlib.import_module("edgesec.crypt.service")
            commands = module.build_crypt_commands(self.settings)
        except Exception as exc:  # missing backend, no passphrase, ...
            log.warning("crypt store unavailable: %s (crypt commands answer FAIL)", exc)
            self.failed["crypt"] = str(exc)
            names = frozenset({"PUT_CRYPT", "GET_CRYPT", "GEN_RANDKEY", "GEN_PRIVKEY",
                               "GEN_PUBKEY", "GEN_CERT", "ENCRYPT_BLOB", "DECRYPT_BLOB",
                               "SIGN_BLOB"})
            self.table.register_family(names, lambda _n, _a: proto.FAIL)
            return
        self.vault = getattr(commands, "vault", None)
        self._crypt_commands = commands
        self.table.register_family(commands.names, commands.handle, commands.secret_returning)

    def _build(self, spec: ServiceSpec) -> Service | None:
        if not spec.enabled(self.settings):
            return None
        try:
            factory = getattr(importlib.import_module(spec.module), spec.factory)
            return factory(self.settings, self.registry)
        except Exception as exc:
            log.error("%s service cannot be built: %s", spec.name, exc)
            self.failed[spec.name] = f"cannot be built: {exc}"
            return None

    async def _start_service(self, service: Service) -> None:
        try:
            await service.start()
        except Exception as exc:
            log.error("%s service failed to start: %s", service.name, exc)
            self.failed[service.name] = f"failed to start: {exc}"
            return
        self.services.append(service)
        register = getattr(service, "register_commands", None)
        if register is not None:
            register(self.table)

    # -- running -------------------------------------------------------------------
    async def start(self) -> None:
        self._lock_pidfile()
        system = self.settings.system
        if system.set_ip_forward and not system.create_interfaces:
            # Otherwise the subnet service does it with the interfaces.
            from edgesec.net.links import set_ip_forward

            set_ip_forward()
        specs = OPTIONAL_SERVICES
        for spec in specs:
            if spec.name in EARLY and (svc := self._build(spec)) is not None:
                await self._start_service(svc)
        await self.supervisor.start()
        self.services.append(self.supervisor)
        for spec in specs:
            if spec.name not in EARLY and (svc := self._build(spec)) is not None:
                await self._start_service(svc)
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        log.info("gateway running: %s", ", ".join(s.name for s in self.services))

    async def _housekeeping(self) -> None:
        """Once a second: write pending join times; every few seconds: expire bridges
        and reclaim pool VLANs of devices not seen for ``vlanPoolLifetime``."""
        ticks = 0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            ticks += 1
            try:
                self.registry.flush_join_times()
                if ticks % BRIDGE_EXPIRY_TICKS == 0:
                    self.registry.expire_bridges()
                    self.registry.expire_quarantines()
                    self.registry.reclaim_pool_vlans(self.settings.interfaces.vlan_pool_lifetime)
            except Exception:
                log.exception("registry housekeeping failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for service in reversed(self.services):
            try:
                await asyncio.wait_for(service.stop(), 15)
            except Exception as exc:
                log.error("%s service did not stop cleanly: %s", service.name, exc)
        self.services.clear()
        self.registry.flush_join_times()
        if self._crypt_commands is not None and hasattr(self._crypt_commands, "close"):
            self._crypt_commands.close()
        self.store.close()
        self._release_pidfile()

    async def reload(self) -> None:
        """SIGHUP: every service that can reconcile or reload does so."""
        for service in self.services:
            reload = getattr(service, "reload", None)
            if reload is not None:
                try:
                    result = reload()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("%s reload failed", service.name)
        log.info("reloaded")

    async def run(self) -> None:
        """Start, wait for SIGTERM/SIGINT (SIGHUP reloads), stop."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self.start()
            # Everything built at start-up lives as long as the daemon: keep it out of
            # the collector's scans so pauses stay short on the control path.
            gc.freeze()
            await self._stop.wait()
        finally:
            log.info("stopping")
            await self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    # -- status ---------------------------------------------------------------------
    def status_lines(self) -> list[str]:
        lines = [f"{s.name} ok {s.status()}" for s in self.services]
        lines += [f"{name} failed {why}" for name, why in self.failed.items()]
        return lines

    def _status_command(self, _q: Request) -> str:
        return "".join(line.replace("\n", " ") + "\n" for line in self.status_lines())

    # -- pid file ---------------------------------------------------------------------
    def _lock_pidfile(self) -> None:
        path = self.settings.system.pid_file_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise RuntimeError(f"another edgesec holds {path}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._pidfile = fh

    def _release_pidfile(self) -> None:
        if self._pidfile is None:
            return
        path = Path(self._pidfile.name)
        with contextlib.suppress(OSError):
            path.unlink()
        self._pidfile.close()
        self._pidfile = None


def _control_key(settings: Settings) -> bytes:
    sup = settings.supervisor
    if sup.supervisor_control_key:
        return sup.supervisor_control_key.encode()
    if sup.supervisor_control_key_file is not None:
        path = sup.supervisor_control_key_file
        try:
            return path.read_text().strip().encode()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise RuntimeError(f"[supervisor] supervisorControlKeyFile = '{path}': cannot read: "
                               f"{reason}") from None
    return b""
