"""The hostapd service: writes its files, runs it (supervised, by pid) or attaches to
a running one, follows its control interface into the registry, and applies
registry changes to connected stations.

Owns: file writing (via :mod:`hostapd_conf` / :mod:`psk_file`), the
SupervisedProcess of hostapd (``execAp``), a command connection and an attached
event connection (:mod:`wpa_ctrl`) with a keep-alive that re-attaches after a
hostapd restart and re-syncs the station list, and the reactions to registry
events: a device that is denied, loses or changes its passphrase, or moves VLAN
is dropped (``DENY_ACL ADD_MAC`` + ``DEAUTHENTICATE`` + ``DENY_ACL DEL_MAC``;
denied devices stay on the deny list); with the file backend the PSK file is
rewritten and ``RELOAD_WPA_PSK`` sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesec.access import psk_file
from edgesec.access.hostapd_conf import render_hostapd_conf, render_vlan_file
from edgesec.access.wpa_ctrl import CtrlError, WpaCtrl, parse_event
from edgesec.aiotasks import cancel_and_wait
from edgesec.atomic import write_atomic
from edgesec.device_status import DeviceStatus
from edgesec.events import DeviceChanged, Event
from edgesec.process import SupervisedProcess

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.registry import Registry

log = logging.getLogger(__name__)

STATUS_CONNECTED, STATUS_DISCONNECTED = DeviceStatus.CONNECTED, DeviceStatus.DISCONNECTED
ATTACH_MIN_BACKOFF_S = 0.2
ATTACH_MAX_BACKOFF_S = 5.0
ATTACH_WARN_EVERY_S = 300.0  # an absent hostapd is logged once, then every 5 minutes


def _need(path: Path | None, key: str) -> Path:
    """An ``[ap]`` path hostapd cannot run without; an empty key is refused by name."""
    if path is None:
        raise ValueError(f"[ap] {key} is empty: the hostapd service needs this path")
    return path


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically and durably replace ``path`` (secrets inside: owner-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode)


class HostapdService:
    """Service protocol: ``start``/``stop``/``status``; plus :meth:`disconnect`."""

    name = "hostapd"

    def __init__(self, settings: Settings, registry: Registry, *,
                 extra: Mapping[str, str] | None = None,
                 ping_interval: float = 1.0,
                 argv_prefix: list[str] | None = None) -> None:
        self.settings = settings
        self.registry = registry
        ap = settings.ap
        if not ap.interface:
            raise ValueError("[ap] interface is empty: the hostapd service needs an interface")
        self.backend = ap.psk_backend or "radius"
        self.extra = dict(extra or {})
        self.ctrl_path = _need(ap.ctrl_interface, "ctrlInterface") / ap.interface
        self.ping_interval = ping_interval
        self.argv_prefix = list(argv_prefix or [])  # e.g. ["ip", "netns", "exec", ns]
        self.process: SupervisedProcess | None = None
        self.cmd: WpaCtrl | None = None
        self.mon: WpaCtrl | None = None
        self.events_seen = 0
        self.attaches = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._reattach = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Control-interface actions run in order per key (a MAC, or "psk-file"): a deny
        # and the undeny of a quick re-accept can never interleave. Tasks are kept
        # until done (asyncio holds only weak references) and failures are logged.
        self._actions: set[asyncio.Task[Any]] = set()
        self._last_action: dict[str, asyncio.Task[Any]] = {}
        self._psk_text = ""
        self._tickets_seen: frozenset[str] = frozenset()
        self._attached = asyncio.Event()
        self._events_during_resync: set[str] | None = None
        self.attach_error = "not tried yet"
        self._attach_failures = 0
        self._next_warning = 0.0

    # -- files -------------------------------------------------------------------------
    def _psk_entries(self) -> list[psk_file.PskEntry]:
        sysset = self.settings.system
        return psk_file.entries_from_registry(
            self.registry.devices(), self.registry.tickets(),
            default_psk=self.settings.ap.wpa_passphrase,
            allow_all=sysset.allow_all_connections,
            default_vlan=sysset.default_open_vlan_id, now=time.time())

    def render(self) -> tuple[str, str, str]:
        """(hostapd.conf, vlan file, psk file or "") as they would be written."""
        psk_text, items = "", []
        if self.backend == "file":
            entries = self._psk_entries()
            psk_text = psk_file.render_wpa_psk_file(entries)
            items = psk_file.backend_items(self.settings, entries)
        conf = render_hostapd_conf(self.settings, backend=self.backend, backend_items=items,
                                   extra=self.extra)
        return conf, render_vlan_file(self.settings), psk_text

    def write_files(self) -> None:
        conf, vlan, psk_text = self.render()
        ap = self.settings.ap
        _write(_need(ap.vlan_file, "vlanFile"), vlan, 0o644)
        if self.backend == "file":
            _write(_need(ap.wpa_psk_file, "wpaPskFile"), psk_text)
            self._psk_text = psk_text
        _write(_need(ap.ap_file_path, "apFilePath"), conf)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.write_files()
        self._unsubscribe = self.registry.bus.subscribe(self._on_registry_event)
        if self.settings.system.exec_ap:
            ap = self.settings.ap
            argv = [*self.argv_prefix, str(_need(ap.ap_bin_path, "apBinPath"))]
            if ap.ap_log_path:
                argv += ["-f", str(ap.ap_log_path)]
            argv.append(str(ap.ap_file_path))
            self.process = SupervisedProcess(argv, "hostapd", on_started=self._on_started,
                                             stop_timeout=1.0)
            # our own child needs a moment to open its control socket: no warning for that
            self._next_warning = time.monotonic() + 5.0
            await self.process.start()
        # Attaching happens in the background (keep-alive task) so an absent or slow
        # hostapd never holds up the services after it (DHCP, mDNS, ...).
        self._task = asyncio.create_task(self._keepalive(), name="hostapd-ctrl")

    async def wait_attached(self, timeout: float) -> bool:
        """Wait until the control interface is attached; False after ``timeout``."""
        try:
            await asyncio.wait_for(self._attached.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for action in list(self._actions):
            action.cancel()
        await cancel_and_wait(self._task)
        self._task = None
        self._close_ctrl()
        if self.process is not None:
            await self.process.stop()
            self.process = None

    async def reload(self, settings: Settings) -> None:
        """SIGHUP: take the new ``[interfaces]`` (the VLAN file maps VLANs to bridges).

        Other sections (``[ap]``, ``[radius]``) need a restart and are kept.  When
        the files change, our child gets SIGHUP (hostapd re-reads its config);
        an external hostapd is asked to ``RELOAD``.
        """
        before = self.render()
        self.settings = dataclasses.replace(self.settings, interfaces=settings.interfaces)
        if self.render() == before:
            return
        self.write_files()
        if self.process is not None and self.process.send_signal(signal.SIGHUP):
            log.info("hostapd: VLAN file rewritten; hostapd reloads it (SIGHUP)")
        elif self.cmd is not None:
            with contextlib.suppress(CtrlError):
                await self.cmd.request("RELOAD")
            log.info("hostapd: VLAN file rewritten; asked hostapd to RELOAD")

    def health(self) -> tuple[str, str]:
        """Our hostapd child's crash loop: failed; not attached: degraded (stations are
        neither followed nor dropped)."""
        if self.process is not None and (child := self.process.health())[0] == "failed":
            return child
        if self.mon is not None and self.mon.attached:
            return "ok", ""
        return "degraded", f"not attached to {self.ctrl_path}: {self.attach_error}"

    def status(self) -> str:
        proc = self.process.status() if self.process else "external"
        att = "attached" if self.mon is not None and self.mon.attached else "not attached"
        return f"{proc}, {att} to {self.ctrl_path}, {self.events_seen} station events"

    # -- control interface -------------------------------------------------------------
    def _on_started(self, pid: int) -> None:
        log.info("hostapd: started pid %d; will attach to %s", pid, self.ctrl_path)
        self._reattach.set()

    def _close_ctrl(self) -> None:
        for c in (self.cmd, self.mon):
            if c is not None:
                c.close()
        self.cmd = self.mon = None
        self._attached.clear()

    async def _attach(self) -> None:
        """One attempt: open both connections, ATTACH, then re-sync statuses and deny list."""
        cmd, mon = WpaCtrl(self.ctrl_path), WpaCtrl(self.ctrl_path, on_event=self._on_event)
        try:
            await cmd.open()
            await mon.open()
            if not await cmd.ping():
                raise CtrlError("no PONG")
            await mon.attach()
        except BaseException:
            cmd.close()
            mon.close()
            raise
        self._close_ctrl()  # the old connections (if any) only now: no window without one
        self.cmd, self.mon = cmd, mon
        self.attaches += 1
        if self._attach_failures:
            log.info("hostapd: attached to %s after %d failed attempts", self.ctrl_path,
                     self._attach_failures)
        else:
            log.info("hostapd: attached to %s", self.ctrl_path)
        self._attach_failures = 0
        self._next_warning = 0.0
        self.attach_error = ""
        await self._resync()
        self._attached.set()

    def _attach_failed(self, exc: Exception) -> None:
        """Record a failed attempt; warn on the first, then at most every few minutes."""
        self._close_ctrl()
        self.attach_error = str(exc)
        self._attach_failures += 1
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + ATTACH_WARN_EVERY_S
            log.warning("hostapd: not attached to %s (%s); retrying in the background "
                        "(%d attempts so far; next warning in %.0f s at the earliest)",
                        self.ctrl_path, exc, self._attach_failures, ATTACH_WARN_EVERY_S)
        else:
            log.debug("hostapd: attach attempt %d failed: %s", self._attach_failures, exc)

    async def _resync(self) -> None:
        """After (re)attaching: denied devices onto the deny list, statuses from STA list.

        A station event that arrives while the list is being read is newer than the
        list: the MACs it names are left as the event set them.
        """
        assert self.cmd is not None
        for dev in self.registry.devices():
            if not dev.allow:
                with contextlib.suppress(CtrlError):
                    await self.cmd.command_ok(f"DENY_ACL ADD_MAC {dev.mac}")
        self._events_during_resync = set()
        try:
            present = set(await self.cmd.stations())
            newer = self._events_during_resync
        finally:
            self._events_during_resync = None
        for dev in self.registry.devices():
            if dev.mac in newer:
                continue
            if dev.mac in present and dev.status != STATUS_CONNECTED:
                self.registry.set_status(dev.mac, STATUS_CONNECTED)
            elif dev.mac not in present and dev.status == STATUS_CONNECTED:
                self.registry.set_status(dev.mac, STATUS_DISCONNECTED)

    async def _keepalive(self) -> None:
        """Attach (with back-off while hostapd is absent), then PING the attached
        connection and re-attach when hostapd went away or restarted."""
        backoff = ATTACH_MIN_BACKOFF_S
        while True:
            try:
                alive = self.mon is not None and self.mon.attached and await self.mon.ping()
                if not alive:
                    await self._attach()
                    backoff = ATTACH_MIN_BACKOFF_S
                elif self.backend == "file":
                    await self._refresh_psk_file()
            except CtrlError as exc:
                self._attach_failed(exc)
                backoff = min(backoff * 2, ATTACH_MAX_BACKOFF_S)
            except Exception:
                log.exception("hostapd: keep-alive failed")
            attached = self.mon is not None and self.mon.attached
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ping_interval if attached else backoff):
                    await self._reattach.wait()
            if self._reattach.is_set():
                # a restart of our child: its new socket appears within moments
                self._reattach.clear()
                backoff = ATTACH_MIN_BACKOFF_S

    def _on_event(self, text: str) -> None:
        ev = parse_event(text)
        if ev is None:
            return
        self.events_seen += 1
        if self._events_during_resync is not None:
            self._events_during_resync.add(ev.mac)
        log.info("hostapd: %s %s", ev.status.name.lower(), ev.mac)
        try:
            self.registry.set_status(ev.mac, ev.status)
        except Exception:
            log.exception("hostapd: recording status of %s failed", ev.mac)
        keyid = ev.fields.get("keyid", "")
        if ev.status == STATUS_CONNECTED and keyid.startswith("ticket-"):
            self._spawn(self._bind_ticket(ev.mac, keyid), ev.mac)

    # -- registry -> hostapd -----------------------------------------------------------
    def _on_registry_event(self, event: Event) -> None:
        if not isinstance(event, DeviceChanged):
            return
        dev = event.new
        if dev is None:
            if event.old is not None:
                self._forget(event.mac)
            return
        if event.old is None:
            if not dev.allow:  # a record created denied: keep it out too
                self._spawn(self.deny(dev.mac), dev.mac)
            return
        was = event.old
        if (was.allow, was.psk, was.vlanid) == (dev.allow, dev.psk, dev.vlanid):
            return
        if self.backend == "file":
            self._spawn(self._refresh_psk_file(), PSK_FILE_KEY)
        if not dev.allow:
            self._spawn(self.deny(dev.mac), dev.mac)
        else:
            if not was.allow:
                self._spawn(self._undeny(dev.mac), dev.mac)
            self._spawn(self.disconnect(dev.mac), dev.mac)

    def _forget(self, mac: str) -> None:
        """A removed device: drop it (it re-authenticates as a stranger) and take it off
        the deny list, which held it only while its record said so."""
        if self.backend == "file":
            self._spawn(self._refresh_psk_file(), PSK_FILE_KEY)
        self._spawn(self.disconnect(mac), mac)

    def _spawn(self, coro: Coroutine[Any, Any, object], key: str) -> None:
        """Run ``coro`` on the service's loop after every earlier action of ``key``."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._enqueue(coro, key)
        else:
            loop.call_soon_threadsafe(self._enqueue, coro, key)

    def _enqueue(self, coro: Coroutine[Any, Any, object], key: str) -> None:
        assert self._loop is not None
        task = self._loop.create_task(_after(self._last_action.get(key), coro))
        self._last_action[key] = task
        self._actions.add(task)
        task.add_done_callback(lambda t: self._action_done(t, key))

    def _action_done(self, task: asyncio.Task[Any], key: str) -> None:
        self._actions.discard(task)
        if self._last_action.get(key) is task:
            del self._last_action[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("hostapd: action for %s failed: %s", key, task.exception())

    async def disconnect(self, mac: str) -> bool:
        """Make hostapd drop ``mac`` so it re-authenticates under the current policy.

        A deny-list add (which drops the station) followed by a removal, as the
        original did.
        """
        if not await self.deny(mac):
            return False
        await self._undeny(mac)
        return True

    async def deny(self, mac: str) -> bool:
        """Put ``mac`` on hostapd's deny list (drops it now and keeps it out)."""
        if self.cmd is None:
            return False
        try:
            await self.cmd.command_ok(f"DENY_ACL ADD_MAC {mac}")
            with contextlib.suppress(CtrlError):
                await self.cmd.request(f"DEAUTHENTICATE {mac}")
            return True
        except CtrlError as exc:
            log.warning("hostapd: could not deny %s: %s", mac, exc)
            return False

    async def _undeny(self, mac: str) -> None:
        if self.cmd is not None:
            with contextlib.suppress(CtrlError):
                await self.cmd.command_ok(f"DENY_ACL DEL_MAC {mac}")

    async def _refresh_psk_file(self) -> None:
        """File backend: rewrite the PSK file if it changed and RELOAD_WPA_PSK."""
        tickets = frozenset(t.passphrase for t in self.registry.tickets())
        entries = self._psk_entries()
        text = psk_file.render_wpa_psk_file(entries)
        if text == self._psk_text and tickets == self._tickets_seen:
            return
        self._tickets_seen = tickets
        self._psk_text = text
        _write(_need(self.settings.ap.wpa_psk_file, "wpaPskFile"), text)
        sae = "SAE" in self.settings.ap.wpa_key_mgmt.split()
        if sae:  # sae_password lives in hostapd.conf: rewrite and reload the config
            self.write_files()
        if self.cmd is not None:
            with contextlib.suppress(CtrlError):
                await self.cmd.command_ok("RELOAD_WPA_PSK")
            if sae and not (self.process and self.process.send_signal(signal.SIGHUP)):
                with contextlib.suppress(CtrlError):
                    await self.cmd.request("RELOAD")

    async def _bind_ticket(self, mac: str, keyid: str) -> None:
        """File backend: a station joined with a ticket's passphrase -> admit (binds it)."""
        for t in self.registry.tickets():
            if psk_file.ticket_keyid(t.passphrase) == keyid and not t.used_by:
                try:
                    adm = self.registry.admit(mac, t.passphrase)
                except Exception:
                    log.exception("hostapd: ticket admission of %s failed", mac)
                    return
                if not adm.accept:
                    await self.deny(mac)
                await self._refresh_psk_file()
                return


def build_hostapd_service(settings: Settings, registry: Registry) -> HostapdService:
    """Factory for the gateway."""
    return HostapdService(settings, registry)


PSK_FILE_KEY = "psk-file"  # the ordering key of the PSK file's rewrites


async def _after(previous: asyncio.Task[Any] | None,
                 coro: Coroutine[Any, Any, object]) -> object:
    """Wait for ``previous`` to end (however it ends), then run ``coro``."""
    try:
        if previous is not None:
            await asyncio.wait({previous})
    except BaseException:  # cancelled while waiting: the action never runs
        coro.close()
        raise
    return await coro
