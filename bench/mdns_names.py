"""Benchmark: cost of the mDNS name-ownership check per reflected packet.

In process, no sockets: the real :class:`edgesec.mdns.service.MdnsService`
pipeline over a registry of ``--devices`` devices, each answering for its own
host name and service instance (A + SRV + PTR, as zeroconf sends), run with
the ownership check (``Pipeline.vet``) and without it, best of ``--rounds``
on the same packets. Prints µs per packet for both and the ratio.

Run: ``.venv/bin/python bench/mdns_names.py``
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import time

import dns.message

from edgesec.config import parse_settings
from edgesec.mdns.pipeline import Interface
from edgesec.mdns.service import MdnsService
from edgesec.registry import Registry
from edgesec.store import Store

CONFIG = """[system]
defaultOpenVlanId = 2
[interfaces]
if2 = "2,10.0.0.1,10.0.255.255,255.255.0.0"
[dns]
mdnsReflectIp4 = true
mdnsRateLimit = 1000000000
mdnsRateBurst = 1000000000
"""


def packet(i: int, ip: str) -> bytes:
    text = (f"id 0\nopcode QUERY\nflags QR AA\n;ANSWER\n"
            f"host{i}.local. 120 IN A {ip}\n"
            f"_http._tcp.local. 4500 IN PTR host{i}._http._tcp.local.\n"
            f"host{i}._http._tcp.local. 120 IN SRV 0 0 80 host{i}.local.\n")
    return dns.message.from_text(text).to_wire()


def run(svc: MdnsService, iface: Interface, pkts: list[tuple[bytes, object]],
        rounds: int) -> float:
    best = float("inf")
    for r in range(rounds):
        svc.pipeline._sent.clear()
        t0 = time.perf_counter()
        for data, src in pkts:
            svc.pipeline.process(data, src, 5353, 255, iface, 10.0 + r)
        best = min(best, time.perf_counter() - t0)
    return best / len(pkts) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    reg = Registry(parse_settings(CONFIG), Store(None))
    pkts = []
    for i in range(a.devices):
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"
        ip = str(ipaddress.IPv4Address("10.0.1.0") + i)
        reg.accept_mac(mac, 2)
        reg.set_ip("add", mac, ip)
        pkts.append((packet(i, ip), ipaddress.ip_address(ip)))
    svc = MdnsService(parse_settings(CONFIG), reg)
    iface = Interface("br2", 2, ipaddress.IPv4Address("10.0.0.1"),
                      ipaddress.IPv4Network("10.0.0.0/16"))
    gc.freeze()
    vet = svc.pipeline.vet
    run(svc, iface, pkts, 1)  # warm-up: names get their owners
    with_vet = without = float("inf")
    for _ in range(a.rounds):  # interleaved, best of each: scheduling noise hits both
        svc.pipeline.vet = vet
        with_vet = min(with_vet, run(svc, iface, pkts, 1))
        svc.pipeline.vet = None
        without = min(without, run(svc, iface, pkts, 1))
    assert not svc.pipeline.counters["name-conflict"]
    print(f"{a.devices} devices, A+PTR+SRV answers: {with_vet:.2f} µs/packet with the "
          f"ownership check, {without:.2f} without (ratio {with_vet / without:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
