"""Batch decoder for bulk imports: frames straight into per-table value lists.

``decode_columns(packets, ifname, ids)`` gives, for every header table, one
flat list of the column values of its rows, row after row (a row is
``len(TABLES[table])`` values). The rows are exactly those that
:func:`edgesec.capture.decode.decode` gives frame by frame (a unit test
compares the two on every template, every truncation and fuzzed frames);
what differs is the shape: no dict per frame, no regrouping per table, no
function call per frame, and flat lists that the header middleware cuts
into multi-row INSERTs with one slice each. Recap spends most of its Python
time here, so this path is worth its second copy of the layer logic; live
capture uses it too when header is its only decoding middleware, and keeps
:func:`decode` otherwise (the flow, EVE and protobuf middlewares read its
per-frame rows).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from socket import AF_INET6, inet_ntoa, inet_ntop
from typing import Any

from edgesec.capture.decode import (
    _ARP,
    _ETH,
    _ICMP,
    _IP4,
    _IP6,
    _IPV6_EXT,
    _TCP,
    _UDP,
    DHCP_CLIENT_PORT,
    DHCP_SERVER_PORT,
    DNS_PORT,
    ETHERTYPE_ARP,
    ETHERTYPE_IP,
    ETHERTYPE_IPV6,
    MDNS_PORT,
    _dhcp_row,
    _dns_row,
    skip_ipv6_extensions,
)
from edgesec.capture.pcapfile import Packet
from edgesec.capture.schema import TABLE_NAMES

Columns = dict[str, list[Any]]

# Text of addresses (MAC, IPv4, IPv6) by their bytes: a gateway sees few distinct
# ones; a flood of new ones only clears the cache (bounded like decode's).
TEXT_CACHE_SIZE = 8192
_TEXT: dict[bytes, str] = {}


def _text(raw: bytes) -> str:
    """MAC (6 bytes), IPv4 (4) or IPv6 (16) text of ``raw``, memoised."""
    if len(_TEXT) >= TEXT_CACHE_SIZE:
        _TEXT.clear()
    size = len(raw)
    text = raw.hex(":") if size == 6 else inet_ntoa(raw) if size == 4 else inet_ntop(AF_INET6, raw)
    _TEXT[raw] = text
    return text


def new_columns() -> Columns:
    """An empty flat value list for every header table."""
    return {table: [] for table in TABLE_NAMES}


def decode_columns(packets: Sequence[Packet], ifname: str, ids: Sequence[str],
                   out: Columns | None = None) -> Columns:
    """Decode ``packets`` (with frame ids ``ids``) into flat per-table value lists.

    Appends to ``out`` when given. Never raises on packet content, like
    :func:`~edgesec.capture.decode.decode`: a frame contributes the rows of
    every layer whose fixed header its captured bytes hold.
    """
    cols = out if out is not None else new_columns()
    eth = cols["eth"].extend
    arp = cols["arp"].extend
    ip4 = cols["ip4"].extend
    ip6 = cols["ip6"].extend
    tcp = cols["tcp"].extend
    udp = cols["udp"].extend
    icmp4 = cols["icmp4"].extend
    icmp6 = cols["icmp6"].extend
    dns = cols["dns"].extend
    mdns = cols["mdns"].extend
    dhcp = cols["dhcp"].extend
    text = _TEXT.get
    dhcp_ports = ((DHCP_CLIENT_PORT, DHCP_SERVER_PORT), (DHCP_SERVER_PORT, DHCP_CLIENT_PORT))
    for (ts, length, data), uid in zip(packets, ids, strict=True):
        caplen = len(data)
        if caplen < 14:
            continue
        try:
            dst, src, etype = _ETH(data, 0)
            eth((ts, uid, caplen, length, ifname, text(dst) or _text(dst),
                 text(src) or _text(src), etype))
            if etype == ETHERTYPE_IP:
                if caplen < 34:
                    continue
                vhl, tos, tlen, ipid, ipoff, ttl, proto, csum, s, d = _IP4(data, 14)
                ihl = vhl & 0x0F
                ip4((uid, ihl, vhl >> 4, tos, tlen, ipid, ipoff, ttl, proto, csum,
                     text(s) or _text(s), text(d) or _text(d)))
                if vhl >> 4 != 4 or ihl < 5 or ipoff & 0x1FFF:
                    continue
                off = 14 + ihl * 4
                v6 = False
            elif etype == ETHERTYPE_IPV6:
                if caplen < 54 or data[14] >> 4 != 6:
                    continue
                word, plen, proto, hlim, s, d = _IP6(data, 14)
                ip6((uid, word & 0xFFFFF, plen, proto, hlim, data[14],
                     text(s) or _text(s), text(d) or _text(d)))
                off = 54
                if proto in _IPV6_EXT:
                    proto, off = skip_ipv6_extensions(data, 54, proto, caplen)
                    if proto in _IPV6_EXT:
                        continue
                v6 = True
            elif etype == ETHERTYPE_ARP:
                if caplen >= 42:
                    hrd, pro, hln, pln, op = _ARP(data, 14)
                    arp((uid, hrd, pro, hln, pln, op, data[22:28].hex(":"),
                         inet_ntoa(data[28:32]), data[32:38].hex(":"), inet_ntoa(data[38:42])))
                continue
            else:
                continue
            # transport and application layer at ``off``
            avail = caplen - off
            if proto == 17:
                if avail < 8:
                    continue
                sport, dport, ulen, csum = _UDP(data, off)
                udp((uid, sport, dport, ulen, csum))
                if sport == DNS_PORT or dport == DNS_PORT:
                    row = _dns_row(uid, data[off + 8:])
                    if row is not None:
                        dns(row)
                elif sport == MDNS_PORT or dport == MDNS_PORT:
                    row = _dns_row(uid, data[off + 8:])
                    if row is not None:
                        mdns(row)
                elif (sport, dport) in dhcp_ports:
                    row = _dhcp_row(uid, data[off + 8:])
                    if row is not None:
                        dhcp(row)
            elif proto == 6:
                if avail < 20:
                    continue
                sport, dport, seq, ack, offres, flags, win, csum, urp = _TCP(data, off)
                tcp((uid, sport, dport, seq, ack, offres & 0x0F, offres >> 4,
                     flags & 1, (flags >> 1) & 1, (flags >> 2) & 1, (flags >> 3) & 1,
                     (flags >> 4) & 1, (flags >> 5) & 1, win, csum, urp))
                if (sport == DNS_PORT or dport == DNS_PORT) and offres >= 0x50:
                    row = _dns_row(uid, data[off + (offres >> 4) * 4 + 2:])
                    if row is not None:
                        dns(row)
            elif proto == (58 if v6 else 1):
                if avail < 8:
                    continue
                typ, code, csum, rest = _ICMP(data, off)
                (icmp6 if v6 else icmp4)((uid, typ, code, csum, rest))
        except (struct.error, ValueError, IndexError):  # pragma: no cover - defensive
            continue
    return cols
