"""The detection engine on crafted frames (scapy -> the capture decoder -> Engine).

Each detector fires on its attack and stays quiet on the benign mix; windows,
profiles and the alert rate limit are bounded.
"""

from __future__ import annotations

import base64
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from edgesec.capture.decode import decode
from edgesec.detect.engine import DetectConfig, DeviceView, Engine, World
from edgesec.detect.profile import MAX_DESTS, MAX_DOMAINS, Profile

GW_MAC, GW_IP = "02:00:00:00:00:fe", "10.0.1.1"
A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
A_IP, B_IP, WAN_IP = "10.0.1.10", "10.0.2.10", "198.51.100.7"
T0 = 1_700_000_000 * 1_000_000


def world(nat: bool = True, bridged: bool = False) -> World:
    return World.build([GW_IP, "10.0.2.1"], [GW_MAC], ["10.0.1.0/24", "10.0.2.0/24"],
                       [DeviceView(A, (A_IP,), nat, frozenset({B_IP} if bridged else ())),
                        DeviceView(B, (B_IP,), nat, frozenset({A_IP} if bridged else ()))])


def engine(**cfg: object) -> Engine:
    e = Engine(DetectConfig(**cfg))  # type: ignore[arg-type]
    e.set_world(world())
    return e


def feed(e: Engine, pkts: list, start: int = T0, step_us: int = 10_000) -> list:
    packets, frames = [], []
    for i, p in enumerate(pkts):
        raw = bytes(p)
        ts = start + i * step_us
        packets.append((ts, len(raw), raw))
        frames.append(decode(raw, ts, len(raw), "br1", f"id{i}"))
    return e.feed("br1", packets, frames)


def from_a(l3: object, dst_mac: str = GW_MAC) -> object:
    return Ether(src=A, dst=dst_mac) / l3


def kinds(alerts: list) -> list[str]:
    return [a.kind for a in alerts]


def benign() -> list:
    """What the lab agents do: DNS lookups, an HTTP flow out, mDNS, DHCP renewals, NTP."""
    out = []
    for name in ("time.example.org", "api.vendor.example", "cdn1.vendor.example"):
        out.append(from_a(IP(src=A_IP, dst=GW_IP) / UDP(sport=40000, dport=53)
                          / DNS(rd=1, qd=DNSQR(qname=name))))
    out.append(from_a(IP(src=A_IP, dst=WAN_IP) / TCP(sport=40001, dport=443, flags="S")))
    out.append(from_a(IP(src=A_IP, dst=WAN_IP) / TCP(sport=40001, dport=443, flags="A")
                      / Raw(b"x" * 500)))
    out.append(from_a(IP(src=A_IP, dst="224.0.0.251") / UDP(sport=5353, dport=5353)
                      / DNS(qd=DNSQR(qname="_http._tcp.local", qtype="PTR")),
                      "01:00:5e:00:00:fb"))
    out.append(Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
               / UDP(sport=68, dport=67) / BOOTP(op=1, chaddr=bytes.fromhex("02000000000a"))
               / DHCP(options=[("message-type", "request"), "end"]))
    out.append(from_a(IP(src=A_IP, dst=WAN_IP) / UDP(sport=123, dport=123) / Raw(b"\0" * 48)))
    out.append(from_a(ARP(op=1, hwsrc=A, psrc=A_IP, pdst=GW_IP), "ff:ff:ff:ff:ff:ff"))
    return out


def test_benign_traffic_raises_nothing_during_or_after_learning() -> None:
    e = engine(learning_window=60)
    assert feed(e, benign() * 20) == []
    # after learning: the same destinations and names are known
    assert feed(e, benign() * 20, start=T0 + 120 * 1_000_000) == []
    assert e.stats["malformed"] == 0


