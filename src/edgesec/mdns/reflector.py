"""The mDNS reflector: asyncio sockets per device bridge.

Owns receiving mDNS on every configured device bridge (IPv4 224.0.0.251 and
IPv6 ff02::fb, port 5353, per ``mdnsReflectIp4/6``), running each datagram
through the :class:`~edgesec.mdns.pipeline.Pipeline` checks, and re-sending
accepted packets on the *other* device bridges from the gateway's address
there.  Only bridges of ``[interfaces]`` subnets are ever used, never the WAN.
Bridges that do not exist yet are picked up by :meth:`Reflector.rescan`.

What it learned is handed to ``on_packet(msg, src, iface, targets)``, which
the service uses for knowledge, events and the detection set.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgesec.mdns.decoder import Message
from edgesec.mdns.pipeline import Interface, IPAddress, Pipeline
from edgesec.mdns.sockets import MDNS_GROUP4, MDNS_GROUP6, MDNS_PORT, open_socket, receive

__all__ = ["Reflector", "discover_interface"]

log = logging.getLogger(__name__)

OnPacket = Callable[[Message, str, Interface, list[Interface]], None]
_BATCH = 256


def discover_interface(name: str, address4: ipaddress.IPv4Address | None,
                       network4: ipaddress.IPv4Network | None) -> Interface | None:
    """Index and IPv6 addresses of ``name``; None when it does not exist (yet).

    Plain ``if_nametoindex`` and ``/proc/net/if_inet6`` (both per network
    namespace): synchronous, cheap, and safe inside the running event loop.
    """
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return None
    nets6: list[ipaddress.IPv6Network] = []
    addrs6: list[ipaddress.IPv6Address] = []
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) == 6 and fields[5] == name:
            addr = ipaddress.IPv6Address(int(fields[0], 16))
            addrs6.append(addr)
            nets6.append(ipaddress.IPv6Network(f"{addr}/{int(fields[2], 16)}", strict=False))
    return Interface(name, index, address4, network4, tuple(nets6), tuple(addrs6))


@dataclass
class _Endpoint:
    iface: Interface
    family: int
    sock: socket.socket


@dataclass
class Reflector:
    """Sockets per (bridge, family) and the receive/re-send loop."""

    subnets: list[tuple[str, ipaddress.IPv4Address, ipaddress.IPv4Network]]
    pipeline: Pipeline
    ip4: bool = True
    ip6: bool = False
    on_packet: OnPacket | None = None
    clock: Callable[[], float] = time.monotonic
    endpoints: dict[tuple[str, int], _Endpoint] = field(default_factory=dict)
    send_errors: int = 0
    # Bridges not to reflect onto (those holding only quarantined devices, edgesec.detect).
    skip_target: Callable[[str], bool] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def families(self) -> list[int]:
        """Address families being reflected."""
        return [f for f, on in ((socket.AF_INET, self.ip4), (socket.AF_INET6, self.ip6)) if on]

    def start(self) -> None:
        """Open sockets on every bridge that exists now."""
        self._loop = asyncio.get_running_loop()
        self.rescan()

    def rescan(self) -> list[str]:
        """Open sockets for bridges that appeared since, refresh addresses of the others.

        Returns the names of bridges that got new sockets.
        """
        opened: list[str] = []
        for name, gw, net in self.subnets:
            missing = [f for f in self.families() if (name, f) not in self.endpoints]
            try:
                iface = discover_interface(name, gw, net)
            except Exception as exc:
                log.warning("mdns: cannot inspect %s: %s", name, exc)
                continue
            if iface is None:
                continue
            for fam in self.families():  # addresses (e.g. IPv6 link-local) come and go
                if (name, fam) in self.endpoints:
                    self.endpoints[(name, fam)].iface = iface
            for fam in missing:
                try:
                    sock = open_socket(fam, name, iface.index, gw)
                except OSError as exc:
                    log.warning("mdns: no %s socket on %s: %s",
                                "IPv4" if fam == socket.AF_INET else "IPv6", name, exc)
                    continue
                ep = _Endpoint(iface, fam, sock)
                self.endpoints[(name, fam)] = ep
                assert self._loop is not None
                self._loop.add_reader(sock.fileno(), self._readable, ep)
                opened.append(name)
        own: set[IPAddress] = set()
        for ep in self.endpoints.values():
            own.update(ep.iface.addresses6)
            if ep.iface.address4 is not None:
                own.add(ep.iface.address4)
        self.pipeline.own = own
        if opened:
            log.info("mdns: reflecting on %s", ", ".join(sorted(set(opened))))
        return opened

    def stop(self) -> None:
        """Close every socket."""
        for ep in self.endpoints.values():
            if self._loop is not None:
                self._loop.remove_reader(ep.sock.fileno())
            ep.sock.close()
        self.endpoints.clear()

    def interfaces(self) -> list[str]:
        """Names of bridges with at least one open socket."""
        return sorted({name for name, _f in self.endpoints})

    def _targets(self, origin: _Endpoint) -> Iterable[_Endpoint]:
        skip = self.skip_target
        for ep in self.endpoints.values():
            if ep.family == origin.family and ep.iface.name != origin.iface.name \
                    and not (skip is not None and skip(ep.iface.name)):
                yield ep

    def _readable(self, ep: _Endpoint) -> None:
        bufsize = self.pipeline.limits.max_size + 1
        for _ in range(_BATCH):
            try:
                data, host, port, ttl = receive(ep.sock, bufsize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("mdns: receive on %s failed: %s", ep.iface.name, exc)
                return
            self.handle(ep, data, host, port, ttl)

    def handle(self, ep: _Endpoint, data: bytes, host: str, port: int, ttl: int | None) -> bool:
        """Process one datagram received on ``ep``; True when it was reflected."""
        now = self.clock()
        try:
            src = ipaddress.ip_address(host)
        except ValueError:
            return False
        verdict = self.pipeline.process(data, src, port, ttl, ep.iface, now)
        if not verdict.reflect:
            return False
        targets = list(self._targets(ep))
        group = MDNS_GROUP4 if ep.family == socket.AF_INET else MDNS_GROUP6
        for target in targets:
            dest = (group, MDNS_PORT) if ep.family == socket.AF_INET else (
                group, MDNS_PORT, 0, target.iface.index)
            try:
                target.sock.sendto(verdict.payload, dest)
            except OSError:
                self.send_errors += 1
        if targets:
            self.pipeline.note_sent(verdict.payload, now)
        if self.on_packet is not None and verdict.message is not None:
            try:
                self.on_packet(verdict.message, host, ep.iface, [t.iface for t in targets])
            except Exception:
                log.exception("mdns: packet hook failed")
        return True
