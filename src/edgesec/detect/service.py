"""DetectService: runs the detect worker, records its alerts, contains devices.

The worker (:mod:`edgesec.detect.worker`) is a child process; this service
sends it what the registry knows (on every device/lease/bridge event,
debounced) and reads its alert lines.  Each alert is recorded by the
:class:`~edgesec.detect.alerts.AlertStore` (SQLite + EVE), published as an
``alert`` event (``ALERT <mac> <kind> <severity>``) and, when the device's
containment is ``quarantine`` and the severity reaches
``quarantineSeverity``, turned into :meth:`Registry.quarantine` with the
alert as evidence.  Exempt devices and the gateway's own addresses are never
quarantined.  The worker is restarted with back-off if it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesec.aiotasks import cancel_and_wait
from edgesec.detect.alerts import Alert, AlertStore
from edgesec.detect.model import DetectConfig
from edgesec.events import AlertRaised, Event, QuarantineChanged
from edgesec.registry import RegistryError, normalise_mac
from edgesec.restart import WorkerReader

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.registry import Registry

log = logging.getLogger(__name__)
audit_log = logging.getLogger("edgesec.audit")  # the supervisor's audit trail logger

WORLD_DEBOUNCE_S = 0.1
MAX_PENDING_BYTES = 4 * 1024 * 1024  # unread world snapshots kept for the worker
WATCHED = ("device", "ip", "bridge_added", "bridge_removed", "group_changed", "access_added",
           "access_removed")


def eve_path(settings: Settings) -> Path:
    d = settings.detect
    if d.eve_path:
        return Path(d.eve_path)
    cap = settings.capture
    if cap.eve_path:
        return Path(cap.eve_path)
    base = cap.capture_db_path.parent if cap.capture_db_path else Path(".")
    return base / "eve.json"


def _forward_port(settings: Settings) -> int:
    try:
        from edgesec.dhcp.dnsfwd import forwarder_port

        return forwarder_port(settings)
    except Exception:  # no split DNS in this build or config: DNS stays on 53
        return 0


def _macs(items: tuple[str, ...]) -> frozenset[str]:
    out = set()
    for m in items:
        with contextlib.suppress(RegistryError):
            out.add(normalise_mac(m))
    return frozenset(out)


class Containment:
    """Per-device decision: record only, or quarantine at ``severity``."""

    def __init__(self, d: Any) -> None:
        self.default: str = str(d.containment)
        self.threshold = d.quarantine_severity
        self.ttl = max(0, d.quarantine_seconds)
        self.quarantine_macs = _macs(d.quarantine_devices)
        self.alert_macs = _macs(d.alert_only_devices)
        self.exempt = _macs(d.exempt_devices)

    def mode(self, mac: str) -> str:
        if mac in self.exempt or mac in self.alert_macs:
            return "alert"
        if mac in self.quarantine_macs:
            return "quarantine"
        return self.default

    def should_quarantine(self, alert: Alert) -> bool:
        return bool(alert.mac) and alert.severity >= self.threshold \
            and self.mode(alert.mac) == "quarantine"


class DetectService(WorkerReader):
    """The detect worker's parent: publishes its alerts, contains by the policy."""

    _what = "detect"
    name = "detect"

    def __init__(self, settings: Settings, registry: Registry, *,
                 python: str = sys.executable) -> None:
        self.settings = settings
        self.registry = registry
        d = settings.detect
        self.containment = Containment(d)
        db = d.detect_db_path or Path("detect.sqlite")
        self.db_path = db
        self.store = AlertStore(db, eve_path(settings))
        self.cfg = replace(DetectConfig.from_settings(d), dns_forward_port=_forward_port(settings))
        self.interfaces = list(d.interfaces) or list(dict.fromkeys(
            s.bridge for s in settings.interfaces.subnets))
        self._python = python
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._world_task: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._stopping = False
        self.stats: dict[str, Any] = {}
        self.alerts = 0
        self.quarantined = 0
        self.refused = 0
        self.restarts = 0
        self.skipped_writes = 0
        self.error = ""

    # -- the registry, as the worker needs it ------------------------------------
    def gateway_ips(self) -> list[str]:
        return [str(s.gateway) for s in self.settings.interfaces.subnets]

    def world(self) -> dict[str, Any]:
        reg = self.registry
        devices = reg.devices()
        ips = {d.mac: list(d.ips) for d in devices}
        peers: dict[str, set[str]] = {}
        for a, b in reg.bridges():
            peers.setdefault(a, set()).update(ips.get(b, ()))
            peers.setdefault(b, set()).update(ips.get(a, ()))
        # groups open both directions; an access rule lets its opener connect (the other
        # side only answers): neither is a blocked attempt
        for group, mac in reg.groups.memberships():
            for other in reg.groups.members(group):
                if other != mac:
                    peers.setdefault(mac, set()).update(ips.get(other, ()))
        for rule in reg.groups.rules():
            peers.setdefault(rule.src, set()).update(ips.get(rule.dst, ()))
        return {
            "gateway_ips": self.gateway_ips(),
            "gateway_macs": [],
            "networks": [str(s.network) for s in self.settings.interfaces.subnets],
            "devices": [{"mac": d.mac, "ips": list(d.ips), "nat": d.nat and d.allow,
                         "peers": sorted(peers.get(d.mac, ()))} for d in devices],
        }

    def _on_event(self, event: Event) -> None:
        if isinstance(event, QuarantineChanged) and not event.on:
            self._write({"reset": event.mac})
        if event.kind in WATCHED and self._world_task is None and not self._stopping:
            with contextlib.suppress(RuntimeError):
                self._world_task = asyncio.get_running_loop().create_task(self._send_world())

    async def _send_world(self) -> None:
        try:
            await asyncio.sleep(WORLD_DEBOUNCE_S)
        finally:
            self._world_task = None
        self._write({"world": self.world()})

    def _write(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return
        if proc.stdin.transport.get_write_buffer_size() > MAX_PENDING_BYTES:
            self.skipped_writes += 1  # a stuck worker: the next snapshot replaces this one
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write((json.dumps(msg) + "\n").encode())

    # -- alerts -------------------------------------------------------------------
    def handle_alert(self, alert: Alert) -> None:
        """Record, publish, and contain if the policy says so."""
        self.alerts += 1
        try:
            self.store.add(alert)
        except Exception:
            log.exception("cannot record alert %s", alert.kind)
        self.registry.bus.publish(AlertRaised(alert.mac, alert=alert.kind,
                                              severity=alert.severity, message=alert.message))
        log.warning("alert %s %s severity %d: %s", alert.mac or "-", alert.kind, alert.severity,
                    alert.message)
        if not self.containment.should_quarantine(alert):
            return
        dev = self.registry.get(alert.mac) if alert.mac else None
        if dev is None or dev.quarantined or set(dev.ips) & set(self.gateway_ips()):
            return
        try:
            self.registry.quarantine(alert.mac, alert.kind, source=f"detect:{alert.kind}",
                                     ttl=self.containment.ttl, evidence=alert.to_json())
            self.quarantined += 1
            log.warning("quarantined %s: %s (%s)", alert.mac, alert.kind, alert.message)
            audit_log.info("audit: QUARANTINE %s %s by detect severity=%d flow_id=%s "
                           "community_id=%s: OK", alert.mac, alert.kind, alert.severity,
                           alert.flow_id, alert.community_id or "-")
        except RegistryError as exc:
            self.refused += 1
            log.warning("could not quarantine %s: %s", alert.mac, exc)

    # -- the worker ----------------------------------------------------------------
    async def _spawn(self) -> None:
        options = {"cfg": self.cfg.__dict__, "interfaces": self.interfaces,
                   "db": str(self.db_path)}
        proc = await asyncio.create_subprocess_exec(
            self._python, "-m", "edgesec.detect.worker", "--options", json.dumps(options),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
        except TimeoutError:
            line = b""
        msg: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            msg = json.loads(line) if line.strip() else {}
        if not msg.get("ready"):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RuntimeError("detect worker did not start")
        self._proc = proc
        self._write({"world": self.world()})

    async def start(self) -> None:
        self._stopping = False
        self._unsubscribe = self.registry.bus.subscribe(self._on_event)
        await self._spawn()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    def _on_message(self, msg: Any) -> None:
        if "alert" in msg:
            try:
                self.handle_alert(Alert.from_dict(msg["alert"]))
            except Exception:
                log.exception("bad alert from the detect worker")
        elif "stats" in msg:
            self.stats = msg["stats"]

    def _report(self, error: str) -> None:
        self.error = error

    def _restarted(self) -> None:
        self.restarts += 1

    async def stop(self) -> None:
        self._stopping = True
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await cancel_and_wait(self._reader)
        self._reader = None
        self.store.close()

    def status(self) -> str:
        pid = self._proc.pid if self._proc and self._proc.returncode is None else None
        s = self.stats
        return (f"{'running pid ' + str(pid) if pid else 'stopped'}: {self.alerts} alerts, "
                f"{self.quarantined} quarantined, {len(self.registry.quarantines())} held; "
                f"frames {s.get('frames', 0)} malformed {s.get('malformed', 0)} "
                f"suppressed {s.get('suppressed', 0)} profiles {s.get('profiles', 0)}"
                + (f"; {self.error}" if self.error else ""))

    def health(self) -> tuple[str, str]:
        if self._proc is None or self._proc.returncode is not None:
            return "failed", self.error or "worker not running"
        return ("degraded", self.error) if self.error else ("ok", "")


def build_detect_service(settings: Settings, registry: Registry) -> DetectService:
    return DetectService(settings, registry)
