"""EVE middleware: flows and DNS as Suricata-EVE-style JSON lines.

Writes one JSON object per line to ``capture.evePath`` (default
``<dirname(captureDbPath)>/eve.json``): ``event_type: "dns"`` for every DNS
message (parsed with dnspython; queries and answers in EVE dns v2 shape) and
``event_type: "flow"`` when a flow ends (idle timeout, eviction or
shutdown). Common keys follow EVE: ``timestamp``, ``flow_id``,
``in_iface``, ``src_ip``/``src_port``/``dest_ip``/``dest_port``, ``proto``,
``community_id``, ``ether``; so SIEM tooling that ingests Suricata's EVE
reads these lines unchanged. The file is bounded: at ``eveRotateSize``
bytes it is renamed to ``eve.json.1`` (replacing the previous one) and a
new one is started, so the two never hold more than twice that. Lines are
flushed when the pipeline commits, not per batch.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from edgesec.capture.decode import Row, Rows
from edgesec.capture.flowtrack import PROTO_NAMES, Flow, FlowTracker
from edgesec.capture.middleware import Batch, Context


def eve_time(ts_us: int) -> str:
    """EVE timestamp: ``2024-01-02T03:04:05.123456+0000``."""
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def dns_payload(data: bytes, rows: Rows) -> bytes | None:
    """The DNS message bytes of a frame that has a ``dns`` row."""
    ip4, ip6 = rows.get("ip4"), rows.get("ip6")
    if ip4 is not None:
        ip_end, l4 = 14 + ip4[4], 14 + ip4[1] * 4
    elif ip6 is not None:
        ip_end, l4 = 54 + ip6[2], 54
    else:
        return None
    udp = rows.get("udp")
    if udp is not None:
        return data[ip_end - (udp[3] - 8) : ip_end] if udp[3] >= 8 else None
    tcp = rows.get("tcp")
    if tcp is not None and (ip6 is None or ip6[3] == 6):
        return data[l4 + tcp[6] * 4 + 2 : ip_end]
    return None


def dns_event(msg_bytes: bytes | None, row: Row) -> dict[str, Any]:
    """EVE ``dns`` object for one message (falls back to the header row)."""
    qr = bool(row[2] & 0x8000)
    base: dict[str, Any] = {"version": 2, "type": "answer" if qr else "query", "id": row[1]}
    try:
        if msg_bytes is None:
            raise ValueError("no payload")
        msg = dns.message.from_wire(msg_bytes, ignore_trailing=True, question_only=not qr)
    except Exception:  # any malformed message: report what the header row holds
        base["rrname"] = row[7]
        return base
    if msg.question:
        q = msg.question[0]
        base["rrname"] = q.name.to_text(omit_final_dot=True)
        base["rrtype"] = dns.rdatatype.to_text(q.rdtype)
    if qr:
        base["flags"] = f"{msg.flags:x}"
        base["qr"] = True
        base["rcode"] = dns.rcode.to_text(msg.rcode())
        base["answers"] = [
            {"rrname": rrset.name.to_text(omit_final_dot=True),
             "rrtype": dns.rdatatype.to_text(rrset.rdtype), "ttl": rrset.ttl,
             "rdata": rd.to_text()}
            for rrset in msg.answer for rd in rrset]
    else:
        base["tx_id"] = 0
    return base


def _common(flow: Flow | None, ts: int, ifname: str) -> dict[str, Any]:
    ev: dict[str, Any] = {"timestamp": eve_time(ts), "in_iface": ifname}
    if flow is not None:
        ev["flow_id"] = flow.flow_id
    return ev


def flow_event(flow: Flow, reason: str) -> dict[str, Any]:
    """EVE ``flow`` event for an ended flow."""
    ev = _common(flow, flow.last_seen, flow.ifname)
    ev.update({
        "event_type": "flow", "src_ip": flow.src_ip, "src_port": flow.src_port,
        "dest_ip": flow.dst_ip, "dest_port": flow.dst_port,
        "proto": PROTO_NAMES.get(flow.proto, str(flow.proto)),
        "community_id": flow.community_id,
        "ether": {"src_mac": flow.src_mac, "dest_mac": flow.dst_mac},
        "flow": {"pkts_toserver": flow.pkts_toserver, "pkts_toclient": flow.pkts_toclient,
                 "bytes_toserver": flow.bytes_toserver, "bytes_toclient": flow.bytes_toclient,
                 "start": eve_time(flow.first_seen), "end": eve_time(flow.last_seen),
                 "age": (flow.last_seen - flow.first_seen) // 1_000_000,
                 "state": flow.state, "reason": reason, "alerted": False},
    })
    if flow.proto == 6:
        ev["tcp"] = {"tcp_flags": f"{flow.tcp_flags:02x}"}
    return ev


class EveMiddleware:
    """Append flow and DNS events to the EVE JSON-lines file."""

    name = "eve"

    def init(self, ctx: Context) -> None:
        """Open the output file (append) and a flow tracker."""
        path = ctx.options.eve_file
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._limit = max(ctx.options.eve_rotate_size, 4096)
        self._out: IO[str] = path.open("a", encoding="utf-8")
        self.tracker = FlowTracker(ctx.options.flow_timeout)

    def _write(self, ev: dict[str, Any]) -> None:
        self._out.write(json.dumps(ev, separators=(",", ":")) + "\n")
        if self._out.tell() >= self._limit:
            self._out.close()
            self._path.replace(self._path.with_name(self._path.name + ".1"))
            self._out = self._path.open("a", encoding="utf-8")

    def on_commit(self) -> None:
        """Flush the lines written since the last commit."""
        self._out.flush()

    def process(self, batch: Batch) -> None:
        """DNS events for this batch, flow events for flows that ended."""
        flows = self.tracker.update(batch.ifname, batch.frames, [p[1] for p in batch.packets])
        for rows, flow, pkt in zip(batch.frames, flows, batch.packets, strict=True):
            row = rows.get("dns")
            if row is None or flow is None:
                continue
            tcp_or_udp = rows.get("udp") or rows.get("tcp")
            ip = rows.get("ip4") or rows.get("ip6")
            if ip is None or tcp_or_udp is None:  # a dns row comes with both
                continue
            src, dst = (ip[10], ip[11]) if "ip4" in rows else (ip[6], ip[7])
            ev = _common(flow, pkt[0], batch.ifname)
            ev.update({"event_type": "dns", "src_ip": src, "src_port": tcp_or_udp[1],
                       "dest_ip": dst, "dest_port": tcp_or_udp[2],
                       "proto": "UDP" if "udp" in rows else "TCP",
                       "community_id": flow.community_id,
                       "dns": dns_event(dns_payload(pkt[2], rows), row)})
            self._write(ev)
        for flow in self.tracker.expire():
            self._write(flow_event(flow, "timeout"))

    def close(self) -> None:
        """Emit the remaining flows and close the file."""
        for flow in self.tracker.drain():
            self._write(flow_event(flow, "shutdown"))
        self._out.close()
