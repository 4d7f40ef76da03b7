"""Pure, fast packet decoder: one Ethernet frame -> header-table rows.

``decode(data, ts_us, length, ifname, uid)`` returns ``{table: row}`` where
each row is a tuple in the column order of :mod:`edgesec.capture.schema`.
It never raises: a frame is recorded layer by layer as far as its captured
bytes hold a complete fixed header; anything beyond is simply not emitted.

Hand-written with ``struct`` because it is the hot path of capture and
recap (see ``bench/capture.py``: several times faster than building dpkt
objects). Differences from the original's decoder are deliberate (see
docs/capture.md): IPv4 options and IPv6 extension headers are honoured,
non-first fragments carry no transport row, bounds are checked against the
captured length, ``tcp.doff``/``res1`` hold the real 4-bit values,
``ip6_un1_flow`` the 20-bit flow label, and ``mdns.qname``/``dhcp.chaddr``
are filled in.
"""

from __future__ import annotations

import binascii
import os
import struct
import time
from socket import AF_INET6, inet_ntoa, inet_ntop
from typing import Any

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
DNS_PORT = 53
MDNS_PORT = 5353
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
MAX_QNAME = 254
_IPV6_EXT = frozenset((0, 43, 44, 51, 60))

_ETH = struct.Struct("!6s6sH").unpack_from
_ARP = struct.Struct("!HHBBH").unpack_from
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_IP6 = struct.Struct("!IHBB16s16s").unpack_from
_TCP = struct.Struct("!HHIIBBHHH").unpack_from
_UDP = struct.Struct("!HHHH").unpack_from
_ICMP = struct.Struct("!BBHI").unpack_from
_DNS = struct.Struct("!HHHHHH").unpack_from
_DHCP = struct.Struct("!BBBBIHH4s4s4s4s").unpack_from
_U16 = struct.Struct("!H").unpack_from
_EXT = struct.Struct("!BB").unpack_from

# One table row: SQLite values in the column order of :mod:`edgesec.capture.schema`
# (read positionally by the middlewares, so the element types are per column).
Row = tuple[Any, ...]
Rows = dict[str, Row]

_NTOA_CACHE: dict[bytes, str] = {}
NTOA_CACHE_SIZE = 4096  # addresses are few on a gateway; a flood of new ones just clears it


def _ntoa(raw: bytes) -> str:
    """Dotted IPv4 text of 4 bytes, memoised (a gateway sees few distinct addresses)."""
    text = _NTOA_CACHE.get(raw)
    if text is None:
        if len(_NTOA_CACHE) >= NTOA_CACHE_SIZE:
            _NTOA_CACHE.clear()
        text = _NTOA_CACHE[raw] = inet_ntoa(raw)
    return text


class _IdClock:
    """State of the UUIDv7 generator: the last millisecond and a counter within it."""

    ms = 0
    counter = 0


_COUNTER_BITS = 42  # RFC 9562 6.2 method 1: rand_a (12 bits) + the top 30 bits of rand_b


# Where the 16 variable hex digits of an id's last two groups go in its text
# ("xxxxxxxx-xxxx-7xxx-" is the 19-character prefix, then "cccc-ccccrrrrrrrr").
_TAIL_POS = tuple(19 + j + (j >= 4) for j in range(16))


