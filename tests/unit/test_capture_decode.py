"""Decoder against scapy-crafted packets: every table, every column."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6MLReport2,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    RouterAlert,
)
from scapy.layers.l2 import ARP, LLC, STP, Dot3, Ether
from scapy.packet import Raw

from edgesec.capture.decode import decode, new_ids, read_name
from edgesec.capture.schema import TABLES, columns
from edgesec.capture.synth import templates

MAC_A = "02:aa:bb:cc:dd:01"
MAC_B = "02:aa:bb:cc:dd:02"


def dec(pkt, ifname="br0", uid="fid", ts=1_664_194_593_636_003):
    raw = bytes(pkt)
    return decode(raw, ts, len(raw), ifname, uid)


def row(rows, table):
    return dict(zip(columns(table), rows[table], strict=True))


def eth(**kw):
    return Ether(src=MAC_A, dst=MAC_B, **kw)


def test_eth_columns():
    pkt = eth() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP()
    rows = dec(pkt)
    r = row(rows, "eth")
    assert r == {"timestamp": 1_664_194_593_636_003, "id": "fid", "caplen": len(bytes(pkt)),
                 "length": len(bytes(pkt)), "ifname": "br0", "ether_dhost": MAC_B,
                 "ether_shost": MAC_A, "ether_type": 0x0800}
    assert {t: v[0] if t != "eth" else v[1] for t, v in rows.items()} == dict.fromkeys(rows, "fid")


def test_caplen_shorter_than_wire_length():
    raw = bytes(eth() / IP() / UDP() / Raw(b"x" * 100))
    rows = decode(raw[:50], 1, len(raw), "ifname", "i")
    assert rows["eth"][2:4] == (50, len(raw))


def test_8023_length_frame_gives_only_eth():
    pkt = Dot3(src=MAC_A, dst="01:80:c2:00:00:00") / LLC() / STP()
    rows = dec(pkt)
    assert set(rows) == {"eth"}
    assert row(rows, "eth")["ether_type"] == len(bytes(pkt.payload))


def test_arp_columns():
    pkt = eth() / ARP(op=2, hwsrc=MAC_A, psrc="10.0.0.2", hwdst=MAC_B, pdst="10.0.0.1")
    r = row(dec(pkt), "arp")
    assert r == {"id": "fid", "ar_hrd": 1, "ar_pro": 0x0800, "ar_hln": 6, "ar_pln": 4,
                 "ar_op": 2, "arp_sha": MAC_A, "arp_spa": "10.0.0.2", "arp_tha": MAC_B,
                 "arp_tpa": "10.0.0.1"}


def test_ip4_columns():
    pkt = eth() / IP(src="10.1.2.3", dst="192.168.9.8", tos=0x28, id=4242, flags="DF",
                     ttl=33) / UDP(sport=1, dport=2)
    ip = IP(bytes(pkt.payload))
    r = row(dec(pkt), "ip4")
    assert r == {"id": "fid", "ip_hl": 5, "ip_v": 4, "ip_tos": 0x28, "ip_len": ip.len,
                 "ip_id": 4242, "ip_off": 0x4000, "ip_ttl": 33, "ip_p": 17,
                 "ip_sum": ip.chksum, "ip_src": "10.1.2.3", "ip_dst": "192.168.9.8"}


def test_ip4_options_shift_the_transport_header():
    pkt = eth() / IP(options=[IPOption_RR()]) / UDP(sport=1234, dport=4321)
    rows = dec(pkt)
    assert row(rows, "ip4")["ip_hl"] > 5
    assert row(rows, "udp")["source"] == 1234 and row(rows, "udp")["dest"] == 4321


def test_ip4_later_fragment_has_no_transport_row():
    frags = fragment(eth() / IP(id=7) / UDP(sport=5, dport=6) / Raw(b"z" * 64), fragsize=32)
    first, *rest = [dec(f) for f in frags]
    assert "udp" in first
    assert rest and all("udp" not in r and "ip4" in r for r in rest)


def test_ip4_wrong_version_row_without_transport():
    raw = bytearray(bytes(eth() / IP() / TCP()))
    raw[14] = 0x55
    rows = decode(bytes(raw), 0, len(raw), "i", "x")
    assert row(rows, "ip4")["ip_v"] == 5 and "tcp" not in rows


def test_ip6_columns_store_the_flow_label():
    pkt = eth() / IPv6(src="fd00::2", dst="fd00::1", tc=0xA4, fl=0xABCDE, hlim=9) / UDP()
    r = row(dec(pkt), "ip6")
    assert r == {"id": "fid", "ip6_un1_flow": 0xABCDE, "ip6_un1_plen": 8, "ip6_un1_nxt": 17,
                 "ip6_un1_hlim": 9, "ip6_un2_vfc": 0x6A, "ip6_src": "fd00::2",
                 "ip6_dst": "fd00::1"}


def test_ip6_extension_headers_are_walked():
    pkt = eth() / IPv6(dst="ff02::16") / IPv6ExtHdrHopByHop(options=[RouterAlert()]) \
        / ICMPv6MLReport2()
    rows = dec(pkt)
    assert row(rows, "ip6")["ip6_un1_nxt"] == 0
    assert row(rows, "icmp6")["icmp6_type"] == 143


def test_ip6_later_fragment_has_no_transport_row():
    pkt = eth() / IPv6() / IPv6ExtHdrFragment(offset=3, m=0, id=1) / Raw(b"q" * 20)
    rows = dec(pkt)
    assert "ip6" in rows and not {"tcp", "udp", "icmp6"} & set(rows)
    first = eth() / IPv6() / IPv6ExtHdrFragment(offset=0, m=1) / UDP(sport=3, dport=4)
    assert row(dec(first), "udp")["source"] == 3


@pytest.mark.parametrize("ipl", [IP(src="1.2.3.4", dst="5.6.7.8"), IPv6()])
def test_tcp_columns(ipl):
    pkt = eth() / ipl / TCP(sport=40000, dport=443, seq=0xDEADBEEF, ack=12345, flags="FSRPAU",
                            window=5000, urgptr=77, reserved=5)
    t = TCP(bytes(pkt[TCP]))
    r = row(dec(pkt), "tcp")
    assert r == {"id": "fid", "source": 40000, "dest": 443, "seq": 0xDEADBEEF, "ack_seq": 12345,
                 "res1": t.reserved << 1 & 0xF | 0, "doff": 5, "fin": 1, "syn": 1, "rst": 1,
                 "psh": 1, "ack": 1, "urg": 1, "window": 5000, "check_p": t.chksum,
                 "urg_ptr": 77}


def test_tcp_doff_is_not_shifted_like_the_original():
    pkt = eth() / IP() / TCP(options=[("MSS", 1460), ("NOP", None), ("NOP", None)])
    assert row(dec(pkt), "tcp")["doff"] == 7


def test_udp_columns():
    pkt = eth() / IP() / UDP(sport=1111, dport=2222) / Raw(b"abc")
    u = UDP(bytes(pkt[UDP]))
    assert row(dec(pkt), "udp") == {"id": "fid", "source": 1111, "dest": 2222, "len": 11,
                                    "check_p": u.chksum}


def test_icmp4_columns():
    pkt = eth() / IP() / ICMP(type=5, code=1, gw="10.0.0.99")
    i = ICMP(bytes(pkt[ICMP]))
    assert row(dec(pkt), "icmp4") == {"id": "fid", "type": 5, "code": 1, "checksum": i.chksum,
                                      "gateway": 0x0A000063}
    echo = row(dec(eth() / IP() / ICMP(type=8, id=0x1234, seq=0x5678)), "icmp4")
    assert echo["gateway"] == 0x12345678


def test_icmp6_columns():
    pkt = eth() / IPv6() / ICMPv6EchoRequest(id=0x0102, seq=0x0304)
    i = ICMPv6EchoRequest(bytes(pkt[ICMPv6EchoRequest]))
    assert row(dec(pkt), "icmp6") == {"id": "fid", "icmp6_type": 128, "icmp6_code": 0,
                                      "icmp6_cksum": i.cksum, "icmp6_un_data32": 0x01020304}


def test_dns_columns_udp():
    pkt = eth() / IP() / UDP(sport=5000, dport=53) / DNS(
        id=0xBEEF, rd=1, qd=DNSQR(qname="www.example.com"),
        an=DNSRR(rrname="www.example.com", rdata="1.2.3.4"))
    d = DNS(bytes(pkt[DNS]))
    r = row(dec(pkt), "dns")
    assert r == {"id": "fid", "tid": 0xBEEF, "flags": int.from_bytes(bytes(d)[2:4], "big"),
                 "nqueries": 1, "nanswers": 1, "nauth": 0, "nother": 0,
                 "qname": "www.example.com"}
    assert "mdns" not in dec(pkt)


def test_dns_over_tcp_skips_the_length_prefix():
    msg = bytes(DNS(id=9, qd=DNSQR(qname="a.b")))
    pkt = eth() / IP() / TCP(sport=3333, dport=53) / Raw(len(msg).to_bytes(2, "big") + msg)
    r = row(dec(pkt), "dns")
    assert r["tid"] == 9 and r["qname"] == "a.b"


def test_tcp_to_port_53_without_payload_has_no_dns_row():
    assert "dns" not in dec(eth() / IP() / TCP(dport=53, flags="S"))


@pytest.mark.parametrize("ipl", [IP(dst="224.0.0.251"), IPv6(dst="ff02::fb")])
def test_mdns_qname_is_filled(ipl):
    pkt = eth() / ipl / UDP(sport=5353, dport=5353) / DNS(
        qd=DNSQR(qname="_hap._tcp.local", qtype="PTR"))
    r = row(dec(pkt), "mdns")
    assert r["qname"] == "_hap._tcp.local" and r["nqueries"] == 1
    assert "dns" not in dec(pkt)


def test_dhcp_columns_with_chaddr():
    pkt = eth() / IP() / UDP(sport=67, dport=68) / BOOTP(
        op=2, htype=1, hlen=6, hops=1, xid=0x01020304, secs=9, flags=0x8000,
        ciaddr="1.1.1.1", yiaddr="10.0.0.5", siaddr="10.0.0.1", giaddr="10.0.0.254",
        chaddr=bytes.fromhex("02aabbccdd01")) / DHCP(options=[("message-type", "offer"), "end"])
    assert row(dec(pkt), "dhcp") == {
        "id": "fid", "op": 2, "htype": 1, "hlen": 6, "hops": 1, "xid": 0x01020304, "secs": 9,
        "flags": 0x8000, "ciaddr": "1.1.1.1", "yiaddr": "10.0.0.5", "siaddr": "10.0.0.1",
        "giaddr": "10.0.0.254", "chaddr": MAC_A}


def test_dhcp_needs_the_client_server_port_pair():
    pkt = eth() / IP() / UDP(sport=67, dport=67) / BOOTP()
    assert "dhcp" not in dec(pkt)


def test_read_name_follows_compression_and_stops_on_loops():
    msg = b"\x00" * 12 + b"\x03foo\x03bar\x00" + b"\x03baz\xc0\x0c"
    assert read_name(msg, 12) == "foo.bar"
    assert read_name(msg, 21) == "baz.foo.bar"
    loop = b"\x00" * 12 + b"\xc0\x0c"
    assert read_name(loop, 12) == ""
    long = b"\x00" * 12 + (b"\x3f" + b"a" * 63) * 8 + b"\x00"
    assert len(read_name(long, 12)) <= 254


def test_ids_are_uuid7_unique_and_increasing():
    ids = new_ids(50) + new_ids(5000) + new_ids(1)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    pat = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(pat.match(i) for i in ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    ms = int(ids[0].replace("-", "")[:12], 16)
    assert abs(ms / 1000 - time.time()) < 3600  # the timestamp field is the creation time


def test_every_truncation_of_every_template_decodes():
    for pkt in templates():
        raw = bytes(pkt)
        full = decode(raw, 0, len(raw), "i", "x")
        for cut in range(len(raw) + 1):
            rows = decode(raw[:cut], 0, len(raw), "i", "x")
            assert ("eth" in rows) == (cut >= 14)
            assert set(rows) <= set(full)
            for table, r in rows.items():
                assert len(r) == len(TABLES[table])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(data):
    rows = decode(data, 0, len(data), "i", "x")
    for table, r in rows.items():
        assert len(r) == len(TABLES[table])


_TEMPLATES = [bytes(p) for p in templates()]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_TEMPLATES), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                              max_size=6))
def test_fuzz_mutated_templates_never_raise(raw, flips):
    data = bytearray(raw)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    rows = decode(bytes(data), 0, len(data), "i", "x")
    for table, r in rows.items():
        assert len(r) == len(TABLES[table])
