"""Split DNS: forget a device's DNS flows when its NAT changes.

The firewall sends DNS from devices with NAT to the forwarding resolver by a
conntrack NAT binding made on a flow's first packet (see
:mod:`edgesec.dhcp.dnsfwd`). A device that asks from one fixed source port
(some embedded resolvers do) keeps its flow, and so its old binding, for as
long as it keeps asking within the UDP timeout — possibly forever. So when a
device's effective NAT (allowed and NAT) changes, its conntrack entries
towards port 53 (udp and tcp) are deleted: its next query is classified by
the new policy.

Owns :func:`flush_dns_flows` (one netlink dump filtered in the kernel by
source address, protocol and port, then a delete per entry) and
:class:`NatWatch` (registry events in, flushes scheduled off the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from edgesec.events import DeviceChanged

if TYPE_CHECKING:
    from edgesec.events import Event
    from edgesec.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["NatWatch", "flush_dns_flows"]


def flush_dns_flows(ips: Iterable[str]) -> int:
    """Delete conntrack entries from ``ips`` to port 53 (udp, tcp); how many went."""
    from pyroute2.conntrack import Conntrack  # not `pyroute2`: see net/pyroute2_lazy.py
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    gone = 0
    with Conntrack() as ct:
        for ip in ips:
            for proto in (socket.IPPROTO_UDP, socket.IPPROTO_TCP):
                flt = NFCTAttrTuple(saddr=ip, proto=proto, dport=53)
                for entry in list(ct.dump_entries(tuple_orig=flt)):
                    try:
                        ct.delete(entry)
                        gone += 1
                    except NetlinkError:  # expired meanwhile
                        continue
    return gone


class NatWatch:
    """Flushes a device's DNS flows when its effective NAT flips (registry events)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._nat = {d.mac for d in registry.devices() if d.allow and d.nat}
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._unsubscribe = self.registry.bus.subscribe(self.on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def on_event(self, event: Event) -> None:
        if not isinstance(event, DeviceChanged):
            return
        dev = event.new
        if dev is None:
            return
        on = bool(dev.allow and dev.nat)
        if on == (dev.mac in self._nat):
            return
        if on:
            self._nat.add(dev.mac)
        else:
            self._nat.discard(dev.mac)
        if dev.ips:
            # after this event has reached every subscriber (the firewall's set first)
            asyncio.get_running_loop().call_soon(self._schedule, tuple(dev.ips))

    def _schedule(self, ips: tuple[str, ...]) -> None:
        task = asyncio.ensure_future(self._flush(ips))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, ips: tuple[str, ...]) -> None:
        try:
            await asyncio.to_thread(flush_dns_flows, ips)
        except Exception as exc:  # no conntrack netlink: flows age out by themselves
            log.warning("split DNS: cannot flush DNS flows of %s: %s", ", ".join(ips), exc)
