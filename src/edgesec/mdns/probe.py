"""Test-bed mDNS peers, run inside device namespaces (``python -m edgesec.mdns.probe``).

Owns small command-line peers used by the integration tests and
``bench/mdns.py``; none of this runs in the gateway.  Sub-commands:

* ``publish NAME IP [--service _http._tcp] [--port P]`` — python-zeroconf
  registers ``NAME.local`` and an instance of the service; prints ``ready``.
* ``browse SERVICE [--host NAME] [--timeout T]`` — python-zeroconf browses the
  service type and resolves the host; prints JSON {instances, addresses}.
* ``send`` — hand-built mDNS queries/answers (dnspython) with a chosen TTL,
  source address and count (``--unique`` varies each packet): floods, spoofs.
* ``listen --seconds S [--match TEXT]`` — counts datagrams (optionally those
  containing TEXT) and their sources; prints JSON.  ``--echo`` re-sends the
  first match from this device, to test loop protection.
* ``respond NAME IP`` — answers A queries for NAME at once (bench responder).
* ``query NAME --count N`` — one query at a time, waits for the answer;
  prints JSON latencies (bench querier).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import select
import socket
import struct
import sys
import time

import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from edgesec.mdns.decoder import DecodeError, decode

GROUP, GROUP6, PORT = "224.0.0.251", "ff02::fb", 5353


def _socket(bind_ip: str = "0.0.0.0", ttl: int = 255, join: bool = True,
            port: int = PORT) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE (root)
    s.bind(("0.0.0.0" if join else bind_ip, port))
    if join:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(GROUP) + socket.inet_aton("0.0.0.0"))
    if bind_ip != "0.0.0.0":
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(bind_ip))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    return s


def link_local(ifname: str = "eth0", wait: float = 5.0) -> str:
    """The (non-tentative) IPv6 link-local address of ``ifname``."""
    deadline = time.monotonic() + wait
    while True:
        for line in open("/proc/net/if_inet6").read().splitlines():  # noqa: SIM115
            f = line.split()
            tentative = int(f[4], 16) & 0x40
            if f[5] == ifname and f[0].startswith("fe80") and not tentative:
                return str(ipaddress.IPv6Address(int(f[0], 16)))
        if time.monotonic() > deadline:
            raise SystemExit(f"no link-local address on {ifname}")
        time.sleep(0.1)


SockAddr = tuple[str, int] | tuple[str, int, int, int]  # IPv4 or IPv6 (flowinfo, scope)


def _sender(source: str, ttl: int, ifname: str = "eth0") -> tuple[socket.socket, SockAddr]:
    """Socket sending from ``source``:5353 and the group address to send to."""
    if source == "ll":
        source = link_local(ifname)
    v6 = ":" in source
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if v6:
        idx = socket.if_nametoindex(ifname)
        s.bind((source, PORT, 0, idx))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        return s, (GROUP6, PORT, 0, idx)
    s.bind((source, PORT))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    return s, (GROUP, PORT)


def _listener6(ifname: str = "eth0") -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::", PORT))
    idx = socket.if_nametoindex(ifname)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                 socket.inet_pton(socket.AF_INET6, GROUP6) + struct.pack("@I", idx))
    return s


def answer_wire(name: str, ip: str, ttl: int = 120, ident: int = 0) -> bytes:
    """An mDNS response carrying ``name`` A ``ip``."""
    msg = dns.message.Message(id=ident)
    msg.flags = 0x8400
    msg.answer.append(dns.rrset.from_text(name + ".", ttl, "IN", "A", ip))
    return msg.to_wire()


def query_wire(name: str, qtype: str = "A", ident: int = 0) -> bytes:
    """An mDNS query for ``name``."""
    msg = dns.message.make_query(name + ".", qtype)
    msg.id = ident
    msg.flags = 0
    return msg.to_wire()


def cmd_publish(a: argparse.Namespace) -> int:
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    zc = Zeroconf(interfaces=[a.ip], ip_version=IPVersion.V4Only)
    info = ServiceInfo(f"{a.service}.local.", f"{a.name}.{a.service}.local.",
                       addresses=[socket.inet_aton(a.address or a.ip)], port=a.port,
                       server=f"{a.name}.local.", properties={"path": "/"})
    zc.register_service(info, allow_name_change=False)
    print("ready", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        zc.close()
    return 0


def cmd_browse(a: argparse.Namespace) -> int:
    from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf
    from zeroconf.asyncio import AsyncZeroconf  # noqa: F401  (import check)

    zc = Zeroconf(interfaces=[a.ip], ip_version=IPVersion.V4Only)
    found: list[str] = []

    class L(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            found.append(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None: ...

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None: ...

    result: dict[str, object] = {"instances": [], "addresses": [], "host": ""}
    try:
        ServiceBrowser(zc, f"{a.service}.local.", L())
        deadline = time.monotonic() + a.timeout
        while time.monotonic() < deadline and not found:
            time.sleep(0.1)
        result["instances"] = sorted(set(found))
        for name in found:
            info = zc.get_service_info(f"{a.service}.local.", name,
                                       timeout=int(max(0.1, deadline - time.monotonic()) * 1000))
            if info:
                result["addresses"] = sorted(set(info.parsed_addresses()))
                result["host"] = (info.server or "").rstrip(".")
                result["port"] = info.port
        if a.host:
            from zeroconf._services.info import AddressResolverIPv4  # not in zeroconf.__all__

            r = AddressResolverIPv4(f"{a.host}.local.")
            if r.request(zc, int(max(0.2, deadline - time.monotonic()) * 1000)):
                result["host_addresses"] = r.parsed_addresses()
    finally:
        zc.close()
    print(json.dumps(result), flush=True)
    return 0


def cmd_send(a: argparse.Namespace) -> int:
    s, group = _sender(a.source, a.ttl)
    wires = []
    for i in range(a.count if a.unique else 1):
        name = f"{a.name}-{i}" if a.unique else a.name
        wires.append(answer_wire(name, a.answer, ident=i & 0xFFFF) if a.answer
                     else query_wire(name, ident=i & 0xFFFF))
    sent = 0
    t0 = time.perf_counter()
    for i in range(a.count):
        wire = wires[i % len(wires)]
        while True:
            try:
                s.sendto(wire, group)
                sent += 1
                break
            except BlockingIOError:
                time.sleep(0.0005)
        if a.interval:
            time.sleep(a.interval)
        elif a.rate:
            due = t0 + (i + 1) / a.rate
            if due - time.perf_counter() > 0.001:
                time.sleep(due - time.perf_counter())
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - t0}), flush=True)
    return 0


def cmd_listen(a: argparse.Namespace) -> int:
    s = _listener6() if a.v6 else _socket()
    match = a.match.encode() if a.match else b""
    count, echoed = 0, False
    sources: dict[str, int] = {}
    names: set[str] = set()
    deadline = time.monotonic() + a.seconds
    print("ready", flush=True)
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        data, addr = s.recvfrom(9100)
        src = addr[0].split("%")[0]
        if match and match not in data:
            continue
        if a.distinct:
            try:
                msg = decode(data)
            except DecodeError:
                continue
            for n in [q.name for q in msg.questions] + [r.name for r in msg.records]:
                if a.match in n:
                    names.add(n)
        count += 1
        sources[src] = sources.get(src, 0) + 1
        if a.echo and not echoed:
            e, group = _sender(a.echo, 255)
            e.sendto(data, group)
            e.close()
            echoed = True
    print(json.dumps({"count": count, "sources": sources, "echoed": echoed,
                      "distinct": len(names)}), flush=True)
    return 0


def cmd_respond(a: argparse.Namespace) -> int:
    s = _socket()
    key = a.name.lower()
    print("ready", flush=True)
    while True:
        data, _src = s.recvfrom(9100)
        if len(data) < 12 or data[2] & 0x80:
            continue
        try:
            q = decode(data)
        except DecodeError:
            continue
        for question in q.questions:
            if question.name == key or (a.prefix and question.name.startswith(key)):
                ident = struct.unpack("!H", data[:2])[0]
                s.sendto(answer_wire(question.name, a.ip, ident=ident), (GROUP, PORT))


def cmd_query_open(a: argparse.Namespace) -> int:
    """Send ``count`` queries for unique names every ``interval`` s; match answers by name."""
    s = _socket()
    s.setblocking(False)
    sent: dict[str, float] = {}
    lat: dict[str, float] = {}

    def drain() -> None:
        while True:
            try:
                data = s.recv(9100)
            except BlockingIOError:
                return
            now = time.perf_counter()
            try:
                msg = decode(data)
            except DecodeError:
                continue
            if not msg.is_response:
                continue
            for r in msg.records:
                if r.name in sent and r.name not in lat:
                    lat[r.name] = now - sent[r.name]

    t0 = time.perf_counter()
    for i in range(a.count):
        name = f"{a.name}-{i}.local"
        while time.perf_counter() < t0 + i * a.interval:
            select.select([s], [], [], max(0.0, t0 + i * a.interval - time.perf_counter()))
            drain()
        sent[name] = time.perf_counter()
        s.sendto(query_wire(name), (GROUP, PORT))
        drain()
    end = time.perf_counter() + a.timeout
    while len(lat) < len(sent) and time.perf_counter() < end:
        select.select([s], [], [], 0.05)
        drain()
    print(json.dumps({"latencies": list(lat.values()), "lost": len(sent) - len(lat)}),
          flush=True)
    return 0


def cmd_query(a: argparse.Namespace) -> int:
    if a.interval:
        return cmd_query_open(a)
    s = _socket()
    lat: list[float] = []
    lost = 0
    for i in range(a.count):
        ident = (i % 0xFFFE) + 1
        wire = query_wire(a.name, ident=ident)
        t0 = time.perf_counter()
        s.sendto(wire, (GROUP, PORT))
        deadline = t0 + a.timeout
        got = False
        while (left := deadline - time.perf_counter()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data, _src = s.recvfrom(9100)
            if len(data) >= 12 and data[2] & 0x80 and struct.unpack("!H", data[:2])[0] == ident:
                lat.append(time.perf_counter() - t0)
                got = True
                break
        if not got:
            lost += 1
    print(json.dumps({"latencies": lat, "lost": lost}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgesec.mdns.probe")
    sub = p.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("publish")
    x.add_argument("name")
    x.add_argument("ip")
    x.add_argument("--address", default="", help="address to announce (default: ip)")
    x.add_argument("--service", default="_http._tcp")
    x.add_argument("--port", type=int, default=7)
    x = sub.add_parser("browse")
    x.add_argument("service")
    x.add_argument("ip")
    x.add_argument("--host", default="")
    x.add_argument("--timeout", type=float, default=6.0)
    x = sub.add_parser("send")
    x.add_argument("name")
    x.add_argument("source", help="source address; 'll' = eth0's IPv6 link-local")
    x.add_argument("--answer", default="", help="send an answer NAME A this address")
    x.add_argument("--ttl", type=int, default=255)
    x.add_argument("--count", type=int, default=1)
    x.add_argument("--unique", action="store_true")
    x.add_argument("--interval", type=float, default=0.0)
    x.add_argument("--rate", type=float, default=0.0, help="packets per second (paced)")
    x = sub.add_parser("listen")
    x.add_argument("--seconds", type=float, default=3.0)
    x.add_argument("--match", default="")
    x.add_argument("--echo", default="", help="re-send the first match from this address")
    x.add_argument("--v6", action="store_true", help="listen on ff02::fb instead")
    x.add_argument("--distinct", action="store_true", help="also count distinct names")
    x = sub.add_parser("respond")
    x.add_argument("name")
    x.add_argument("ip")
    x.add_argument("--prefix", action="store_true", help="answer every name starting so")
    x = sub.add_parser("query")
    x.add_argument("name")
    x.add_argument("--count", type=int, default=1)
    x.add_argument("--timeout", type=float, default=1.0)
    x.add_argument("--interval", type=float, default=0.0,
                   help="open loop: unique names NAME-i.local sent every INTERVAL s")
    a = p.parse_args(argv)
    return {"publish": cmd_publish, "browse": cmd_browse, "send": cmd_send,
            "listen": cmd_listen, "respond": cmd_respond, "query": cmd_query}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
