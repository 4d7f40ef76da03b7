"""Per-datagram admission checks of the reflector (pure, no sockets).

Owns the ordered list of checks a received mDNS datagram passes before it is
reflected, and the packet rewrite (QU -> QM).  Order, cheapest first:

1. size bound;  2. source port 5353 (legacy unicast is not reflected);
3. source on-link for the arrival interface;  4. IP TTL / hop limit 255;
5. not sent by the gateway (own addresses; payload echo of what we sent in
   the last second);  6. rate limit per (source, interface);  7. decodes
   within bounds;  8. service-type allow-list;  9. the optional ``vet`` hook
   (the service's name-ownership check: a response claiming another device's
   name is refused as ``name-conflict``).

Each refusal is counted by reason; :meth:`Pipeline.process` never raises.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from edgesec.mdns.decoder import DecodeError, Limits, Message, decode
from edgesec.mdns.ratelimit import RateLimiter

__all__ = ["Interface", "Pipeline", "Verdict", "service_type"]

MDNS_PORT = 5353
_LINK_LOCAL6 = ipaddress.IPv6Network("fe80::/10")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Interface:
    """A device bridge the reflector serves."""

    name: str
    index: int
    address4: ipaddress.IPv4Address | None
    network4: ipaddress.IPv4Network | None
    networks6: tuple[ipaddress.IPv6Network, ...] = ()
    addresses6: tuple[ipaddress.IPv6Address, ...] = ()

    def on_link(self, ip: IPAddress) -> bool:
        """Is ``ip`` a host address of one of this interface's subnets (not ours)?"""
        if ip.version == 4:
            net = self.network4
            if net is None or ip not in net or ip == self.address4:
                return False
            return net.prefixlen >= 31 or ip not in (net.network_address, net.broadcast_address)
        if ip in self.addresses6:
            return False
        return ip in _LINK_LOCAL6 or any(ip in n for n in self.networks6)

    def owns(self, ip: IPAddress) -> bool:
        """Is ``ip`` one of the gateway's own addresses on this interface?"""
        return ip == self.address4 if ip.version == 4 else ip in self.addresses6


def service_type(name: str) -> str | None:
    """``_http._tcp.local`` for any name under a DNS-SD service type, else None."""
    labels = name.split(".")
    for i in range(len(labels) - 1, 0, -1):
        if labels[i] in ("_tcp", "_udp") and labels[i - 1].startswith("_"):
            return ".".join(labels[i - 1 :])
    return None


@dataclass(slots=True)
class Verdict:
    """Result of :meth:`Pipeline.process`."""

    reflect: bool
    reason: str
    message: Message | None = None
    payload: bytes = b""


@dataclass(slots=True)
class Pipeline:
    """The admission checks with their state (rate buckets, echo cache, counters)."""

    limits: Limits
    limiter: RateLimiter
    service_allow: frozenset[str] = frozenset()
    echo_window: float = 1.0
    own: set[IPAddress] = field(default_factory=set)
    counters: Counter[str] = field(default_factory=Counter)
    vet: Callable[[Message, IPAddress, float], str | None] | None = None
    _sent: OrderedDict[int, float] = field(default_factory=OrderedDict)  # hash -> until

    def note_sent(self, payload: bytes, now: float) -> None:
        """Remember a payload we reflected (to drop it if it comes back)."""
        key = hash(payload)
        self._sent.pop(key, None)
        self._sent[key] = now + self.echo_window
        while self._sent and (len(self._sent) > 4096 or next(iter(self._sent.values())) <= now):
            self._sent.popitem(last=False)

    def _echo(self, payload: bytes, now: float) -> bool:
        until = self._sent.get(hash(payload))
        return until is not None and until > now

    def _refuse(self, reason: str, msg: Message | None = None) -> Verdict:
        self.counters[reason] += 1
        return Verdict(False, reason, msg)

    def process(
        self, data: bytes, src: IPAddress, port: int, ttl: int | None, iface: Interface,
        now: float,
    ) -> Verdict:
        """Run every check on one datagram received on ``iface``."""
        if len(data) > self.limits.max_size:
            return self._refuse("oversize")
        if port != MDNS_PORT:
            return self._refuse("legacy-port")
        if src in self.own or iface.owns(src):
            return self._refuse("own")
        if not iface.on_link(src):
            return self._refuse("off-link")
        if ttl != 255:
            return self._refuse("ttl")
        if self._echo(data, now):
            return self._refuse("echo")
        if not self.limiter.allow((src, iface.index), now):
            return self._refuse("rate")
        try:
            msg = decode(data, self.limits)
        except DecodeError:
            return self._refuse("malformed")
        if self.service_allow:
            for name in msg.names():
                stype = service_type(name)
                if stype is not None and stype not in self.service_allow:
                    return self._refuse("service-not-allowed", msg)
        if self.vet is not None and (why := self.vet(msg, src, now)) is not None:
            return self._refuse(why, msg)
        payload = data
        if msg.qu_offsets:
            buf = bytearray(data)
            for off in msg.qu_offsets:
                buf[off] &= 0x7F
            payload = bytes(buf)
        self.counters["reflected"] += 1
        return Verdict(True, "ok", msg, payload)
