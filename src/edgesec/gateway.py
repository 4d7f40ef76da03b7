"""The gateway: builds the services the config enables, runs them, stops them cleanly.

Start order follows dependencies (interfaces, firewall, vault, control API,
RADIUS, hostapd, DHCP, mDNS, capture); stop is the reverse.  The control API
(supervisor) is required, and so are the enforcing services the config enables
and those of ``[system] requireServices`` (:mod:`edgesec.failclosed`): when one
fails to build or start, the gateway stops what started, leaves IPv4
forwarding off and ``edgesec run`` exits non-zero.  Forwarding is switched on
only after the interfaces and the firewall table are in place.  Any other
service that fails is logged, reported by ``edgesec ctl STATUS`` and the
gateway keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import inspect
import logging
import os
import signal
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, runtime_checkable

from edgesec import memtrim, statelock
from edgesec.config import Settings
from edgesec.detect.commands import QuarantineCommands
from edgesec.events import EventBus
from edgesec.failclosed import (
    enable_forwarding,
    hold_forwarding_off,
    refuse_if_missing,
    required_services,
)
from edgesec.registry import Registry
from edgesec.sdnotify import Notifier
from edgesec.store import Store
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable, NetworkCommands, Request
from edgesec.supervisor.server import SupervisorServer

if TYPE_CHECKING:
    from edgesec.crypt.commands import CryptCommands
    from edgesec.crypt.vault import Vault

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 1.0
BRIDGE_EXPIRY_TICKS = 5  # bridges are checked for expiry every 5 s


class Service(Protocol):
    """What the gateway runs.  A service may also implement any of the optional
    hooks below (each a ``runtime_checkable`` protocol the gateway tests with
    ``isinstance``): :class:`HasHealth`, :class:`Reloadable`, :class:`HasCounters`,
    :class:`HasCommands`, :class:`Attachable`."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> str: ...


@runtime_checkable
class HasHealth(Protocol):
    """``(state, why)`` with state ``"ok"``, ``"degraded"`` or ``"failed"`` (a service
    without it is always ok), shown by STATUS."""

    def health(self) -> tuple[str, str]: ...


@runtime_checkable
class Reloadable(Protocol):
    """Apply a re-read configuration live (SIGHUP); may return an awaitable."""

    def reload(self, settings: Settings) -> object: ...


@runtime_checkable
class HasCounters(Protocol):
    """The service's own monotonic counters (for metrics)."""

    def counters(self) -> Mapping[str, float]: ...


@runtime_checkable
class HasCommands(Protocol):
    """Adds supervisor commands once the service has started."""

    def register_commands(self, table: CommandTable) -> None: ...


@runtime_checkable
class Attachable(Protocol):
    """Reads the gateway's STATUS lines and service counters per request (the API)."""

    def attach(self, status_lines: Callable[[], list[str]],
               counters: Callable[[], dict[str, dict[str, float]]]) -> None: ...


HEALTH_STATES = ("ok", "degraded", "failed")
STOP_BUDGET_S = 1.8  # SIGTERM -> exit within 2 s, whatever state the services are in


def service_health(service: object) -> tuple[str, str]:
    """``service.health()`` or ``("ok", "")``; a broken hook is reported as failed."""
    if not isinstance(service, HasHealth):
        return "ok", ""
    try:
        state, why = service.health()
    except Exception as exc:
        return "failed", f"health check raised {exc!r}"
    return (state if state in HEALTH_STATES else "failed"), str(why)


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
    ServiceSpec("api", "edgesec.api.service", "build_api_service",
                lambda s: s.api.socket_path is not None or s.api.port != 0),
)
# Services that must be up before the control API answers (the rest start after it).
EARLY = ("subnets", "firewall")


