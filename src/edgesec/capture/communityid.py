"""Community ID flow hashing, version 1 (corelight/community-id-spec).

``community_id(proto, saddr, daddr, sport, dport, seed=0)`` returns the
``"1:<base64 sha1>"`` string shared by both directions of a flow. For ICMP
and ICMPv6 pass the type as ``sport`` and the code as ``dport``; the
spec's type/counterpart mapping is applied here.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from ipaddress import ip_address

_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
                130: 131, 131: 130, 139: 140, 140: 139, 144: 145, 145: 144}
_PORTED = frozenset((1, 6, 17, 58, 132))


def icmp_ports(proto: int, typ: int, code: int) -> tuple[int, int, bool]:
    """(port-equivalent 1, port-equivalent 2, one_way) for an ICMP type/code."""
    pairs = _ICMP4_PAIRS if proto == 1 else _ICMP6_PAIRS
    if typ in pairs:
        return typ, pairs[typ], False
    return typ, code, True


def community_id(proto: int, saddr: str | bytes, daddr: str | bytes,
                 sport: int | None = None, dport: int | None = None, seed: int = 0) -> str:
    """Community ID v1 (base64) of one packet's flow tuple."""
    s = saddr if isinstance(saddr, bytes) else ip_address(saddr).packed
    d = daddr if isinstance(daddr, bytes) else ip_address(daddr).packed
    ported = proto in _PORTED and sport is not None and dport is not None
    one_way = False
    p1, p2 = (sport or 0), (dport or 0)
    if ported and proto in (1, 58):
        p1, p2, one_way = icmp_ports(proto, p1, p2)
    if not one_way and not (s < d or (s == d and p1 < p2)):
        s, d, p1, p2 = d, s, p2, p1
    data = struct.pack("!H", seed) + s + d + struct.pack("!BB", proto, 0)
    if ported:
        data += struct.pack("!HH", p1, p2)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()
