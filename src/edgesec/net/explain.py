"""Why may (or may not) one device open a connection to another? Pure.

Two views of the same decision, held to agree by the tests:

* :func:`explain` reads the registry state (:class:`PolicyView`) and answers in
  words that name the bridge, group or access rule that allows the
  connection — or, for a blocked one, what blocks it and which group or rule
  *would* allow it (a one-way rule the other way, a rule for another port, a
  denied member);
* :func:`accepts`/:func:`answers` ask the computed set elements
  (:func:`edgesec.net.policy.elements`), modelling the ``from_device`` chain
  the kernel runs: the name of the rule that accepts the packet, or ``None``.

Only device-to-device IPv4 paths are explained (NAT and the gateway's own
services are fixed rules, documented in docs/network.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edgesec.net import policy as P

if TYPE_CHECKING:
    from edgesec.groups import GroupPolicy


class RegistryLike(Protocol):
    """What :meth:`PolicyView.from_registry` reads (:class:`edgesec.registry.Registry`)."""

    def devices(self) -> Iterable[P.DeviceLike]: ...

    def bridges(self) -> Iterable[tuple[str, str]]: ...


@dataclass(frozen=True)
class PolicyView:
    """The registry state the policy reads: devices, bridges, memberships, access rules."""

    devices: Mapping[str, P.DeviceLike]
    bridges: Collection[tuple[str, str]]
    memberships: Collection[tuple[str, str]]  # (group, mac)
    access: Collection[P.AccessLike]

    @classmethod
    def from_registry(cls, registry: RegistryLike) -> PolicyView:
        """The view of ``registry``; groups and access rules come from its optional
        ``groups`` (:class:`edgesec.groups.GroupPolicy`)."""
        groups: GroupPolicy | None = getattr(registry, "groups", None)
        return cls({d.mac: d for d in registry.devices()}, set(registry.bridges()),
                   groups.memberships() if groups else [], groups.rules() if groups else [])


@dataclass(frozen=True)
class Explanation:
    """The verdict for a new connection and the reasons, most relevant first."""

    allowed: bool
    reasons: tuple[str, ...]


def _service(proto: str, port: int) -> str:
    return f"{proto}/{port}" if proto else "any"


def _find(view: PolicyView, cfg: P.PolicyConfig, who: str) -> P.DeviceLike | None:
    dev = view.devices.get(who)
    if dev is not None:
        return dev
    try:
        ipaddress.IPv4Address(who)
    except ValueError:
        return None
    return next((d for d in view.devices.values() if who in P.valid_ips(cfg, d)), None)


def explain(cfg: P.PolicyConfig, view: PolicyView, src: str, dst: str, proto: str = "",
            port: int = 0) -> Explanation:
    """May ``src`` open a new ``proto/port`` connection to ``dst`` (MACs or leased IPs)?

    ``proto`` empty means traffic without ports (e.g. ICMP echo), which only a
    bridge, a group or an ``any`` access rule allows.
    """
    a, b = _find(view, cfg, src), _find(view, cfg, dst)
    if a is None or b is None:
        return Explanation(False, tuple(f"blocked: {x} is not a known device"
                                        for x, d in ((src, a), (dst, b)) if d is None))
    if a.mac == b.mac:
        return Explanation(True, ("allowed: a device's traffic to itself never crosses the "
                                  "gateway",))
    paths: list[str] = []
    hints: list[str] = []
    if (min(a.mac, b.mac), max(a.mac, b.mac)) in view.bridges or (a.mac, b.mac) in view.bridges:
        paths.append(f"bridge {min(a.mac, b.mac)} <-> {max(a.mac, b.mac)}")
    groups_a = {g for g, m in view.memberships if m == a.mac}
    groups_b = {g for g, m in view.memberships if m == b.mac}
    paths += [f"group {g} (both are members)" for g in sorted(groups_a & groups_b)]
    for r in sorted(view.access, key=lambda r: (r.src, r.dst, r.proto, r.port)):
        if r.src == a.mac and r.dst == b.mac:
            if not r.proto or (r.proto == proto and r.port == port):
                paths.append(f"access rule {r.src} -> {r.dst} {_service(r.proto, r.port)}")
            else:
                hints.append(f"access rule {r.src} -> {r.dst} {_service(r.proto, r.port)} "
                             f"would allow {_service(r.proto, r.port)} only")
        elif r.src == b.mac and r.dst == a.mac:
            hints.append(f"access rule {r.src} -> {r.dst} {_service(r.proto, r.port)} is "
                         f"one-way: {a.mac} may only answer connections {b.mac} opens")
    if not paths:
        for g in sorted(groups_a - groups_b):
            hints.append(f"group {g} would allow it if {b.mac} were a member")
        for g in sorted(groups_b - groups_a):
            hints.append(f"group {g} would allow it if {a.mac} were a member")
    blockers: list[str] = []
    for d in (a, b):
        if not d.allow:
            blockers.append(f"{d.mac} is denied")
        elif not P.valid_ips(cfg, d):
            blockers.append(f"{d.mac} has no address in its VLAN's subnet")
        elif P.is_quarantined(d):  # edgesec.detect: suspended until RELEASE
            blockers.append(f"{d.mac} is quarantined (RELEASE {d.mac} restores its paths)")
    if paths and not blockers:
        return Explanation(True, tuple(f"allowed by {p}" for p in paths))
    if paths:
        return Explanation(False, (*(f"blocked: {x}" for x in blockers),
                                   *(f"{p} would allow it" for p in paths)))
    what = f"{_service(proto, port)} connections" if proto else "connections"
    return Explanation(False, (f"blocked: no bridge, group or access rule lets {a.mac} open "
                               f"{what} to {b.mac}", *blockers, *hints))


def remedies(view: PolicyView, src: str, dst: str, proto: str = "", port: int = 0
             ) -> list[str]:
    """Supervisor commands that would let ``src`` open ``proto/port`` connections to ``dst``
    through a group or an access rule (the narrowest first)."""
    if (src, dst, proto, port) in {(r.src, r.dst, r.proto, r.port) for r in view.access}:
        return []
    out = [f"ADD_ACCESS {src} {dst}" + (f" {proto}/{port}" if proto else "")]
    groups_a = {g for g, m in view.memberships if m == src}
    groups_b = {g for g, m in view.memberships if m == dst}
    if not groups_a & groups_b:
        out += [f"ADD_GROUP_MEMBER {g} {dst}" for g in sorted(groups_a)]
        out += [f"ADD_GROUP_MEMBER {g} {src}" for g in sorted(groups_b)]
    return out


def _leased(rows: P.Rows, ip: str) -> bool:
    return any(r[2] == ip for r in rows[P.LEASES])


def accepts(rows: P.Rows, src_ip: str, dst_ip: str, proto: str = "", port: int = 0
            ) -> str | None:
    """The ``from_device`` rule accepting the first packet ``src_ip -> dst_ip``, or None."""
    return _accepting(rows, src_ip, (src_ip, dst_ip), (src_ip, dst_ip), proto, port, "")


def answers(rows: P.Rows, opener_ip: str, peer_ip: str, proto: str = "", port: int = 0
            ) -> str | None:
    """The rule accepting the peer's answers to a connection ``opener_ip -> peer_ip``, or None."""
    return _accepting(rows, peer_ip, (peer_ip, opener_ip), (opener_ip, peer_ip), proto, port,
                      "-reply")


def _accepting(rows: P.Rows, sender: str, pair: tuple[str, str], rule: tuple[str, str],
               proto: str, port: int, suffix: str) -> str | None:
    """The rule passing ``sender``'s packet on ``pair`` (``rule``: the access rule's
    opener and peer; ``suffix`` names the answer direction of access rules)."""
    if not _leased(rows, sender):
        return None  # anti-spoofing (a denied device has no lease rows)
    if pair in rows[P.BRIDGES]:
        return "bridge"
    if pair in rows[P.GROUPS]:
        return "group"
    if proto and (*rule, proto, str(port)) in rows[P.ACCESS]:
        return "access" + suffix
    if rule in rows[P.ACCESS_ANY]:
        return "access-any" + suffix
    return None
