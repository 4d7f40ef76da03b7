"""The detection engine: decoded frames in, alerts out (pure; no I/O, no clock).

``Engine.feed(ifname, packets, frames)`` takes what the capture decoder
produced for one batch (``edgesec.capture.decode``) and returns the alerts it
raised.  It keeps per-device sliding windows and :class:`Profile` objects;
what it knows of the registry (devices, their addresses, NAT, bridges, the
gateway's own addresses) arrives through :meth:`Engine.set_world`.

"Blocked" attempts are computed, not logged: the engine applies the same
rules as ``edgesec.net.policy`` to each new connection a device starts (to
the gateway only DNS/DHCP; to another device only over a bridge; to the WAN
only with NAT), so a blocked attempt counts exactly when the firewall drops
it, without an NFLOG round trip per dropped packet.

The detectors and their thresholds are described in docs/detect.md.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from edgesec.capture.decode import read_name
from edgesec.capture.eve import dns_payload
from edgesec.capture.flowtrack import FlowTracker
from edgesec.detect.alerts import Alert
from edgesec.detect.dnsinfo import (
    QTYPE_NULL,
    QTYPE_TXT,
    RCODE_NXDOMAIN,
    first_qtype,
    suspicious_name,
)
from edgesec.detect.model import DetectConfig, DeviceView, World
from edgesec.detect.profile import MAX_PROFILES, Profile, parent_domain
from edgesec.detect.window import DistinctWindow, Sum

Row = tuple[Any, ...]  # one decoded header row (edgesec.capture.decode)
Rows = dict[str, Row]
US = 1_000_000
GATEWAY_SERVICES = {(17, 53), (6, 53), (17, 67)}
RATE_LIMIT_S = 60.0  # one alert per device and kind per minute; repeats are aggregated
SPOOF_WINDOW_S = 10
FLOOD_WINDOW_S = 60
MAX_DEVICE_STATES = 4096


def _special(ip: str) -> bool:
    """Multicast, broadcast or unspecified: never a connection target."""
    first = ip.split(".", 1)[0]
    return (not first.isdigit() or int(first) >= 224 or ip.endswith(".255")
            or ip == "0.0.0.0")


class _DevState:
    """Sliding windows of one device."""

    __slots__ = ("blocked", "by_host", "by_port", "dns", "nx", "spoof", "upload")

    def __init__(self, cfg: DetectConfig) -> None:
        self.by_host = DistinctWindow(cfg.scan_window * US)
        self.by_port = DistinctWindow(cfg.scan_window * US)
        self.blocked = DistinctWindow(cfg.lateral_window * US)
        self.dns = DistinctWindow(cfg.dns_window * US)
        self.nx = DistinctWindow(cfg.dns_window * US)
        self.upload = Sum(cfg.upload_window * US)
        self.spoof = DistinctWindow(SPOOF_WINDOW_S * US, cap=256)


class Engine:
    """Per-device detectors over decoded frames (see the module docstring)."""

    def __init__(self, cfg: DetectConfig | None = None) -> None:
        self.cfg = cfg or DetectConfig()
        self.world = World()
        self.profiles: dict[str, Profile] = {}
        self.flows = FlowTracker(120, max_flows=20_000)
        self._state: dict[str, _DevState] = {}
        self._unknown = DistinctWindow(FLOOD_WINDOW_S * US, cap=1024)
        self._stranger = Profile(first_seen=float("inf"))
        # set by the worker: the gateway's MACs read afresh from its interfaces
        self.refresh_gateway: Callable[[], Iterable[str]] | None = None
        self._refreshed = 0.0
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._tokens = float(self.cfg.alerts_per_minute)
        self._token_ts = 0.0
        self.stats = {"frames": 0, "malformed": 0, "alerts": 0, "suppressed": 0,
                      "dropped_alerts": 0}

    # -- knowledge ---------------------------------------------------------------
    def set_world(self, world: World) -> None:
        self.world = world

    def _is_gateway(self, mac: str, urgent: bool = False) -> bool:
        """One of the gateway's own MACs.

        A Linux bridge takes the lowest MAC of its ports, so a bridge's address
        changes when a device's veth joins it: a MAC that is no registry device
        makes the worker re-read the gateway's addresses (``refresh_gateway``)
        before the frame is judged: at most once a second for ordinary frames,
        every 10 ms before raising a spoofing alert (``urgent``), so a bridge
        that changed its MAC just before answering DHCP is still the gateway
        and a flood of forged frames costs at most 100 re-reads a second.
        """
        w = self.world
        if mac in w.gateway_macs:
            return True
        if self.refresh_gateway is None or mac in w.devices:
            return False
        now = time.monotonic()
        if now - self._refreshed < (0.01 if urgent else 1.0):
            return False
        self._refreshed = now
        w.gateway_macs = frozenset(self.refresh_gateway())
        return mac in w.gateway_macs

    def profile(self, mac: str, now: float) -> Profile:
        prof = self.profiles.get(mac)
        if prof is None:
            if len(self.profiles) >= MAX_PROFILES:
                oldest = min(self.profiles, key=lambda m: self.profiles[m].last_seen)
                del self.profiles[oldest]
            prof = self.profiles[mac] = Profile(first_seen=now, dirty=True)
        return prof

    def _dev(self, mac: str) -> _DevState:
        st = self._state.get(mac)
        if st is None:
            if len(self._state) >= MAX_DEVICE_STATES:
                self._state.pop(next(iter(self._state)))
            st = self._state[mac] = _DevState(self.cfg)
        return st

    # -- input -------------------------------------------------------------------
    def feed(self, ifname: str, packets: list[tuple[int, int, bytes]],
             frames: list[Rows]) -> list[Alert]:
        """Process one decoded batch; returns the alerts raised (rate-limited)."""
        out: list[Alert] = []
        try:
            flows = self.flows.update(ifname, frames, [p[1] for p in packets])
        except Exception:
            flows = [None] * len(frames)
        for (ts, length, data), rows, flow in zip(packets, frames, flows, strict=True):
            self.stats["frames"] += 1
            try:
                self._frame(ifname, ts, length, data, rows, flow, out)
            except Exception:  # a malformed record is skipped and counted, never fatal
                self.stats["malformed"] += 1
        self.flows.expire()
        return out

    def _frame(self, ifname: str, ts: int, length: int, data: bytes, rows: Rows,
               flow: Any, out: list[Alert]) -> None:
        eth = rows.get("eth")
        if eth is None:
            self.stats["malformed"] += 1
            return
        src_mac, dst_mac = eth[6], eth[5]
        w = self.world
        ip4 = rows.get("ip4")
        ctx = _Ctx(self, ifname, ts, flow, out)
        if self._is_gateway(src_mac):
            dns = rows.get("dns")
            if dns is not None and dns[2] & 0x8000 and dns[2] & 0xF == RCODE_NXDOMAIN:
                self._nxdomain(ctx, dst_mac, dns[7])
            return
        now = ts / US
        arp = rows.get("arp")
        if arp is not None:
            self._arp(ctx, src_mac, arp)
            return
        if ip4 is None:
            return
        dev = w.devices.get(src_mac)
        if dev is None:
            self._unknown.add(ts, src_mac)
            if self._unknown.distinct() >= self.cfg.new_device_flood:
                ctx.alert("", "new_device_flood", 2,
                          f"{self._unknown.distinct()} unknown MACs sent in "
                          f"{FLOOD_WINDOW_S}s", {"macs": self._unknown.keys()})
        dhcp = rows.get("dhcp")
        if dhcp is not None and dhcp[1] == 2:
            if self._is_gateway(src_mac, urgent=True):
                return
            ctx.alert(src_mac, "rogue_dhcp", 4, f"DHCP offer/ack from device {src_mac}",
                      {"yiaddr": dhcp[9], "siaddr": dhcp[10]}, ip4)
            return
        src_ip, dst_ip, proto = ip4[10], ip4[11], ip4[8]
        # Only registry devices get a (persisted) profile: a flood of forged MACs
        # must not evict real profiles; strangers share one that never stops learning.
        prof = self.profile(src_mac, now) if dev is not None else self._stranger
        prof.last_seen = now
        prof.packets += 1
        prof.hours |= 1 << int(now // 3600 % 24)
        if proto not in prof.protos:
            prof.protos.add(proto)
            prof.dirty = True
        st = self._dev(src_mac)
        if src_ip != "0.0.0.0" and dev is not None and dev.ips and src_ip not in dev.ips:
            self._spoof(ctx, st, src_mac, src_ip, ip4)
        owner = w.by_ip.get(src_ip)
        if dev is None and owner is not None and owner != src_mac:
            ctx.alert(src_mac, "mac_change", 2,
                      f"address {src_ip} of {owner} used by new MAC {src_mac}",
                      {"owner": owner}, ip4)
        l4 = rows.get("tcp") or rows.get("udp")
        icmp = rows.get("icmp4")
        dport: int | None = None
        start = False
        if "tcp" in rows:
            tcp = rows["tcp"]
            dport = tcp[2]
            start = bool(tcp[8]) and not tcp[11]
        elif "udp" in rows:
            dport = l4[2] if l4 else None
            start = True
        elif icmp is not None:
            start, dport = icmp[1] == 8, -1
        external = not _special(dst_ip) and dst_ip not in w.gateway_ips \
            and not w.internal(dst_ip)
        if external:
            st.upload.add(ts, length)
            self._upload(ctx, st, prof, src_mac, now, ip4)
        dns = rows.get("dns")
        if dns is None and dport and dport == self.cfg.dns_forward_port \
                and dst_ip in w.gateway_ips:
            dns = _dns_of(data, rows)
            if dns is not None:
                rows = {**rows, "dns": dns}
                dport = 53
        if dns is not None and dport == 53 and not dns[2] & 0x8000:
            self._dns_query(ctx, st, prof, src_mac, now, dns, data, rows, ip4)
        if not start or _special(dst_ip) or dport is None:
            return
        if dst_ip in w.gateway_ips and (proto, dport) in GATEWAY_SERVICES:
            return
        self._target(ctx, st, prof, dev, src_mac, now, ts, proto, dst_ip, dport, external, ip4)

    # -- detectors ---------------------------------------------------------------
    def _target(self, ctx: _Ctx, st: _DevState, prof: Profile, dev: DeviceView | None,
                mac: str, now: float, ts: int, proto: int, dst: str, dport: int,
                external: bool, ip4: Row) -> None:
        """A new connection attempt: scan, lateral probing, new destination."""
        cfg, w = self.cfg, self.world
        key = (proto, dport)
        st.by_host.add(ts, (dst, key))
        st.by_port.add(ts, (key, dst))
        if st.by_host.groups[dst] >= cfg.scan_ports:
            ctx.alert(mac, "port_scan", 3,
                      f"{st.by_host.groups[dst]} ports of {dst} in {cfg.scan_window}s",
                      {"host": dst}, ip4)
        elif st.by_port.groups[key] >= cfg.scan_hosts:
            ctx.alert(mac, "port_scan", 3,
                      f"{st.by_port.groups[key]} hosts on port {dport} in {cfg.scan_window}s",
                      {"port": dport}, ip4)
        if external:
            blocked = dev is None or not dev.nat
            if not prof.learning(now, cfg.learning_window) and dst not in prof.dests:
                ctx.alert(mac, "new_destination", 1, f"new external destination {dst}",
                          {"dst": dst, "port": dport}, ip4, rate_key=dst)
            prof.learn_dest(dst)
            prof.learn_port(dport)
        else:
            same_subnet = dev is not None and any(
                _same24(dst, ip) for ip in dev.ips)
            blocked = dst in w.gateway_ips or ((
                dev is None or dst not in dev.peers) and not same_subnet)
            if blocked:
                st.blocked.add(ts, (dst, key))
                if st.blocked.distinct() >= cfg.lateral_targets:
                    ctx.alert(mac, "lateral_probe", 3,
                              f"{st.blocked.distinct()} blocked attempts on other devices "
                              f"or the gateway in {cfg.lateral_window}s",
                              {"targets": [f"{h}:{k[1]}" for h, k in st.blocked.keys(8)]},
                              ip4)

    def _upload(self, ctx: _Ctx, st: _DevState, prof: Profile, mac: str, now: float,
                ip4: Row) -> None:
        cfg = self.cfg
        total = st.upload.total
        if prof.learning(now, cfg.learning_window):
            if total > prof.upload_peak:
                prof.upload_peak = total
                prof.dirty = True
            limit = cfg.upload_ceiling
        else:
            limit = min(cfg.upload_ceiling,
                        max(cfg.upload_min_bytes, cfg.upload_factor * prof.upload_peak))
        if total > limit:
            ctx.alert(mac, "upload_volume", 3,
                      f"{total} bytes out in {cfg.upload_window}s (limit {limit})",
                      {"bytes": total, "limit": limit, "peak": prof.upload_peak}, ip4)
            st.upload.clear()

    def _dns_query(self, ctx: _Ctx, st: _DevState, prof: Profile, mac: str, now: float,
                   dns: Row, data: bytes, rows: Rows, ip4: Row) -> None:
        cfg = self.cfg
        qname = dns[7] or ""
        payload = dns_payload(data, rows)
        qtype = first_qtype(payload) if payload else None
        why = suspicious_name(qname, cfg.dns_label_length, cfg.dns_entropy)
        if not why and qtype in (QTYPE_TXT, QTYPE_NULL):
            why = "TXT query" if qtype == QTYPE_TXT else "NULL query"
        if why:
            st.dns.add(int(now * US), qname)
            if st.dns.events() >= cfg.dns_suspicious:
                ctx.alert(mac, "dns_tunnel", 3,
                          f"{st.dns.events()} tunnel-like queries in {cfg.dns_window}s ({why})",
                          {"names": st.dns.keys(5)}, ip4)
        if not qname or qname.endswith(".arpa") or qname.endswith(".local"):
            return
        parent = parent_domain(qname)
        if not prof.learning(now, cfg.learning_window) and parent not in prof.domains \
                and not why:
            ctx.alert(mac, "new_domain", 1, f"new domain {parent}", {"name": qname}, ip4,
                      rate_key=parent)
        prof.learn_domain(parent)

    def _nxdomain(self, ctx: _Ctx, mac: str, qname: str) -> None:
        st = self._dev(mac)
        st.nx.add(ctx.ts, (qname or "", ctx.ts))
        if st.nx.events() >= self.cfg.nxdomain_burst:
            ctx.alert(mac, "nxdomain_burst", 2,
                      f"{st.nx.events()} NXDOMAIN answers in {self.cfg.dns_window}s",
                      {"names": [k[0] for k in st.nx.keys(5)]})

    def _arp(self, ctx: _Ctx, src_mac: str, arp: Row) -> None:
        w = self.world
        op, sha, spa = arp[5], (arp[6] or "").lower(), arp[7]
        if op not in (1, 2) or not spa or spa == "0.0.0.0":
            return
        if spa in w.gateway_ips and not self._is_gateway(sha, urgent=True):
            ctx.alert(src_mac, "arp_spoof", 4, f"ARP from {sha} claims the gateway's {spa}",
                      {"sha": sha, "spa": spa})
            return
        owner = w.by_ip.get(spa)
        if owner is not None and owner != sha:
            ctx.alert(src_mac, "arp_spoof", 3, f"ARP from {sha} claims {spa} of {owner}",
                      {"sha": sha, "spa": spa, "owner": owner})

    def _spoof(self, ctx: _Ctx, st: _DevState, mac: str, src_ip: str, ip4: Row) -> None:
        """A packet with another source address than the device's leases.

        An address of its own subnet that nobody holds is most likely a fresh
        lease the registry has not reported yet: not counted.
        """
        w = self.world
        dev = w.devices[mac]
        taken = src_ip in w.by_ip or src_ip in w.gateway_ips
        own_subnet = any(_same24(src_ip, ip) for ip in dev.ips)
        if own_subnet and not taken:
            return
        st.spoof.add(ctx.ts, src_ip)
        if st.spoof.events() >= self.cfg.spoof_packets:
            ctx.alert(mac, "ip_spoof", 3,
                      f"{st.spoof.events()} packets with forged source {src_ip} "
                      f"in {SPOOF_WINDOW_S}s", {"forged": st.spoof.keys(8)}, ip4)

    def reset(self, mac: str) -> None:
        """Forget a device's windows and alert rate limits (after its release), so a
        repeated attack is detected and contained again at once."""
        self._state.pop(mac, None)
        for key in [k for k in self._last if k[0] == mac]:
            del self._last[key]
            self._suppressed.pop(key, None)

    # -- output ------------------------------------------------------------------
    def emit(self, alert: Alert, rate_key: str = "") -> Alert | None:
        """Rate-limit: one alert per (device, kind) per minute, repeats counted into the
        next; at most ``alerts_per_minute`` overall."""
        key = (alert.mac, alert.kind + rate_key)
        last = self._last.get(key)
        if last is not None and alert.ts - last < RATE_LIMIT_S:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self.stats["suppressed"] += 1
            return None
        rate = self.cfg.alerts_per_minute
        self._tokens = min(float(rate),
                           self._tokens + (alert.ts - self._token_ts) * rate / 60.0)
        self._token_ts = alert.ts
        if self._tokens < 1:
            self.stats["dropped_alerts"] += 1
            return None
        self._tokens -= 1
        if len(self._last) > 8192:
            self._last = {k: t for k, t in self._last.items() if alert.ts - t < RATE_LIMIT_S}
            self._suppressed = {k: n for k, n in self._suppressed.items() if k in self._last}
        self._last[key] = alert.ts
        count = 1 + self._suppressed.pop(key, 0)
        self.stats["alerts"] += 1
        if count > 1:
            alert = replace(alert, count=count)
        return alert


def _dns_of(data: bytes, rows: Rows) -> Row | None:
    """The ``dns`` row of a DNS message on a port the decoder does not know."""
    msg = dns_payload(data, rows)
    if not msg or len(msg) < 12:
        return None
    tid, flags, nq, nan, nau, nad = struct.unpack_from("!6H", msg)
    return ("", tid, flags, nq, nan, nau, nad, read_name(msg, 12) if nq else "")


def _same24(a: str, b: str) -> bool:
    return a.rsplit(".", 1)[0] == b.rsplit(".", 1)[0]


class _Ctx:
    """The frame being processed, for building alerts with its evidence."""

    __slots__ = ("engine", "flow", "ifname", "out", "ts")

    def __init__(self, engine: Engine, ifname: str, ts: int, flow: Any,
                 out: list[Alert]) -> None:
        self.engine, self.ifname, self.ts, self.flow, self.out = engine, ifname, ts, flow, out

    def alert(self, mac: str, kind: str, severity: int, message: str,
              evidence: dict[str, Any] | None = None, ip4: Row | None = None,
              rate_key: str = "") -> None:
        flow = self.flow
        a = Alert(
            ts=self.ts / US, mac=mac, kind=kind, severity=severity, message=message,
            src_ip=ip4[10] if ip4 else "", dst_ip=ip4[11] if ip4 else "",
            proto=ip4[8] if ip4 else 0,
            src_port=flow.src_port if flow is not None else None,
            dst_port=flow.dst_port if flow is not None else None,
            community_id=flow.community_id if flow is not None else "",
            flow_id=flow.flow_id if flow is not None else 0, in_iface=self.ifname,
            evidence=evidence or {})
        emitted = self.engine.emit(a, rate_key)
        if emitted is not None:
            self.out.append(emitted)