def test_port_scan_of_one_host() -> None:
    e = engine()
    pkts = [from_a(IP(src=A_IP, dst=WAN_IP) / TCP(sport=50000, dport=p, flags="S"))
            for p in range(1, 40)]
    alerts = feed(e, pkts)
    assert kinds(alerts) == ["port_scan"]
    a = alerts[0]
    assert a.mac == A and a.severity == 3 and a.community_id.startswith("1:") and a.flow_id


def test_horizontal_scan_of_many_hosts() -> None:
    e = engine()
    pkts = [from_a(IP(src=A_IP, dst=f"198.51.100.{h}") / TCP(dport=23, flags="S"))
            for h in range(1, 40)]
    assert "port_scan" in kinds(feed(e, pkts))


def test_lateral_probing_counts_blocked_attempts_on_devices_and_gateway() -> None:
    e = engine()
    pkts = [from_a(IP(src=A_IP, dst=B_IP) / TCP(dport=p, flags="S")) for p in (22, 80, 443)]
    pkts += [from_a(IP(src=A_IP, dst=GW_IP) / TCP(dport=p, flags="S")) for p in (22, 80, 8080)]
    assert kinds(feed(e, pkts)) == ["lateral_probe"]


def test_a_bridged_peer_is_not_a_blocked_target() -> None:
    e = Engine(DetectConfig())
    e.set_world(world(bridged=True))
    pkts = [from_a(IP(src=A_IP, dst=B_IP) / TCP(dport=p, flags="S")) for p in range(1, 10)]
    assert feed(e, pkts) == []


def tunnel_queries(dport: int) -> list:
    """Twelve queries from A whose first label is 48 random base32 characters."""
    pkts = []
    for i in range(12):
        label = base64.b32encode(os.urandom(30)).decode().rstrip("=").lower()
        pkts.append(from_a(IP(src=A_IP, dst=GW_IP) / UDP(sport=41000 + i, dport=dport)
                           / DNS(rd=1, qd=DNSQR(qname=f"{label}.t.evil.example"))))
    return pkts


def test_dns_tunnel_by_long_random_labels_and_txt_volume() -> None:
    e = engine()
    pkts = tunnel_queries(53)
    assert kinds(feed(e, pkts)) == ["dns_tunnel"]
    e = engine()
    pkts = [from_a(IP(src=A_IP, dst=GW_IP) / UDP(sport=42000 + i, dport=53)
                   / DNS(rd=1, qd=DNSQR(qname=f"q{i}.evil.example", qtype="TXT")))
            for i in range(12)]
    assert kinds(feed(e, pkts)) == ["dns_tunnel"]


def test_nxdomain_burst() -> None:
    e = engine()
    pkts = [Ether(src=GW_MAC, dst=A) / IP(src=GW_IP, dst=A_IP) / UDP(sport=53, dport=43000)
            / DNS(id=i, qr=1, rcode=3, qd=DNSQR(qname=f"x{i}.dga.example")) for i in range(25)]
    alerts = feed(e, pkts)
    assert kinds(alerts) == ["nxdomain_burst"] and alerts[0].mac == A


def test_upload_far_above_the_profile() -> None:
    e = engine(learning_window=10, upload_min_bytes=100_000)
    chunk = from_a(IP(src=A_IP, dst=WAN_IP) / TCP(sport=40001, dport=443, flags="A")
                   / Raw(b"x" * 1000))
    assert feed(e, [chunk] * 5) == []  # learning: ~5 kB/min is normal
    alerts = feed(e, [chunk] * 200, start=T0 + 20 * 1_000_000, step_us=1000)
    assert kinds(alerts) == ["upload_volume"]


