"""Why can (or can't) a device reach a destination? Answered from the policy itself.

The answer combines the registry facts (denied, no lease, no bridge, no NAT)
with the verdict of the very ruleset the firewall installs, interpreted packet
by packet (:mod:`edgesec.net.evaluator`), so the explanation cannot drift from
what is enforced: the rule that decides is named.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from edgesec.net import explain as X
from edgesec.net import policy as P
from edgesec.net.drops import Counts
from edgesec.net.evaluator import Packet, Ruleset
from edgesec.registry import Device, Registry, RegistryError, normalise_mac

PROBE_PORT = 80  # a typical service port: the policy does not depend on it


@dataclass
class Explanation:
    src: str
    dst: str
    allowed: bool
    rule: str
    reasons: list[str] = field(default_factory=list)
    remedies: list[str] = field(default_factory=list)
    dropped: tuple[int, int] = (0, 0)  # (packets, bytes) the kernel dropped on this path

    def as_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "allowed": self.allowed, "rule": self.rule,
                "reasons": self.reasons, "remedies": self.remedies,
                "dropped": {"packets": self.dropped[0], "bytes": self.dropped[1],
                            "forget_after_seconds": P.DROPS_TIMEOUT_S}}


def dropped_on_path(cfg: P.PolicyConfig, counts: Counts, src_ips: list[str],
                    dst_ip: str, to_internet: bool) -> tuple[int, int]:
    """Packets and bytes dropped from the source's addresses to the destination
    (to any outside address when ``to_internet``)."""
    packets = octets = 0
    for (saddr, daddr), (p, b) in counts.items():
        if saddr not in src_ips:
            continue
        if daddr == dst_ip or (to_internet and not _internal(cfg, daddr)):
            packets, octets = packets + p, octets + b
    return packets, octets


class ExplainError(ValueError):
    """A source or destination that cannot be explained (unknown, malformed)."""


def _ruleset(cfg: P.PolicyConfig, registry: Registry) -> Ruleset:
    rows = P.elements(cfg, registry.devices(), registry.bridges(),
                      registry.groups.memberships(), registry.groups.rules())
    return Ruleset.from_policy(P.skeleton(cfg).commands, rows)


def _source(registry: Registry, src: str) -> Device:
    try:
        mac = normalise_mac(src)
    except RegistryError as exc:
        raise ExplainError(f"src: {exc}") from None
    dev = registry.get(mac)
    if dev is None:
        raise ExplainError(f"src: no device {mac}")
    return dev


INTERNET = "192.0.2.1"  # TEST-NET-1 (RFC 5737): stands for "any outside address"


def _destination(registry: Registry, dst: str) -> tuple[Device | None, str]:
    """(device, address) for a MAC, an IPv4 address, or ``internet``."""
    if dst == "internet":
        return None, INTERNET
    try:
        ip = str(ipaddress.IPv4Address(dst))
    except ValueError:
        return _device_destination(registry, dst)
    return registry.device_by_ip(ip), ip


def _device_destination(registry: Registry, dst: str) -> tuple[Device, str]:
    try:
        mac = normalise_mac(dst)
    except RegistryError:
        raise ExplainError("dst: expected a MAC, an IPv4 address or 'internet'") from None
    dev = registry.get(mac)
    if dev is None:
        raise ExplainError(f"dst: no device {mac}")
    return dev, dev.primary_ip


def explain(cfg: P.PolicyConfig, registry: Registry, src: str, dst: str,
            drops: Counts | None = None) -> Explanation:
    """Explain new connections from device ``src`` to ``dst`` (MAC or IPv4 address);
    with ``drops`` (the kernel's counters), also how much of that path was dropped."""
    out = _explain(cfg, registry, src, dst)
    if drops:
        sdev = _source(registry, src)
        ddev, dip = _destination(registry, dst)
        to_internet = ddev is None and not _internal(cfg, dip)
        out.dropped = dropped_on_path(cfg, drops, P.valid_ips(cfg, sdev), dip, to_internet)
        if out.dropped[0] and not out.allowed:
            where = "the internet" if to_internet else out.dst
            out.reasons.append(f"the firewall dropped {out.dropped[0]} packets "
                               f"({out.dropped[1]} bytes) from {out.src} to {where} "
                               f"(counted until an hour passes without a drop)")
    return out


def _explain(cfg: P.PolicyConfig, registry: Registry, src: str, dst: str) -> Explanation:
    sdev = _source(registry, src)
    ddev, dip = _destination(registry, dst)
    out = Explanation(sdev.mac, ddev.mac if ddev else dip, False, "")
    if not sdev.allow:
        out.reasons.append(f"{sdev.mac} is denied: the gateway drops all its packets")
        out.remedies.append(f"ACCEPT_MAC {sdev.mac} <vlan>")
    src_ips = P.valid_ips(cfg, sdev)
    if not src_ips:
        out.reasons.append(f"{sdev.mac} has no address in VLAN {sdev.vlanid}'s subnet yet "
                           "(no DHCP lease): anti-spoofing drops what it sends")
    sub = cfg.subnet(sdev.vlanid)
    if ddev is not None:
        _device_reasons(cfg, registry, sdev, ddev, out)
    elif sub is not None and not _internal(cfg, dip):
        if not cfg.nat_interface:
            out.reasons.append("no NAT interface is configured ([nat] natInterface)")
        elif not sdev.nat:
            out.reasons.append(f"{sdev.mac} has no NAT: it may not reach the internet")
            out.remedies.append(f"ADD_NAT {sdev.mac}")
    if sub is None:
        out.reasons.append(f"VLAN {sdev.vlanid} has no configured subnet")
        return out
    if src_ips and dip:
        verdict = _ruleset(cfg, registry).verdict(_packet(cfg, sdev, src_ips[0], dip, ddev))
        out.allowed, out.rule = verdict.accepted, verdict.rule
    if out.allowed:
        named = [r for r in out.reasons if r.startswith("allowed by ")]  # bridge/group/rule
        out.reasons = ["allowed by rule " + out.rule, *named]
        out.remedies = []
    return out


def _internal(cfg: P.PolicyConfig, ip: str) -> bool:
    """An address inside the device subnets (the gateway's own, or a free one)."""
    return any(ipaddress.IPv4Address(ip) in s.network for s in cfg.subnets)


def _packet(cfg: P.PolicyConfig, sdev: Device, src_ip: str, dst_ip: str,
            ddev: Device | None) -> Packet:
    sub = cfg.subnet(sdev.vlanid)
    assert sub is not None
    if ddev is not None:
        dsub = cfg.subnet(ddev.vlanid)
        oif = dsub.bridge if dsub is not None else ""
    elif _internal(cfg, dst_ip):
        oif = ""  # an address of the gateway's own subnets: the gateway itself
    else:
        oif = cfg.nat_interface or "wan"
    return Packet(iif=sub.bridge, src_mac=sdev.mac, src_ip=src_ip, dst_ip=dst_ip, oif=oif,
                  l4proto="tcp", dport=PROBE_PORT)


def _device_reasons(cfg: P.PolicyConfig, registry: Registry, sdev: Device, ddev: Device,
                    out: Explanation) -> None:
    if ddev.mac == sdev.mac:
        out.reasons.append("source and destination are the same device")
        return
    if not ddev.allow:
        out.reasons.append(f"{ddev.mac} is denied")
    if not P.valid_ips(cfg, ddev):
        out.reasons.append(f"{ddev.mac} has no address in its VLAN's subnet (no DHCP lease)")
    if not registry.has_bridge(sdev.mac, ddev.mac):
        out.reasons.append(f"no bridge between {sdev.mac} and {ddev.mac}: devices are "
                           "isolated from each other by default")
        out.remedies.append(f"ADD_BRIDGE {sdev.mac} {ddev.mac}")
    # groups and one-way access rules: which allow it, or which would
    view = X.PolicyView.from_registry(registry)
    named = X.explain(cfg, view, sdev.mac, ddev.mac, "tcp", PROBE_PORT)
    out.reasons += [r for r in named.reasons if r.startswith(("allowed by group",
                                                              "allowed by access",
                                                              "access rule", "group "))]
    out.remedies += X.remedies(view, sdev.mac, ddev.mac, "tcp", PROBE_PORT)
