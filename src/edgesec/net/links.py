"""The subnet service: one Linux bridge per VLAN, up, carrying the gateway address.

Owns the device-subnet bridges (``<interfacePrefix><vlan>``), through netlink
(pyroute2's asyncio API; no ``ip`` commands).

* Bridges of the explicit ``[interfaces] ifN`` entries are ensured at start.
* Bridges of the optional VLAN pool are ensured lazily, when an allowed device
  is on a pool VLAN (at start and on registry ``device`` events): a thousand
  idle bridges would cost netlink time and, worse, a pair of dnsmasq DNS
  sockets each.
* ``ensure`` is idempotent: an existing bridge keeps its ports; a missing
  address is added, a down bridge is brought up.
* ``ignoreErrorOnIfCreate`` makes a failing bridge a logged error instead of
  a failed start.
* On stop the service brings its bridges down (fail closed: with the firewall
  table gone, an up bridge would forward between devices unfiltered). They are
  brought up again at the next start; devices' ports stay enslaved.

:func:`set_ip_forward` is the one switch of IPv4 forwarding; the gateway turns
it on only after the enforcing services started, the firewall turns it off
while it re-applies a damaged table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgesec.events import DeviceChanged
from edgesec.net import pyroute2_lazy

pyroute2_lazy.install()  # only the parts used below, not all of pyroute2 (its docstring)
from pyroute2.iproute import AsyncIPRoute  # noqa: E402

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.events import Event
    from edgesec.registry import Registry

log = logging.getLogger(__name__)

IFNAMSIZ = 15
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


class LinkError(RuntimeError):
    """A bridge could not be created or configured."""


def check_ifname(name: str) -> str:
    """Linux interface names: 1-15 bytes, no '/', ':' or whitespace."""
    if not 0 < len(name.encode()) <= IFNAMSIZ or any(c in name for c in "/: \t\n") \
            or name in (".", ".."):
        raise LinkError(f"invalid interface name {name!r} (at most {IFNAMSIZ} characters)")
    return name


def set_ip_forward(path: Path = IP_FORWARD, on: bool = True) -> bool:
    """Switch IPv4 forwarding on (or off with ``on=False``); True when it changed.

    The gateway calls it only once the firewall table is in place, and
    switches it off again when enforcement fails or at stop (fail closed).
    """
    want = "1" if on else "0"
    if path.read_text().strip() == want:
        return False
    path.write_text(want + "\n")
    return True


async def ensure_bridge(ipr: AsyncIPRoute, name: str, gateway: str, prefixlen: int,
                        broadcast: str) -> bool:
    """Make bridge ``name`` exist, be up and carry ``gateway/prefixlen``; True if changed."""
    check_ifname(name)
    changed = False
    found = await ipr.link_lookup(ifname=name)
    if not found:
        await ipr.link("add", ifname=name, kind="bridge")
        found = await ipr.link_lookup(ifname=name)
        changed = True
    idx = found[0]
    addrs = [a async for a in await ipr.get_addr(index=idx, family=2)]
    have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in addrs}
    if (gateway, prefixlen) not in have:
        await ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen,
                       broadcast=broadcast)
        changed = True
    links = [x async for x in await ipr.get_links(idx)]
    if not links[0]["flags"] & 1:  # IFF_UP
        await ipr.link("set", index=idx, state="up")
        changed = True
    return changed


class SubnetService:
    """Service ensuring the bridges of the configured (and used pool) subnets."""

    name = "subnets"

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        ifs = settings.interfaces
        self.pool_vlans: frozenset[int] = ifs.pool_vlans
        self.subnets = {s.vlan: s for s in ifs.subnets}
        self.ignore_errors = bool(settings.system.ignore_error_on_if_create)
        self.ensured: set[str] = set()
        self.errors: dict[str, str] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def ensure_vlans(self, vlans: set[int]) -> None:
        """Ensure the bridges of ``vlans`` (idempotent)."""
        async with self._lock, AsyncIPRoute() as ipr:
            for vlan in sorted(vlans):
                sub = self.subnets.get(vlan)
                if sub is None:
                    continue
                try:
                    await ensure_bridge(ipr, sub.bridge, str(sub.gateway),
                                        sub.network.prefixlen, str(sub.broadcast))
                    self.ensured.add(sub.bridge)
                    self.errors.pop(sub.bridge, None)
                except Exception as exc:
                    self.errors[sub.bridge] = str(exc)
                    if not self.ignore_errors:
                        raise LinkError(f"bridge {sub.bridge}: {exc}") from exc
                    log.error("bridge %s: %s (ignoreErrorOnIfCreate)", sub.bridge, exc)

    def _used_pool_vlans(self) -> set[int]:
        return {d.vlanid for d in self.registry.devices()
                if d.allow and d.vlanid in self.pool_vlans}

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, DeviceChanged):
            return
        dev = event.new
        if dev is None or not dev.allow or dev.vlanid not in self.pool_vlans:
            return
        sub = self.subnets.get(dev.vlanid)
        if sub is None or sub.bridge in self.ensured:
            return
        task = asyncio.get_running_loop().create_task(self.ensure_vlans({dev.vlanid}))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def start(self) -> None:
        # IPv4 forwarding is the gateway's to enable, after the firewall table is in place.
        explicit = {v for v in self.subnets if v not in self.pool_vlans}
        await self.ensure_vlans(explicit | self._used_pool_vlans())
        self._unsubscribe = self.registry.bus.subscribe(self._on_event)

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        for task in list(self._pending):
            task.cancel()
        async with AsyncIPRoute() as ipr:
            for name in sorted(self.ensured):
                with contextlib.suppress(Exception):
                    found = await ipr.link_lookup(ifname=name)
                    if found:
                        await ipr.link("set", index=found[0], state="down")

    async def reload(self, settings: Settings | None = None) -> None:
        """SIGHUP: take the new ``[interfaces]``; create new bridges, delete dropped ones.

        A subnet whose bridge name or addressing changed is a dropped one plus a
        new one (its devices' ports leave the old bridge: fail closed).
        """
        if settings is not None:
            new = {s.vlan: s for s in settings.interfaces.subnets}
            gone = [sub for vlan, sub in self.subnets.items() if new.get(vlan) != sub]
            self.settings = settings
            self.subnets = new
            self.pool_vlans = settings.interfaces.pool_vlans
            await self._delete_bridges([s.bridge for s in gone if s.bridge in self.ensured])
        await self.ensure_vlans(set(self.subnets) - self.pool_vlans | self._used_pool_vlans())

    def health(self) -> tuple[str, str]:
        """``degraded`` while a bridge could not be ensured (``ignoreErrorOnIfCreate``)."""
        if self.errors:
            return "degraded", "; ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
        return "ok", ""

    async def _delete_bridges(self, names: list[str]) -> None:
        if not names:
            return
        async with self._lock, AsyncIPRoute() as ipr:
            for name in names:
                self.ensured.discard(name)
                self.errors.pop(name, None)
                try:
                    found = await ipr.link_lookup(ifname=name)
                    if found:
                        await ipr.link("del", index=found[0])
                    log.info("bridge %s deleted (no longer configured)", name)
                except Exception as exc:
                    log.error("bridge %s: cannot delete: %s", name, exc)

    def status(self) -> str:
        text = f"{len(self.ensured)} bridges up"
        if self.errors:
            text += "; errors: " + "; ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
        return text


def build_subnet_service(settings: Settings, registry: Registry) -> SubnetService:
    """Factory for the gateway: the subnet/bridge service."""
    return SubnetService(settings, registry)
