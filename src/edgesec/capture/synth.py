"""Synthetic mixed IoT-like traffic for tests and benchmarks (needs scapy).

``templates(seed)`` crafts a varied set of frames with scapy: TCP and UDP
flows over IPv4/IPv6, DNS over UDP and TCP, mDNS v4/v6, DHCP, ARP,
ICMP/ICMPv6 (incl. MLD behind a hop-by-hop header), IPv4 options and
fragments, an 802.3 LLC frame. ``write_mixed(path, n)`` cycles them into an
``n``-packet pcap quickly (raw bytes, increasing timestamps). scapy is a
test-only dependency, so it is imported lazily.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgesec.capture.pcapfile import PcapWriter

if TYPE_CHECKING:
    from scapy.packet import Packet


def templates(seed: int = 1) -> list[Packet]:
    """A list of scapy packets covering every decoded protocol."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
    from scapy.layers.inet6 import (
        ICMPv6EchoReply,
        ICMPv6EchoRequest,
        ICMPv6MLReport2,
        ICMPv6ND_NS,
        IPv6,
        IPv6ExtHdrHopByHop,
        RouterAlert,
    )
    from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether
    from scapy.packet import Raw

    rnd = random.Random(seed)
    dev = [f"02:00:00:00:00:{i:02x}" for i in range(1, 9)]
    gw = "02:00:00:00:00:fe"
    out: list[Packet] = []
    for i, mac in enumerate(dev):
        ip = f"10.0.{i}.2"
        ip6 = f"fd00::{i + 2:x}"
        e = Ether(src=mac, dst=gw)
        r = Ether(src=gw, dst=mac)
        sport = rnd.randint(20000, 60000)
        # TCP flow v4
        out += [e / IP(src=ip, dst="10.9.0.1") / TCP(sport=sport, dport=443, flags="S", seq=1000),
                r / IP(src="10.9.0.1", dst=ip) / TCP(sport=443, dport=sport, flags="SA",
                                                      seq=5000, ack=1001),
                e / IP(src=ip, dst="10.9.0.1") / TCP(sport=sport, dport=443, flags="A",
                                                      seq=1001, ack=5001),
                e / IP(src=ip, dst="10.9.0.1") / TCP(sport=sport, dport=443, flags="PA",
                                                      seq=1001, ack=5001) / Raw(b"x" * 200),
                r / IP(src="10.9.0.1", dst=ip) / TCP(sport=443, dport=sport, flags="FA",
                                                      seq=5001, ack=1201, urgptr=7)]
        # TCP v6
        out += [e / IPv6(src=ip6, dst="fd00::1", fl=0x12345) / TCP(sport=sport, dport=8883),
                r / IPv6(src="fd00::1", dst=ip6) / TCP(sport=8883, dport=sport, flags="SA")]
        # UDP flow
        out += [e / IP(src=ip, dst="10.9.0.2") / UDP(sport=sport, dport=1883) / Raw(b"m" * 40),
                r / IP(src="10.9.0.2", dst=ip) / UDP(sport=1883, dport=sport) / Raw(b"a" * 8)]
        # DNS over UDP and TCP
        name = f"device{i}.example.com"
        out += [e / IP(src=ip, dst="10.0.0.1") / UDP(sport=sport + 1, dport=53)
                / DNS(id=i, rd=1, qd=DNSQR(qname=name)),
                r / IP(src="10.0.0.1", dst=ip) / UDP(sport=53, dport=sport + 1)
                / DNS(id=i, qr=1, qd=DNSQR(qname=name),
                      an=DNSRR(rrname=name, rdata="93.184.216.34")),
                e / IP(src=ip, dst="10.0.0.1") / TCP(sport=sport + 2, dport=53, flags="PA")
                / Raw(_tcp_dns(bytes(DNS(id=77, qd=DNSQR(qname="tcp.example.org")))))]
        # mDNS v4 and v6
        out += [e / IP(src=ip, dst="224.0.0.251") / UDP(sport=5353, dport=5353)
                / DNS(qd=DNSQR(qname=f"_hap{i}._tcp.local", qtype="PTR")),
                e / IPv6(src=f"fe80::{i + 2:x}", dst="ff02::fb") / UDP(sport=5353, dport=5353)
                / DNS(qr=1, aa=1, an=DNSRR(rrname=f"cam{i}.local", rdata=ip))]
        # DHCP
        out += [Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                / UDP(sport=68, dport=67)
                / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=0x1000 + i, flags=0x8000)
                / DHCP(options=[("message-type", "discover"), "end"]),
                r / IP(src="10.0.0.1", dst=ip) / UDP(sport=67, dport=68)
                / BOOTP(op=2, yiaddr=ip, siaddr="10.0.0.1", giaddr="10.0.0.254",
                        chaddr=bytes.fromhex(mac.replace(":", "")), xid=0x1000 + i)
                / DHCP(options=[("message-type", "offer"), "end"])]
        # ARP
        out += [Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=mac, psrc=ip, pdst="10.0.0.1"),
                r / ARP(op=2, hwsrc=gw, psrc="10.0.0.1", hwdst=mac, pdst=ip)]
        # ICMP / ICMPv6
        out += [e / IP(src=ip, dst="10.0.0.1") / ICMP(type=8, id=i, seq=1),
                r / IP(src="10.0.0.1", dst=ip) / ICMP(type=0, id=i, seq=1),
                e / IP(src=ip, dst="10.0.0.1") / ICMP(type=5, code=1, gw="10.0.0.99"),
                e / IPv6(src=ip6, dst="fd00::1") / ICMPv6EchoRequest(id=i, seq=2),
                r / IPv6(src="fd00::1", dst=ip6) / ICMPv6EchoReply(id=i, seq=2),
                e / IPv6(src=ip6, dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="fd00::1"),
                e / IPv6(src=f"fe80::{i + 2:x}", dst="ff02::16")
                / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLReport2()]
        # IPv4 with options, and a fragmented UDP datagram
        out += [e / IP(src=ip, dst="10.9.0.3", options=[IPOption_RR()]) / UDP(sport=7, dport=7)]
        frags = (e / IP(src=ip, dst="10.9.0.3", id=900 + i, flags=0)
                 / UDP(sport=9999, dport=9) / Raw(b"f" * 64))
        from scapy.layers.inet import fragment

        split: Callable[..., list[Packet]] = fragment  # scapy leaves it unannotated
        out += split(frags, fragsize=32)
    # 802.3 length frame (spanning tree)
    out.append(Dot3(src=dev[0], dst="01:80:c2:00:00:00") / LLC() / STP())
    return out


def _tcp_dns(msg: bytes) -> bytes:
    return len(msg).to_bytes(2, "big") + msg


def write_mixed(path: Path, n: int, seed: int = 1, start_us: int = 1_700_000_000_000_000) -> int:
    """Write an ``n``-packet pcap cycling :func:`templates`; returns bytes written."""
    raws = [bytes(p) for p in templates(seed)]
    with path.open("wb") as fh:
        w = PcapWriter(fh)
        k = len(raws)
        for i in range(n):
            data = raws[i % k]
            w.write(start_us + i * 100, len(data), data)
        return w.size