def test_arp_and_dhcp_impersonation_and_forged_sources() -> None:
    e = engine()
    gw_claim = from_a(ARP(op=2, hwsrc=A, psrc=GW_IP, pdst=A_IP), "ff:ff:ff:ff:ff:ff")
    peer_claim = from_a(ARP(op=2, hwsrc=A, psrc=B_IP, pdst=GW_IP), "ff:ff:ff:ff:ff:ff")
    offer = from_a(IP(src=A_IP, dst="255.255.255.255") / UDP(sport=67, dport=68)
                   / BOOTP(op=2, yiaddr="10.0.1.99") / DHCP(options=[("message-type", "offer"),
                                                                     "end"]),
                   "ff:ff:ff:ff:ff:ff")
    forged = [from_a(IP(src=B_IP, dst=WAN_IP) / UDP(dport=9999)) for _ in range(4)]
    got = feed(e, [gw_claim, peer_claim, offer, *forged])
    assert [(a.kind, a.severity) for a in got] == [("arp_spoof", 4), ("rogue_dhcp", 4),
                                                   ("ip_spoof", 3)]


def test_a_fresh_lease_in_the_own_subnet_is_not_spoofing() -> None:
    e = engine()
    pkts = [from_a(IP(src="10.0.1.77", dst=GW_IP) / UDP(dport=53) / DNS(qd=DNSQR(qname="a.b")))
            for _ in range(10)]
    assert feed(e, pkts) == []


def test_new_mac_on_a_known_address_and_new_device_flood() -> None:
    e = engine(new_device_flood=5)
    new = "02:00:00:00:00:99"
    got = feed(e, [Ether(src=new, dst=GW_MAC) / IP(src=A_IP, dst=WAN_IP) / UDP(dport=1)])
    assert kinds(got) == ["mac_change"] and got[0].mac == new
    flood = [Ether(src=f"02:00:00:00:01:{i:02x}", dst=GW_MAC) / IP(src="0.0.0.0", dst=GW_IP)
             / UDP(dport=67) for i in range(8)]
    assert kinds(feed(e, flood, start=T0 + 1_000_000)) == ["new_device_flood"]


def test_new_destination_and_domain_after_learning_alert_once() -> None:
    e = engine(learning_window=10)
    assert feed(e, benign()) == []
    later = T0 + 30 * 1_000_000
    new = [from_a(IP(src=A_IP, dst="203.0.113.5") / TCP(dport=8443, flags="S")),
           from_a(IP(src=A_IP, dst=GW_IP) / UDP(dport=53) / DNS(qd=DNSQR(qname="c2.bad.example")))]
    got = feed(e, new * 3, start=later)
    assert kinds(got) == ["new_destination", "new_domain"]
    assert all(a.severity == 1 for a in got)


def test_alerts_are_rate_limited_and_aggregated() -> None:
    e = engine()
    scan = [from_a(IP(src=A_IP, dst=WAN_IP) / TCP(sport=50000, dport=p, flags="S"))
            for p in range(1, 200)]
    assert len(feed(e, scan)) == 1
    assert e.stats["suppressed"] > 100
    again = feed(e, scan, start=T0 + 120 * 1_000_000)
    assert len(again) == 1 and again[0].count > 100


def test_the_gateway_itself_is_never_an_actor() -> None:
    e = engine()
    pkts = [Ether(src=GW_MAC, dst=A) / IP(src=GW_IP, dst=A_IP) / TCP(dport=p, flags="S")
            for p in range(1, 100)]
    assert feed(e, pkts) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_garbage_frames_never_raise(data: bytes) -> None:
    e = engine()
    ts = T0
    e.feed("br1", [(ts, len(data), data)], [decode(data, ts, len(data), "br1", "x")])


def test_malformed_records_are_skipped_and_counted() -> None:
    e = engine()
    e.feed("br1", [(T0, 10, b"")], [{}])
    e.feed("br1", [(T0, 10, b"")], [{"eth": (T0, "x", 1, 1, "br1", None, A, 0x800),
                                      "ip4": ("x",)}])
    assert e.stats["malformed"] == 2


def test_profiles_are_bounded_and_round_trip() -> None:
    p = Profile(first_seen=1.0)
    for i in range(MAX_DESTS + 50):
        p.learn_dest(f"198.51.{i // 250}.{i % 250}")
        p.learn_domain(f"d{i}.example")
    assert len(p.dests) == MAX_DESTS and len(p.domains) == MAX_DOMAINS
    q = Profile.from_json(p.to_json())
    assert q.dests == p.dests and q.domains == p.domains