def new_ids(n: int) -> list[str]:
    """``n`` UUIDv7 strings (RFC 9562; lowercase, 36 chars), increasing.

    The original used random UUIDv4 ids.  v7 ids are still unique (a 42-bit
    counter within each millisecond plus 32 random bits) but ordered by
    creation time, so the layer tables, keyed by id, grow at their end instead
    of at random B-tree positions: recap is ~17% faster, and ids sort by time.
    """
    now = time.time_ns() // 1_000_000
    clock = _IdClock
    if now > clock.ms:
        clock.ms, clock.counter = now, 0
    if clock.counter + n >= 1 << _COUNTER_BITS:  # never in practice: borrow the next ms
        clock.ms, clock.counter = clock.ms + 1, 0
    ms, start = clock.ms, clock.counter
    clock.counter += n
    # The first 19 characters (ms, version, top 12 counter bits) are the same for
    # every id that shares the counter's top bits. For each run of such ids the
    # rest is built without a Python step per id: the 8 bytes (variant + low 30
    # counter bits, 32 random bits) of every id side by side, hexlified at once,
    # written into the repeated prefix text by strided slices, split at commas.
    out: list[str] = []
    i = 0
    while i < n:
        c = start + i
        top = c >> 30
        run = min(n - i, ((top + 1) << 30) - c)
        low = (c & 0x3FFFFFFF) | 0x80000000  # variant 0b10 + the low 30 counter bits
        raw = bytearray(8 * run)
        counters = struct.pack(f">{run}I", *range(low, low + run))
        rand = os.urandom(4 * run)
        for j in range(4):
            raw[j::8] = counters[j::4]
            raw[4 + j::8] = rand[j::4]
        digits = binascii.hexlify(raw)
        head = f"{ms:012x}{0x7000 | top:04x}"
        text = bytearray(f"{head[:8]}-{head[8:12]}-{head[12:16]}-0000-000000000000,"
                         .encode() * run)
        for j, pos in enumerate(_TAIL_POS):
            text[pos::37] = digits[j::16]
        out += text[:-1].decode("ascii").split(",")
        i += run
    return out


def read_name(msg: bytes, off: int) -> str:
    """Domain name at ``off`` of DNS message ``msg``, dotted, no trailing dot.

    Follows compression pointers (at most 32 jumps), stops at the end of the
    captured bytes, truncates to 254 characters; never raises.
    """
    labels: list[str] = []
    size = 0
    jumps = 0
    end = len(msg)
    while off < end:
        n = msg[off]
        if n == 0:
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= end or jumps >= 32:
                break
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            continue
        if n & 0xC0:
            break
        label = msg[off + 1 : off + 1 + n].decode("ascii", "backslashreplace")
        size += len(label) + 1
        if size > MAX_QNAME + 1:
            break
        labels.append(label)
        off += n + 1
    return ".".join(labels)


def _dns_row(uid: str, msg: bytes) -> Row | None:
    """dns/mdns row from a DNS message (None when the 12-byte header is cut)."""
    if len(msg) < 12:
        return None
    tid, flags, nq, nan, nau, nad = _DNS(msg, 0)
    qname = read_name(msg, 12) if nq else ""
    return (uid, tid, flags, nq, nan, nau, nad, qname)


def _dhcp_row(uid: str, msg: bytes) -> Row | None:
    """dhcp row (BOOTP fixed part); ``chaddr`` holds ``hlen`` bytes as hex."""
    if len(msg) < 28:
        return None
    op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi = _DHCP(msg, 0)
    chaddr = msg[28 : 28 + min(hlen, 16)].hex(":") if len(msg) >= 28 + min(hlen, 16) else ""
    return (uid, op, htype, hlen, hops, xid, secs, flags,
            inet_ntoa(ci), inet_ntoa(yi), inet_ntoa(si), inet_ntoa(gi), chaddr)