class Gateway:
    """Owns the registry, the command table and the running services."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Before anything is opened: state files are private, and the state is ours alone.
        os.umask(statelock.STATE_UMASK)
        self._pidfile: IO[str] | None = None
        self._lock_pidfile()
        try:
            self._state_locks = statelock.acquire(statelock.state_paths(settings))
            self.store = Store(settings.system.connection_db_path)  # refuses a corrupt DB
        except Exception:
            self._release_pidfile()
            raise
        statelock.warn_open_directories(
            p for label, p in statelock.state_paths(settings) if "Db" in label)
        self.bus = EventBus()
        self.table = CommandTable()
        self.vault: Vault | None = None
        self._crypt_commands: CryptCommands | None = None
        self.services: list[Service] = []
        self.failed: dict[str, str] = {}
        self._install_crypt()
        self.registry = Registry(settings, self.store, self.bus, vault=self.vault)
        NetworkCommands(self.registry).install(self.table)
        QuarantineCommands(self.registry).install(self.table)
        self.table.register("STATUS", self._status_command, (0,))
        sup = settings.supervisor
        self.supervisor = SupervisorServer(
            self.table, self.bus, sup.supervisor_control_path, sup.supervisor_control_address,
            sup.supervisor_control_port, _control_key(settings),
            allow_plain_udp=sup.allow_unauthenticated_udp)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._forwarding_by_us = False
        self._reload_lock = asyncio.Lock()
        self.notifier = Notifier(unset_environment=True)

    # -- building ----------------------------------------------------------------
    def _install_crypt(self) -> None:
        """Crypt commands; without a vault (no passphrase) they answer FAIL."""
        try:
            from edgesec.crypt.service import build_crypt_commands

            commands = build_crypt_commands(self.settings)
        except Exception as exc:  # missing backend, no passphrase, ...
            log.warning("crypt store unavailable: %s (crypt commands answer FAIL)", exc)
            self.failed["crypt"] = str(exc)
            names = frozenset({"PUT_CRYPT", "GET_CRYPT", "GEN_RANDKEY", "GEN_PRIVKEY",
                               "GEN_PUBKEY", "GEN_CERT", "ENCRYPT_BLOB", "DECRYPT_BLOB",
                               "SIGN_BLOB"})
            self.table.register_family(names, lambda _n, _a: proto.FAIL)
            return
        self.vault = commands.vault
        self._crypt_commands = commands
        self.table.register_family(commands.names, commands.handle, commands.secret_returning)

    def _build(self, spec: ServiceSpec) -> Service | None:
        if not spec.enabled(self.settings):
            return None
        try:
            factory: Callable[[Settings, Registry], Service] = getattr(
                importlib.import_module(spec.module), spec.factory)
            return factory(self.settings, self.registry)
        except Exception as exc:
            log.error("%s service cannot be built: %s", spec.name, exc)
            self.failed[spec.name] = f"cannot be built: {exc}"
            return None

    async def _start_service(self, service: Service) -> None:
        if isinstance(service, Attachable):  # the API reads STATUS and counters per request
            service.attach(self.status_lines, self.service_counters)
        try:
            await service.start()
        except asyncio.CancelledError:  # SIGTERM during start-up: undo what it began
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(service.stop()), 1.0)
            raise
        except Exception as exc:
            log.error("%s service failed to start: %s", service.name, exc)
            self.failed[service.name] = f"failed to start: {exc}"
            return
        self.services.append(service)
        if isinstance(service, HasCommands):
            service.register_commands(self.table)

    # -- running -------------------------------------------------------------------
    async def start(self) -> None:
        self._lock_pidfile()
        specs = OPTIONAL_SERVICES
        required = required_services(self.settings,
                                     {s.name for s in specs if s.enabled(self.settings)})
        hold_forwarding_off(self.settings)
        for spec in specs:
            if spec.name in EARLY and (svc := self._build(spec)) is not None:
                await self._start_service(svc)
        # fail closed: no forwarding, no control API without interfaces and firewall
        refuse_if_missing(required & set(EARLY), self.failed, self.settings)
        self._forwarding_by_us = enable_forwarding(self.settings)
        await self.supervisor.start()
        self.services.append(self.supervisor)
        for spec in specs:
            if spec.name not in EARLY and (svc := self._build(spec)) is not None:
                await self._start_service(svc)
        refuse_if_missing(required, self.failed, self.settings)
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
            except sqlite3.OperationalError as exc:  # disk full: one line, rate-limited
                log.error("registry housekeeping failed: %s", exc)
            except Exception:
                log.exception("registry housekeeping failed")

    async def stop(self) -> None:
        """Stop services in reverse order within :data:`STOP_BUDGET_S` in total."""
        if self._forwarding_by_us:  # before the firewall table goes away
            from edgesec.net.links import set_ip_forward

            with contextlib.suppress(OSError):
                set_ip_forward(on=False)
            self._forwarding_by_us = False
        for task in self._tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_BUDGET_S
        for service in reversed(self.services):
            # every service gets a share of what is left, at least 0.2 s
            left = max(0.2, (deadline - loop.time()) / 2)
            try:
                await asyncio.wait_for(service.stop(), left)
            except TimeoutError:
                log.error("%s service did not stop within %.1fs; abandoned", service.name, left)
            except Exception as exc:
                log.error("%s service did not stop cleanly: %s", service.name, exc)
        self.services.clear()
        self.registry.flush_join_times()
        if self._crypt_commands is not None:
            self._crypt_commands.close()
        self.store.close()
        self._release_pidfile()
        self._state_locks.release()
        log.info("stopped")

    async def reload(self) -> None:
        """SIGHUP: re-read the config; apply what can change live, name what cannot.

        A config that does not load (or a service that rejects it) leaves the
        running configuration in place.
        """
        async with self._reload_lock:
            self.notifier.send(reloading=1, status="reloading the configuration")
            try:
                await self._reload()
            finally:
                self.notifier.send(ready=1, status=self.summary())

    async def _reload(self) -> None:
        from edgesec.config import ConfigError, load_settings
        from edgesec.reload import affected, changed_keys, restart_needed, validate

        path = self.settings.path
        if path is None:
            log.warning("reload: no config file to re-read; services re-check only")
            new = self.settings
        else:
            try:
                new = load_settings(path)
                validate(new)
            except (ConfigError, ValueError) as exc:
                log.error("reload refused, keeping the running configuration: %s", exc)
                return
        changes = changed_keys(self.settings, new)
        for what in restart_needed(changes):
            log.warning("reload: %s changed: not applied, needs a restart of edgesec", what)
        self.settings = new
        self.registry.update_settings(new)
        touched = affected(changes)
        for service in list(self.services):
            try:
                result: object = None
                if isinstance(service, Reloadable):
                    result = service.reload(new)
                elif service.name in touched:
                    result = self._restart_service(service)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.error("reload: %s could not apply the new configuration: %s",
                          service.name, exc)
        applied = ", ".join(f"[{s}]" for s in changes) or "no changes"
        log.info("reloaded %s (%s)", path, applied)

    async def _restart_service(self, old: Service) -> None:
        """Rebuild ``old`` from the new settings and swap it in (same stop position)."""
        spec = next((s for s in OPTIONAL_SERVICES if s.name == old.name), None)
        if spec is None:
            return
        log.info("reload: restarting the %s service on the new configuration", old.name)
        index = self.services.index(old)
        try:
            await asyncio.wait_for(old.stop(), 5)
        finally:
            self.services.remove(old)
        self.failed.pop(old.name, None)
        new = self._build(spec)
        if new is None:
            return
        await self._start_service(new)
        if new in self.services:
            self.services.remove(new)
            self.services.insert(index, new)

    async def run(self) -> None:
        """Start, wait for SIGTERM/SIGINT (SIGHUP reloads), stop.

        Start-up runs as a task so that a SIGTERM during it stops at once; with
        ``$NOTIFY_SOCKET`` (systemd ``Type=notify``) READY=1 is sent once the
        services are up and the control socket answers.
        """
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        stopping = asyncio.ensure_future(self._stop.wait())
        starting = asyncio.ensure_future(self.start())
        try:
            self.notifier.send(status="starting")
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start-up raises here
                # Everything built at start-up lives as long as the daemon: keep it out of
                # the collector's scans so pauses stay short on the control path; give
                # the heap start-up freed back to the kernel (idle footprint).
                memtrim.settle()
                self.notifier.send(ready=1, status=self.summary())
                self._start_watchdog()
                await stopping
        finally:
            log.info("stopping")
            self.notifier.send(stopping=1, status="stopping")
            for fut in (starting, stopping):
                if not fut.done():
                    fut.cancel()
                    with contextlib.suppress(BaseException):
                        await fut
            await self.stop()
            self.notifier.close()

    def _start_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return

        async def ping() -> None:
            while True:
                self.notifier.send(watchdog=1)
                await asyncio.sleep(interval)

        self._tasks.append(asyncio.create_task(ping(), name="watchdog"))

    def summary(self) -> str:
        """One line for systemd's STATUS=: how many services are ok, degraded, failed."""
        named = [(s.name, service_health(s)[0]) for s in self.services]
        named += [(name, "failed") for name in self.failed]
        parts = []
        for state in HEALTH_STATES:
            names = [n for n, st in named if st == state]
            if names:
                parts.append(f"{len(names)} {state}" if state == "ok"
                             else f"{len(names)} {state} ({' '.join(names)})")
        return "running: " + ", ".join(parts)

    # -- status ---------------------------------------------------------------------
    def status_lines(self) -> list[str]:
        lines = []
        for s in self.services:
            state, why = service_health(s)
            if state == "ok":  # the original form: clients parse "<name> ok <status>"
                lines.append(f"{s.name} ok {s.status()}")
            else:
                lines.append(f"{s.name} {state} {why}; {s.status()}")
        lines += [f"{name} failed {why}" for name, why in self.failed.items()]
        return lines

    def service_counters(self) -> dict[str, dict[str, float]]:
        """Each running service's own monotonic counters (for metrics)."""
        out: dict[str, dict[str, float]] = {}
        for service in self.services:
            if isinstance(service, HasCounters):
                out[service.name] = dict(service.counters())
        return out

    def _status_command(self, _q: Request) -> str:
        return "".join(line.replace("\n", " ") + "\n" for line in self.status_lines())

    # -- pid file ---------------------------------------------------------------------
    def _lock_pidfile(self) -> None:
        path = self.settings.system.pid_file_path
        if path is None or self._pidfile is not None:  # taken in __init__, before start()
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
