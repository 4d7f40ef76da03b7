"""Bidirectional flow tracking over decoded frames.

:class:`FlowTracker` folds decoded frames (``{table: row}``) into
:class:`Flow` records keyed by the direction-independent 5-tuple (ICMP by
the Community ID type/counterpart mapping). The originator is the sender of
the first packet seen; packets and wire bytes are counted each way. Flows
idle longer than the timeout (in packet time, so recap is deterministic)
are expired; the table is bounded (least recently seen flows are evicted
first). Flow ids are derived from the Community ID, interface and start
time, so two trackers over the same packets agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from edgesec.capture.communityid import community_id, icmp_ports
from edgesec.capture.decode import Row, Rows

PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP", 132: "SCTP"}
_FIN, _SYN, _RST = 0x01, 0x02, 0x04


@dataclass(slots=True)
class Flow:
    """One bidirectional flow; ``src`` is the originator."""

    flow_id: int
    community_id: str
    ifname: str
    proto: int
    src_ip: str
    src_port: int | None
    dst_ip: str
    dst_port: int | None
    src_mac: str
    dst_mac: str
    first_seen: int
    last_seen: int
    pkts_toserver: int = 0
    pkts_toclient: int = 0
    bytes_toserver: int = 0
    bytes_toclient: int = 0
    tcp_flags: int = 0
    state: str = "new"

    def row(self) -> Row:
        """Row for the ``flows`` table (column order of ``FLOW_COLUMNS``)."""
        return (self.flow_id, self.community_id, self.ifname, self.proto, self.src_ip,
                self.src_port, self.dst_ip, self.dst_port, self.src_mac, self.dst_mac,
                self.first_seen, self.last_seen, self.pkts_toserver, self.pkts_toclient,
                self.bytes_toserver, self.bytes_toclient, self.tcp_flags, self.state)


# (ifname, proto, addr, port, addr, port), lower endpoint first; ports None without L4
FlowKey = tuple[str, int, str, int | None, str, int | None]

FLOW_COLUMNS = ("flow_id", "community_id", "ifname", "proto", "src_ip", "src_port", "dst_ip",
                "dst_port", "src_mac", "dst_mac", "first_seen", "last_seen", "pkts_toserver",
                "pkts_toclient", "bytes_toserver", "bytes_toclient", "tcp_flags", "state")


def tuple_of(rows: Rows) -> tuple[int, str, str, int | None, int | None] | None:
    """(proto, src, dst, sport, dport) of a decoded frame, None if not IP."""
    ip = rows.get("ip4")
    if ip is not None:
        proto, src, dst = ip[8], ip[10], ip[11]
    else:
        ip = rows.get("ip6")
        if ip is None:
            return None
        src, dst = ip[6], ip[7]
        proto = 6 if "tcp" in rows else 17 if "udp" in rows else 58 if "icmp6" in rows else ip[3]
    l4 = rows.get("tcp") or rows.get("udp") or rows.get("icmp4") or rows.get("icmp6")
    if l4 is None:
        return proto, src, dst, None, None
    return proto, src, dst, l4[1], l4[2]


class FlowTracker:
    """Fold frames into flows; see the module docstring."""

    def __init__(self, timeout_s: int = 120, max_flows: int = 100_000) -> None:
        self.timeout_us = timeout_s * 1_000_000
        self.max_flows = max_flows
        self.flows: dict[FlowKey, Flow] = {}
        self._ended: list[Flow] = []
        self.now = 0

    def update(self, ifname: str, frames: list[Rows], lengths: list[int]) -> list[Flow | None]:
        """Account every frame; returns the flow of each frame (None if not IP)."""
        out: list[Flow | None] = []
        flows = self.flows
        for rows, length in zip(frames, lengths, strict=True):
            t = tuple_of(rows)
            if t is None:
                out.append(None)
                continue
            proto, src, dst, sp, dp = t
            ts = rows["eth"][0]
            if ts > self.now:
                self.now = ts
            key: FlowKey
            if proto in (1, 58) and sp is not None:
                p1, p2, one_way = icmp_ports(proto, sp, dp or 0)
                key = ((ifname, proto, src, p1, dst, p2) if one_way or (src, p1) < (dst, p2)
                       else (ifname, proto, dst, p2, src, p1))
            elif (src, sp or 0) < (dst, dp or 0):
                key = (ifname, proto, src, sp, dst, dp)
            else:
                key = (ifname, proto, dst, dp, src, sp)
            flow = flows.get(key)
            if flow is not None and ts - flow.last_seen > self.timeout_us:
                self._ended.append(flows.pop(key))
                flow = None
            if flow is None:
                eth = rows["eth"]
                cid = community_id(proto, src, dst, sp, dp)
                fid = int.from_bytes(hashlib.blake2b(
                    f"{cid}|{ifname}|{ts}".encode(), digest_size=8).digest()) & ((1 << 52) - 1)
                flow = Flow(fid, cid, ifname, proto, src, sp, dst, dp, eth[6], eth[5], ts, ts)
                flows[key] = flow
            flow.last_seen = ts
            forward = src == flow.src_ip and (sp == flow.src_port or proto in (1, 58))
            if forward:
                flow.pkts_toserver += 1
                flow.bytes_toserver += length
            else:
                flow.pkts_toclient += 1
                flow.bytes_toclient += length
            tcp = rows.get("tcp")
            if tcp is not None:
                flags = tcp[7] | tcp[8] << 1 | tcp[9] << 2 | tcp[10] << 3 | tcp[11] << 4 \
                    | tcp[12] << 5
                flow.tcp_flags |= flags
                if flags & (_FIN | _RST):
                    flow.state = "closed"
            if flow.state == "new" and flow.pkts_toclient and flow.pkts_toserver:
                flow.state = "established"
            out.append(flow)
        return out

    def expire(self) -> list[Flow]:
        """Remove and return flows idle past the timeout, and the excess."""
        limit = self.now - self.timeout_us
        gone = [k for k, f in self.flows.items() if f.last_seen < limit]
        if len(self.flows) - len(gone) > self.max_flows:
            rest = sorted((f.last_seen, k) for k, f in self.flows.items() if f.last_seen >= limit)
            gone += [k for _, k in rest[: len(rest) - self.max_flows]]
        ended, self._ended = self._ended, []
        return ended + [self.flows.pop(k) for k in gone]

    def drain(self) -> list[Flow]:
        """Remove and return every flow (shutdown)."""
        out = self._ended + list(self.flows.values())
        self._ended = []
        self.flows.clear()
        return out