@pytest.mark.parametrize("cfg", [{}, {"scan_ports": 3}])
def test_config_from_settings_keys(cfg: dict) -> None:
    from edgesec.config import parse_settings

    text = "[detect]\n" + "".join(f"{k} = {v}\n" for k, v in
                                  {"scanPorts": cfg.get("scan_ports", 15)}.items())
    s = parse_settings(text)
    assert DetectConfig.from_settings(s.detect).scan_ports == cfg.get("scan_ports", 15)


def test_reset_after_release_detects_a_repeat_at_once() -> None:
    e = engine()
    scan = [from_a(IP(src=A_IP, dst=WAN_IP) / TCP(sport=50000, dport=p, flags="S"))
            for p in range(1, 40)]
    assert kinds(feed(e, scan)) == ["port_scan"]
    assert feed(e, scan, start=T0 + 5 * 1_000_000) == []  # rate-limited
    e.reset(A)
    assert kinds(feed(e, scan, start=T0 + 10 * 1_000_000)) == ["port_scan"]


def test_strangers_get_no_profile_and_the_store_mirrors_memory(tmp_path) -> None:
    from edgesec.detect.worker import ProfileStore

    e = engine()
    flood = [Ether(src=f"02:00:00:00:02:{i:02x}", dst=GW_MAC) / IP(src="10.0.1.99", dst=WAN_IP)
             / UDP(dport=1) for i in range(50)]
    feed(e, flood + benign())
    assert set(e.profiles) == {A}
    store = ProfileStore(str(tmp_path / "d.sqlite"))
    assert store.save(e.profiles) == 1 and set(store.load()) == {A}
    e.profiles.clear()
    e.profiles["02:00:00:00:00:0b"] = Profile(first_seen=1.0, dirty=True)
    store.save(e.profiles)
    assert set(store.load()) == {"02:00:00:00:00:0b"}


def test_a_bridge_that_changed_its_mac_is_still_the_gateway() -> None:
    """A bridge takes its lowest port's MAC: DHCP answers from the new MAC are the
    gateway's once the worker re-reads its interfaces, not a rogue DHCP server."""
    e = engine()
    new_gw = "02:00:00:00:00:01"
    e.refresh_gateway = lambda: {GW_MAC, new_gw}
    ack = (Ether(src=new_gw, dst=A) / IP(src=GW_IP, dst=A_IP) / UDP(sport=67, dport=68)
           / BOOTP(op=2, yiaddr=A_IP) / DHCP(options=[("message-type", "ack"), "end"]))
    claim = Ether(src=new_gw, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=new_gw, psrc=GW_IP)
    assert feed(e, [ack, claim]) == []
    # a refresh just happened (another stranger's frame): the urgent check re-reads anyway
    e.refresh_gateway = lambda: {GW_MAC}
    stranger = Ether(src="02:00:00:00:07:07", dst=GW_MAC) / IP(src="10.0.1.77", dst=WAN_IP)
    feed(e, [stranger])
    newer = "02:00:00:00:00:02"
    e.refresh_gateway = lambda: {GW_MAC, newer}
    time.sleep(0.02)
    ack2 = Ether(src=newer, dst=A) / ack.payload
    assert feed(e, [ack2]) == []
    e2 = engine()  # without the refresh: an unknown MAC sending offers is a rogue server
    assert kinds(feed(e2, [ack])) == ["rogue_dhcp"]


def test_dns_redirected_to_the_split_dns_forwarder_still_counts() -> None:
    """With br_netfilter the bridge tap sees DNS after the redirect to the forwarder."""
    e = Engine(DetectConfig(dns_forward_port=5053))
    e.set_world(world())
    pkts = tunnel_queries(5053)
    assert kinds(feed(e, pkts)) == ["dns_tunnel"]
    assert feed(engine(), pkts) == []  # port 5053 is nothing without split DNS
