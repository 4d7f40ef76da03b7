"""Decoder: real packets, crafted malformed packets and hypothesis fuzzing."""

from __future__ import annotations

import contextlib
import struct

import dns.message
import dns.name
import dns.rdatatype
import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.mdns.decoder import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_PTR,
    TYPE_SRV,
    DecodeError,
    Limits,
    decode,
)
from shared_data import DATA

PCAP = DATA / "original-test.pcap"


def _pcap_payloads() -> list[bytes]:
    out = []
    with PCAP.open("rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            udp = getattr(ip, "data", None)
            if isinstance(udp, dpkt.udp.UDP) and udp.dport == 5353:
                out.append(bytes(udp.data))
    return out


PAYLOADS = _pcap_payloads()


def _header(qd=0, an=0, ns=0, ar=0, flags=0x8400) -> bytes:
    return struct.pack("!HHHHHH", 0, flags, qd, an, ns, ar)


def test_real_capture_decodes_and_matches_tshark_view():
    assert len(PAYLOADS) == 46
    msgs = [decode(p) for p in PAYLOADS]
    names = set().union(*(m.names() for m in msgs))
    assert "mick._rdlink._tcp.local" in names
    a_records = {(r.name, r.value) for m in msgs for r in m.records if r.rtype == TYPE_A}
    assert ("mick.local", "172.17.19.36") in a_records
    srv = {r.value for m in msgs for r in m.records if r.rtype == TYPE_SRV}
    assert "0 0 49152 mick.local" in srv
    # the cache-flush bit is masked off the class and reported separately
    flushed = [r for m in msgs for r in m.records if r.cache_flush]
    assert flushed and all(r.rclass == 1 for r in flushed)
    # "QU" questions: class masked, flag set, offsets recorded for the rewrite
    qu = [m for m in msgs if m.qu_offsets]
    assert qu and all(q.qclass == 1 for m in qu for q in m.questions)


def _text(name: dns.name.Name) -> str:
    labels = [lb.decode("utf-8", "backslashreplace").replace(".", "\\.") for lb in name.labels]
    return ".".join(lb for lb in labels if lb).lower()


def test_agrees_with_dnspython_where_dnspython_can_parse():
    compared = 0
    for p in PAYLOADS:
        try:
            ref = dns.message.from_wire(p)
        except Exception:
            continue  # dnspython refuses compressed NSEC rdata that real devices send
        ours = decode(p)
        assert [q.name for q in ours.questions] == [_text(q.name) for q in ref.question]
        compared += 1
    assert compared >= 30


def test_built_message_roundtrip_with_cache_flush():
    resp = dns.message.from_text(
        "id 0\nopcode QUERY\nflags QR AA\n;ANSWER\n"
        "devicea.local. 120 IN A 10.0.2.10\n"
        "devicea.local. 120 IN AAAA fe80::1\n"
        "_http._tcp.local. 4500 IN PTR web._http._tcp.local.\n"
    )
    wire = bytearray(resp.to_wire())
    m = decode(bytes(wire))
    assert m.is_response
    assert [(r.rtype, r.value) for r in m.records] == [
        (TYPE_A, "10.0.2.10"),
        (TYPE_AAAA, "fe80::1"),
        (TYPE_PTR, "web._http._tcp.local"),
    ]


@pytest.mark.parametrize(
    "packet, message",
    [
        (b"", "shorter"),
        (b"\x00" * 11, "shorter"),
        (_header(qd=0xFFFF), "too many"),
        (_header(an=200), "exceed packet size"),
        # self-pointer at offset 12: would loop forever in a naive decoder
        (_header(qd=1, flags=0) + b"\xc0\x0c" + b"\x00\x01\x00\x01", "backwards"),
        # forward pointer
        (_header(qd=1, flags=0) + b"\xc0\x20" + b"\x00\x01\x00\x01", "backwards"),
        # two names pointing at each other (loop through a second name)
        (_header(qd=2, flags=0) + b"\xc0\x12\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01",
         "backwards"),
        (_header(qd=1, flags=0) + b"\x09abc\x00\x00\x01\x00", "past end"),
        (_header(qd=1, flags=0) + b"\x03abc\x00\x00", "truncated question"),
        (_header(an=1) + b"\x00" + b"\x00\x01\x00\x01\x00\x00\x00\x78\x00\x04\x0a", "past end"),
        (_header(an=1) + b"\x00" + b"\x00\x01\x00\x01\x00\x00\x00\x78\x00\x03abc", "rdlength"),
        (_header(qd=1, flags=0) + b"\x40abc\x00\x00\x01\x00\x01", "label type"),
        (_header(qd=1, flags=0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",
         "255"),
        (_header(qd=0, flags=0) + b"junk", "trailing"),
        (b"\x00" * 9001, "exceeds"),
    ],
)
def test_malformed_packets_raise_clear_errors(packet, message):
    with pytest.raises(DecodeError, match=message):
        decode(packet)


def test_pointer_chain_depth_is_bounded():
    # a legal backwards chain of 20 one-label names each pointing to the previous one
    body = b"\x01a\x00\x00\x01\x00\x01"
    offsets = [12]
    for _ in range(20):
        offsets.append(12 + len(body))
        body += b"\x01b" + struct.pack("!H", 0xC000 | offsets[-2]) + b"\x00\x01\x00\x01"
    pkt = _header(qd=21, flags=0) + body
    with pytest.raises(DecodeError, match="too many compression pointers"):
        decode(pkt, Limits(max_pointers=16))
    assert len(decode(pkt, Limits(max_pointers=32)).questions) == 21


def test_record_count_limit():
    q = b"\x01a\x00\x00\x01\x00\x01"
    pkt = _header(qd=10, flags=0) + q * 10
    assert len(decode(pkt).questions) == 10
    with pytest.raises(DecodeError, match="too many records"):
        decode(pkt, Limits(max_records=9))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_only_decode_error(data):
    with contextlib.suppress(DecodeError):
        decode(data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(PAYLOADS),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 2000),
)
def test_fuzz_mutated_real_packets_only_decode_error(base, flips, cut):
    buf = bytearray(base)
    for pos, val in flips:
        if pos < len(buf):
            buf[pos] = val
    with contextlib.suppress(DecodeError):
        decode(bytes(buf[: max(cut, 0)] if cut < len(buf) else buf))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 0xFF), min_size=0, max_size=4),
    st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=4).map(lambda b: bytes([len(b)]) + b),
            st.integers(0, 0x3FFF).map(lambda o: struct.pack("!H", 0xC000 | o)),
            st.just(b"\x00"),
        ),
        max_size=12,
    ),
)
def test_fuzz_structured_names_and_counts(flags, counts, parts):
    counts = ([*counts, 0, 0, 0, 0])[:4]
    pkt = struct.pack("!HHHHHH", 0, flags, *counts) + b"".join(parts) + b"\x00\x01\x00\x01"
    try:
        m = decode(pkt)
    except DecodeError:
        return
    assert len(m.questions) == counts[0]


def test_known_type_numbers():
    assert dns.rdatatype.A == TYPE_A and dns.rdatatype.SRV == TYPE_SRV
