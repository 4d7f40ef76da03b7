"""The mDNS service: reflector + knowledge + automatic bridging, for the gateway.

Owns wiring the parts together and the service protocol (async start/stop,
one-line status), the ``MDNS_NAMES`` supervisor command and the ``mdns``
events on the registry's bus:

* :class:`edgesec.events.MdnsAnnounced` (kind ``mdns``, action ``announce``:
  name, type, value, ip, interface, ttl) for each newly learned record;
* :class:`edgesec.events.MdnsBridge` (kind ``mdns``, action ``bridge``: peer,
  reason) when an automatic bridge was made (the registry's own ``bridge_added``
  event carries the same reason).

The detection table (``inet edgesec_mdns``) is watched through nftables
netlink notifications (:class:`edgesec.net.nftgen.RulesetWatcher`): when
another process flushes or alters it, it is re-installed with the announced
addresses, counted ("detection table healed Nx" in STATUS) and a
``firewall_healed`` event is published.

Entry points: :func:`build_mdns_service` (factory used by
``edgesec.gateway``), :meth:`MdnsService.handle_mdns_names` and
:meth:`MdnsService.register_commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgesec.aiotasks import cancel_and_wait
from edgesec.events import DeviceChanged, Event, FirewallHealed, MdnsAnnounced, MdnsBridge
from edgesec.mdns.bridging import AutoBridger, decide, owner_mac
from edgesec.mdns.decoder import TYPE_A, TYPE_AAAA, TYPE_SRV, Limits, Message
from edgesec.mdns.detect import TABLE as DETECT_TABLE
from edgesec.mdns.detect import Detector
from edgesec.mdns.knowledge import Knowledge
from edgesec.mdns.names import MAX_LEASE_BYTES, NameOwners, lease_hostnames
from edgesec.mdns.nflog import NflogSocket
from edgesec.mdns.pipeline import Interface, Pipeline
from edgesec.mdns.ratelimit import RateLimiter
from edgesec.mdns.reflector import Reflector
from edgesec.mdns.settings import MdnsSettings
from edgesec.net.nftgen import NFPROTO_INET, Commit, RulesetWatcher
from edgesec.supervisor.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.net.nftbackend import NftBackend
    from edgesec.registry import Registry
    from edgesec.supervisor.commands import CommandTable

__all__ = ["MdnsService", "build_mdns_service"]

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 2.0
MAX_EVENTS_PER_PACKET = 16


class MdnsService:
    """Reflects mDNS between device bridges and bridges devices that discovered each other."""

    name = "mdns"

    def __init__(self, settings: Settings, registry: Registry,
                 mdns: MdnsSettings | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.mdns = mdns or MdnsSettings.from_settings(settings)
        nat_if = settings.nat.nat_interface
        self.subnets = [
            (s.bridge, s.gateway, s.network)
            for s in settings.interfaces.subnets
            if s.bridge != nat_if  # never the WAN
        ]
        self.knowledge = Knowledge(self.mdns.discovery_ttl)
        self.names = NameOwners(hold=self.mdns.discovery_ttl, window=self.mdns.discovery_ttl)
        self.pipeline = Pipeline(
            Limits(max_size=self.mdns.max_packet),
            RateLimiter(self.mdns.rate_limit, self.mdns.rate_burst),
            frozenset(self.mdns.service_allow),
            vet=self._vet,
        )
        self.reflector = Reflector(self.subnets, self.pipeline, self.mdns.reflect_ip4,
                                   self.mdns.reflect_ip6, self._on_packet)
        self.reflector.skip_target = self._contained
        self._contained_cache: tuple[int, frozenset[str]] = (-1, frozenset())
        self.bridger = AutoBridger(registry, self.mdns.bridge_expiry)
        self.detector: Detector | None = None
        self.nflog: NflogSocket | None = None
        self._refreshed: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.detect_error = ""
        self.table_heals = 0
        self._watcher: RulesetWatcher | None = None
        self.refusals: dict[str, int] = {}  # bridge refusals by Decision.code
        self.conflict_log = RateLimitedLog(log, "mDNS name conflicts")
        self.refusal_log = RateLimitedLog(log, "refused auto-bridges", level=logging.INFO)
        self._lease_path: Path | None = settings.dhcp.dhcp_leasefile_path
        self._lease_stamp: tuple[int, int] | None = None
        self._identities_dirty = True
        self._unsubscribe: Callable[[], None] | None = None

    # -- service protocol -----------------------------------------------------
    async def start(self) -> None:
        """Open sockets, install the detection table and NFLOG reader."""
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.registry.bus.subscribe(self._on_registry_event)
        self.refresh_identities()
        self.reflector.start()
        if self.mdns.auto_bridge:
            try:
                self.detector = Detector([b for b, _g, _n in self.subnets], self.mdns.log_group,
                                         int(self.mdns.discovery_ttl), _backend(self.settings))
                self._watcher = RulesetWatcher({(NFPROTO_INET, DETECT_TABLE)},
                                               self._on_ruleset_change, self.detector.own_pids)
                self._watcher.start(self._loop)
                self.detector.install()
                self.nflog = NflogSocket(self.mdns.log_group)
                self._loop.add_reader(self.nflog.fileno(), self._on_nflog)
            except Exception as exc:  # reflection still works without auto-bridging
                self.detect_error = str(exc)
                log.error("mdns: automatic bridging unavailable: %s", exc)
                await self._stop_detection()
        self._task = asyncio.create_task(self._housekeeping(), name="mdns-housekeeping")

    async def stop(self) -> None:
        """Close sockets and remove the detection table."""
        await cancel_and_wait(self._task)
        self._task = None
        self.reflector.stop()
        await self._stop_detection()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def _stop_detection(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self.nflog is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.nflog.fileno())
            self.nflog.close()
            self.nflog = None
        if self.detector is not None:
            try:
                self.detector.remove()
            except Exception as exc:
                log.warning("mdns: cannot remove detection table: %s", exc)
            self.detector = None

    def counters(self) -> dict[str, float]:
        """Reflected packets and drops by reason (for metrics)."""
        c = self.pipeline.counters
        out: dict[str, float] = {"reflected": c.get("reflected", 0)}
        out.update({f"dropped|reason={k}": v for k, v in c.items() if k != "reflected"})
        return out

    def _on_ruleset_change(self, commit: Commit | None) -> None:
        """Another process touched the detection table: re-install it if it was altered.

        Deferred by one loop iteration, so that the firewall's heal (woken by
        the same notification) goes first: it is the one that closes the gateway.
        """
        if self._loop is not None:
            self._loop.call_soon(self._heal_detection, commit)

    def _heal_detection(self, commit: Commit | None) -> None:
        if self.detector is None:
            return
        try:
            deleted = commit is not None and (NFPROTO_INET, DETECT_TABLE) in commit.deleted
            if not deleted and self.detector.intact():
                return
            self.detector.install()
            if self._refreshed:
                self.detector.announce(list(self._refreshed))
        except Exception as exc:
            self.detect_error = f"detection table not restored: {exc}"
            log.error("mdns: %s", self.detect_error)
            return
        self.detect_error = ""
        self.table_heals += 1
        log.warning("mdns: detection table %s was altered by another process; re-installed",
                    DETECT_TABLE)
        self._publish(FirewallHealed("", table=DETECT_TABLE, heals=self.table_heals,
                                     reason="table_altered"))

    def health(self) -> tuple[str, str]:
        """``degraded`` when automatic bridging is configured but its detection is not running."""
        if self.mdns.auto_bridge and (self.detector is None or self.detect_error):
            return "degraded", self.detect_error or "automatic bridging unavailable"
        return "ok", ""

    def status(self) -> str:
        """One line: where we reflect and what happened so far."""
        c = self.pipeline.counters
        dropped = sum(v for k, v in c.items() if k != "reflected")
        why = " ".join(f"{k}={v}" for k, v in sorted(c.items()) if k != "reflected" and v)
        fams = "+".join(n for n, on in (("v4", self.mdns.reflect_ip4),
                                        ("v6", self.mdns.reflect_ip6)) if on) or "off"
        if self.nflog is not None and not self.detect_error:
            bridging = f"auto-bridge on, detection table healed {self.table_heals}x"
        elif self.detect_error:
            bridging = f"auto-bridge off ({self.detect_error})"
        else:
            bridging = "auto-bridge off"
        refused = " ".join(f"{k} {v}" for k, v in sorted(self.refusals.items()))
        return (f"reflecting {fams} on {','.join(self.reflector.interfaces()) or 'nothing'}; "
                f"reflected {c['reflected']}, dropped {dropped} ({why or 'none'}), "
                f"send errors {self.reflector.send_errors}; "
                f"{len(self.knowledge)} names, {len(self.names)} owned, "
                f"{self.names.identities} identities; "
                f"{bridging}, {self.bridger.created} made, {self.bridger.refreshed} extended, "
                f"{sum(self.refusals.values())} refused ({refused or 'none'})")

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                now = self.reflector.clock()
                self.knowledge.expire(now)
                self.names.expire(now)
                self.refresh_identities()
                self.bridger.expire()
                self.reflector.rescan()
            except Exception:
                log.exception("mdns: housekeeping failed")

    def _contained(self, bridge: str) -> bool:
        """True for a bridge whose devices are all quarantined: no reflection onto it."""
        gen = getattr(self.registry, "generation", None)
        if gen is None:
            return False
        if gen != self._contained_cache[0]:
            held: dict[int, bool] = {}
            for d in self.registry.devices():
                held[d.vlanid] = held.get(d.vlanid, True) and bool(
                    getattr(d, "quarantined", False))
            names = set()
            for vlan, all_held in held.items():
                sub = self.settings.interfaces.subnet_for_vlan(vlan)
                if all_held and sub is not None:
                    names.add(sub.bridge)
            self._contained_cache = (gen, frozenset(names))
        return bridge in self._contained_cache[1]

    # -- name ownership -------------------------------------------------------
    def _on_registry_event(self, event: Event) -> None:
        if isinstance(event, DeviceChanged):
            self._identities_dirty = True

    def refresh_identities(self) -> None:
        """Re-read registry labels and DHCP hostnames when either changed."""
        stamp = None
        if self._lease_path is not None:
            with contextlib.suppress(OSError):
                st = os.stat(self._lease_path)
                stamp = (st.st_mtime_ns, st.st_size)
        if not self._identities_dirty and stamp == self._lease_stamp:
            return
        self._identities_dirty, self._lease_stamp = False, stamp
        hosts: list[tuple[str, str]] = []
        if stamp is not None and self._lease_path is not None:
            try:
                with open(self._lease_path, encoding="utf-8", errors="replace") as f:
                    hosts = lease_hostnames(f.read(MAX_LEASE_BYTES))
            except OSError as exc:
                log.warning("mdns: cannot read DHCP leases: %s", exc)
        labels = [(d.mac, d.label) for d in self.registry.devices() if d.label]
        self.names.set_identities(labels, hosts)

    def _vet(self, msg: Message, src: ipaddress.IPv4Address | ipaddress.IPv6Address,
             now: float) -> str | None:
        """Refuse a response that claims a name owned by another device."""
        if not msg.is_response:
            return None
        host = str(src)
        mac = self._mac_of(host)
        conflicts = []
        for r in msg.records:
            if r.rtype in (TYPE_A, TYPE_AAAA, TYPE_SRV):
                target = self._mac_of(r.value) if r.rtype != TYPE_SRV else ""
                c = self.names.claim(r.name, mac, r.ttl, now, target)
                if c is not None:
                    conflicts.append(c)
        if not conflicts:
            return None
        addresses = {host} | {r.value for r in msg.records
                              if r.rtype in (TYPE_A, TYPE_AAAA) and r.value}
        for c in conflicts:
            self.names.note_refused(c, addresses)
        c = conflicts[0]
        self.conflict_log.log("mdns: %s (%s) announced %s, which belongs to %s (%s): "
                              "not reflected", host, mac or "unknown device", c.name, c.owner,
                              c.why)
        return "name-conflict"

    # -- learning -------------------------------------------------------------
    def _mac_of(self, ip: str) -> str:
        return owner_mac(self.registry.device_by_ip, ip)

    def _on_packet(self, msg: Message, src: str, iface: Interface,
                   targets: list[Interface]) -> None:
        now = self.reflector.clock()
        mac = self._mac_of(src)
        changed = self.knowledge.learn(msg, src, mac, iface.name, now)
        for ann in changed[:MAX_EVENTS_PER_PACKET]:
            self._publish(MdnsAnnounced(
                mac, name=ann.name, type=ann.type_name, value=ann.value, ip=src,
                interface=iface.name, ttl=int(ann.expires - now)))
        if not msg.is_response or not mac:
            return
        # Only the announcer's own leased address counts (safer than the original).
        owned = {r.value for r in msg.records
                 if r.rtype in (TYPE_A, TYPE_AAAA) and r.ttl > 0 and self._mac_of(r.value) == mac}
        for addr in owned:
            for t in targets:
                self.knowledge.expose(t.name, addr, mac, now)
        fresh = [a for a in owned if self._refreshed.get(a, 0.0) <= now]
        if fresh and self.detector is not None:
            try:
                self.detector.announce(fresh)
                for a in fresh:
                    self._refreshed[a] = now + self.mdns.discovery_ttl / 4
            except Exception as exc:
                log.warning("mdns: cannot update announced set: %s", exc)

    def _publish(self, event: Event) -> None:
        self.registry.bus.publish(event)

    # -- automatic bridging ---------------------------------------------------
    def _on_nflog(self) -> None:
        if self.nflog is None:
            return
        for pkt in self.nflog.read():
            self.first_packet(pkt.src, pkt.dst, pkt.indev)

    def _ifname(self, index: int) -> str:
        for ep in self.reflector.endpoints.values():
            if ep.iface.index == index:
                return ep.iface.name
        with contextlib.suppress(OSError):
            return socket.if_indextoname(index)
        return ""

    def first_packet(self, src: str, dst: str, indev: int) -> bool:
        """Apply the bridging rule to a logged first packet; True when a bridge was made."""
        now = self.reflector.clock()
        d = decide(self.knowledge, self.registry.device_by_ip, src, dst, self._ifname(indev),
                   now, self.mdns.auto_bridge, self.mdns.bridge_passive, self.names)
        if not d.bridge:
            self.refusals[d.code] = self.refusals.get(d.code, 0) + 1
            self.refusal_log.log("mdns: no bridge for %s -> %s: %s", src, dst, d.reason)
            return False
        if not self.bridger.apply(d):
            return False
        self._publish(MdnsBridge(d.b, peer=d.a, reason=d.reason))
        return True

    # -- supervisor command ---------------------------------------------------
    def handle_mdns_names(self, args: tuple[str, ...]) -> str:
        """``MDNS_NAMES [filter]``: one line per learned record, or ``FAIL`` when none.

        Line: ``name,type,value,mac,ip,interface,ttl_left`` (``value`` of SRV
        is ``prio weight port target``).  The optional argument keeps lines
        whose name, value, MAC or IP contains it.
        """
        now = self.reflector.clock()
        needle = args[0].lower() if args else ""
        lines = []
        for a in self.knowledge.announcements(now):
            if needle and not any(needle in f.lower() for f in (a.name, a.value, a.mac, a.ip)):
                continue
            name = a.name.replace(",", "\\,")
            value = a.value.replace(",", "\\,")
            lines.append(f"{name},{a.type_name},{value},{a.mac},{a.ip},{a.interface},"
                         f"{int(a.expires - now)}\n")
        return "".join(lines) if lines else "FAIL\n"

    def register_commands(self, table: CommandTable) -> None:
        """Register ``MDNS_NAMES`` on the supervisor's command table."""
        table.register("MDNS_NAMES", lambda req: self.handle_mdns_names(tuple(req.args)), (0, 1))


def _backend(settings: Settings) -> NftBackend:
    from edgesec.net.nftbackend import backend_for

    return backend_for(settings)


def build_mdns_service(settings: Settings, registry: Registry) -> MdnsService:
    """Factory used by the gateway (``exec_mdns_forward``)."""
    return MdnsService(settings, registry)