def _transport(rows: Rows, uid: str, data: bytes, off: int, proto: int, v6: bool) -> None:
    """Decode TCP/UDP/ICMP at ``off`` and the application layer above it."""
    avail = len(data) - off
    if proto == 17:
        if avail < 8:
            return
        sport, dport, ulen, csum = _UDP(data, off)
        rows["udp"] = (uid, sport, dport, ulen, csum)
        if sport == DNS_PORT or dport == DNS_PORT:
            row = _dns_row(uid, data[off + 8 :])
            if row is not None:
                rows["dns"] = row
        elif sport == MDNS_PORT or dport == MDNS_PORT:
            row = _dns_row(uid, data[off + 8 :])
            if row is not None:
                rows["mdns"] = row
        elif (sport, dport) in ((68, 67), (67, 68)):
            row = _dhcp_row(uid, data[off + 8 :])
            if row is not None:
                rows["dhcp"] = row
    elif proto == 6:
        if avail < 20:
            return
        sport, dport, seq, ack, offres, flags, win, csum, urp = _TCP(data, off)
        rows["tcp"] = (uid, sport, dport, seq, ack, offres & 0x0F, offres >> 4,
                       flags & 1, (flags >> 1) & 1, (flags >> 2) & 1, (flags >> 3) & 1,
                       (flags >> 4) & 1, (flags >> 5) & 1, win, csum, urp)
        if sport == DNS_PORT or dport == DNS_PORT:
            hl = (offres >> 4) * 4
            if hl >= 20:
                row = _dns_row(uid, data[off + hl + 2 :])
                if row is not None:
                    rows["dns"] = row
    elif proto == (58 if v6 else 1):
        if avail < 8:
            return
        typ, code, csum, rest = _ICMP(data, off)
        rows["icmp6" if v6 else "icmp4"] = (uid, typ, code, csum, rest)



def skip_ipv6_extensions(data: bytes, off: int, proto: int, caplen: int) -> tuple[int, int]:
    """Follow IPv6 extension headers from ``off``: (next protocol, its offset).

    The protocol returned is still an extension header's when no transport
    header follows: a non-first fragment, a truncated chain, more than 8 hops.
    """
    hops = 0
    while proto in _IPV6_EXT and hops < 8 and off + 8 <= caplen:
        hops += 1
        nh, hlen = _EXT(data, off)
        if proto == 44:
            if _U16(data, off + 2)[0] & 0xFFF8:
                return proto, off  # non-first fragment
            off += 8
        elif proto == 51:
            off += (hlen + 2) * 4
        else:
            off += (hlen + 1) * 8
        proto = nh
    return proto, off

def decode(data: bytes, ts_us: int, length: int, ifname: str, uid: str) -> Rows:
    """Decode one Ethernet frame into ``{table: row}``; never raises.

    ``data`` is the captured bytes (caplen = ``len(data)``), ``length`` the
    wire length, ``uid`` the frame id shared by all its rows.
    """
    caplen = len(data)
    if caplen < 14:
        return {}
    dst, src, etype = _ETH(data, 0)
    rows: Rows = {"eth": (ts_us, uid, caplen, length, ifname, dst.hex(":"), src.hex(":"), etype)}
    try:
        if etype == ETHERTYPE_IP:
            if caplen < 34:
                return rows
            vhl, tos, tlen, ipid, ipoff, ttl, proto, csum, s, d = _IP4(data, 14)
            ver = vhl >> 4
            ihl = vhl & 0x0F
            get = _NTOA_CACHE.get
            rows["ip4"] = (uid, ihl, ver, tos, tlen, ipid, ipoff, ttl, proto, csum,
                           get(s) or _ntoa(s), get(d) or _ntoa(d))
            if ver == 4 and ihl >= 5 and not ipoff & 0x1FFF:
                _transport(rows, uid, data, 14 + ihl * 4, proto, False)
        elif etype == ETHERTYPE_IPV6:
            if caplen < 54 or data[14] >> 4 != 6:
                return rows
            word, plen, nxt, hlim, s, d = _IP6(data, 14)
            rows["ip6"] = (uid, word & 0xFFFFF, plen, nxt, hlim, data[14],
                           inet_ntop(AF_INET6, s), inet_ntop(AF_INET6, d))
            nxt, off = skip_ipv6_extensions(data, 54, nxt, caplen)
            if nxt not in _IPV6_EXT:
                _transport(rows, uid, data, off, nxt, True)
        elif etype == ETHERTYPE_ARP:
            if caplen < 42:
                return rows
            hrd, pro, hln, pln, op = _ARP(data, 14)
            rows["arp"] = (uid, hrd, pro, hln, pln, op, data[22:28].hex(":"),
                           inet_ntoa(data[28:32]), data[32:38].hex(":"), inet_ntoa(data[38:42]))
    except (struct.error, ValueError, IndexError):  # pragma: no cover - defensive
        pass
    return rows
