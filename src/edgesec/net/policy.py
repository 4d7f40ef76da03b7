"""Pure derivation of the nftables ruleset from the registry (no side effects).

Owns: what the firewall *should* look like. ``skeleton(cfg)`` is the fixed part
(table, chains, rules, set declarations, the set of device bridges) and
``device_rows``/``elements`` give the variable part, the set elements derived
from devices and bridges. ``full_commands`` and ``diff_commands`` turn them into
libnftables JSON command lists; each list is applied as one atomic transaction.

Model (table ``inet <cfg.table>``; every packet costs a constant number of
hash-set lookups, however many devices and bridges exist):

* ``device_ifs`` — bridges of the device subnets (``ifname``).
* ``leases`` — ``ifname . ether_addr . ipv4_addr`` of every allowed device with
  an address in its VLAN's subnet: anti-spoofing (a packet from a device bridge
  passes only with its own MAC and leased IP on its own bridge).
* ``bridges`` — ``ipv4_addr . ipv4_addr``, both directions of every bridge
  whose two ends are allowed.
* ``nat`` — ``ipv4_addr`` of allowed devices with NAT: forwarded out of
  ``natInterface`` and masqueraded; only replies come back.
* ``denied`` — ``ether_addr`` of denied devices: every packet dropped, DHCP too.
* ``quarantined`` — ``ether_addr`` of quarantined devices (``edgesec.detect``):
  they keep their lease row (so DHCP and DNS to the gateway still pass
  anti-spoofing) but contribute no NAT, bridge, group or access pairs (nor do
  their peers towards them), and an early rule in
  ``input`` (before mDNS) and ``from_device`` drops everything else they send.
  The registry keeps their NAT flag and bridges, so a release restores them.
* ``group_pairs`` — ``ipv4_addr . ipv4_addr``, both directions of every pair
  of allowed devices sharing a group (a group is expanded to its member pairs,
  so a packet costs one lookup however many groups a device is in).
* ``access`` — ``ipv4_addr . ipv4_addr . inet_proto . inet_service``: ``from``
  may open ``proto/port`` connections to ``to``; ``access_any`` —
  ``ipv4_addr . ipv4_addr``: any connection. Matched with ``ct direction
  original`` for the opener and, reversed, with ``ct direction reply`` and
  ``ct state established`` for the answers, so ``to`` can never open anything.

Devices reach the gateway only for DHCP (udp 67, also from 0.0.0.0), DNS (53)
and mDNS (udp 5353 to 224.0.0.251 / ff02::fb); everything else from a device
bridge to the gateway or through it is dropped. With split DNS
(``dns_forward_port``, see :mod:`edgesec.dhcp.dnsfwd`) a nat ``prerouting``
chain redirects DNS to the gateway from ``@nat`` addresses to the forwarding
resolver's port, which input accepts from ``@nat`` only. Bridge and NAT paths do not
depend on conntrack state for device-originated packets, so removing a bridge
or NAT also cuts connections that are already established; group and access
packets are looked up in their sets on every packet too (conntrack only says
which end opened the connection), so removing a membership or rule cuts
established connections as well.

``explain`` answers "may this device open a connection to that one, and why
(not)?" from the registry state, naming the bridge, group or access rule;
``accepts`` answers the same question of the computed set elements (a model of
the forward chain), and the tests hold the two to agree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from edgesec.device_like import DeviceLike as DeviceLike  # re-exported: P.DeviceLike

if TYPE_CHECKING:
    from edgesec.config import Settings

LEASES = "leases"
BRIDGES = "bridges"
NAT = "nat"
DENIED = "denied"
QUARANTINED = "quarantined"
DEVICE_IFS = "device_ifs"
GROUPS = "group_pairs"
ACCESS = "access"
ACCESS_ANY = "access_any"
ROW_SETS = (LEASES, BRIDGES, NAT, DENIED, GROUPS, ACCESS, ACCESS_ANY, QUARANTINED)
# Filled by the kernel, not by the policy: ``saddr . daddr`` of dropped IPv4
# packets from devices, each with a counter, forgotten after an hour without
# drops and bounded in size (a full set counts nothing more; the drop still
# happens, in its own rule). Read by explain ("N packets dropped").
DROPS = "drops"
DROPS_TIMEOUT_S = 3600
DROPS_SIZE = 65536

SET_TYPES: dict[str, Any] = {
    DEVICE_IFS: "ifname",
    LEASES: ["ifname", "ether_addr", "ipv4_addr"],
    BRIDGES: ["ipv4_addr", "ipv4_addr"],
    NAT: "ipv4_addr",
    DENIED: "ether_addr",
    QUARANTINED: "ether_addr",
    GROUPS: ["ipv4_addr", "ipv4_addr"],
    ACCESS: ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"],
    ACCESS_ANY: ["ipv4_addr", "ipv4_addr"],
}

IP_CACHE_MAX = 65_536  # memoised (VLAN, address) -> inside the subnet?
Row = Any  # str or tuple[str, ...]
Rows = dict[str, set[Row]]


def is_quarantined(dev: DeviceLike) -> bool:
    """``Device.quarantined`` (read with a default so simpler records still work)."""
    return bool(getattr(dev, "quarantined", False))


class AccessLike(Protocol):
    """The fields of ``edgesec.groups.Access`` the policy reads (read-only, so the
    frozen dataclass matches)."""

    @property
    def src(self) -> str: ...
    @property
    def dst(self) -> str: ...
    @property
    def proto(self) -> str: ...  # "" = any protocol
    @property
    def port(self) -> int: ...


@dataclass(frozen=True)
class PolicySubnet:
    vlan: int
    bridge: str
    network: ipaddress.IPv4Network


@dataclass(frozen=True)
class PolicyConfig:
    """What the policy needs from the settings (built by :meth:`from_settings`)."""

    subnets: tuple[PolicySubnet, ...]
    table: str = "edgesec"
    nat_interface: str = ""
    dns_forward_port: int = 0  # split DNS: port of the forwarding resolver (0 = off)
    _by_vlan: dict[int, PolicySubnet] = field(default_factory=dict, compare=False, repr=False)
    _ip_ok: dict[tuple[int, str], bool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_vlan.update({s.vlan: s for s in self.subnets})

    def subnet(self, vlan: int) -> PolicySubnet | None:
        return self._by_vlan.get(vlan)

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyConfig:
        subs = tuple(PolicySubnet(s.vlan, s.bridge, s.network)
                     for s in settings.interfaces.subnets)
        table = settings.firewall.table_name or "edgesec"
        from edgesec.dhcp.dnsfwd import forwarder_port

        return cls(subnets=subs, table=table, nat_interface=settings.nat.nat_interface,
                   dns_forward_port=forwarder_port(settings))


# ---------------------------------------------------------------------------
# variable part: set elements


def empty_rows() -> Rows:
    return {name: set() for name in ROW_SETS}


def valid_ips(cfg: PolicyConfig, dev: DeviceLike) -> list[str]:
    """The device's addresses that lie inside its own VLAN's subnet.

    Answers are memoised per (VLAN, address) in the config (bounded): a group
    or rule change re-derives the rows of every peer, and parsing addresses
    was most of that cost.
    """
    sub = cfg.subnet(dev.vlanid)
    if sub is None:
        return []
    cache = cfg._ip_ok
    out = []
    for ip in dev.ips:
        key = (dev.vlanid, ip)
        ok = cache.get(key)
        if ok is None:
            try:
                ok = ipaddress.IPv4Address(ip) in sub.network
            except ValueError:
                ok = False
            if len(cache) >= IP_CACHE_MAX:
                cache.clear()
            cache[key] = ok
        if ok:
            out.append(ip)
    return out


def device_rows(cfg: PolicyConfig, dev: DeviceLike, partners: Iterable[DeviceLike],
                members: Iterable[DeviceLike] = (),
                access: Iterable[tuple[AccessLike, DeviceLike]] = ()) -> Rows:
    """Set elements owed to one device (its lease, NAT, denial, bridge, group and access rows).

    ``members`` are the devices sharing a group with it, ``access`` the access
    rules naming it, each with the device at the other end. A pair or rule is
    produced by both of its ends; the firewall counts contributions, so the
    element exists while either end still produces it.
    """
    rows = empty_rows()
    if not dev.allow:
        rows[DENIED].add(dev.mac)
        return rows
    ips = valid_ips(cfg, dev)
    sub = cfg.subnet(dev.vlanid)
    if sub is not None:
        rows[LEASES].update((sub.bridge, dev.mac, ip) for ip in ips)
    if is_quarantined(dev):
        rows[QUARANTINED].add(dev.mac)
        return rows
    if dev.nat and cfg.nat_interface:
        rows[NAT].update(ips)
    _both_ways(cfg, dev, ips, partners, rows[BRIDGES])
    _both_ways(cfg, dev, ips, members, rows[GROUPS])
    for rule, peer in access:
        if not peer.allow or peer.mac == dev.mac or is_quarantined(peer):
            continue
        src_ips, dst_ips = ((ips, valid_ips(cfg, peer)) if rule.src == dev.mac
                            else (valid_ips(cfg, peer), ips))
        for sip in src_ips:
            for dip in dst_ips:
                if sip != dip:
                    if rule.proto:
                        rows[ACCESS].add((sip, dip, rule.proto, str(rule.port)))
                    else:
                        rows[ACCESS_ANY].add((sip, dip))
    return rows


def _both_ways(cfg: PolicyConfig, dev: DeviceLike, ips: Iterable[str],
               peers: Iterable[DeviceLike], into: set[Row]) -> None:
    """Address pairs both ways between ``dev`` and each allowed, free peer (a bridge or
    a shared group)."""
    for peer in peers:
        if not peer.allow or peer.mac == dev.mac or is_quarantined(peer):
            continue
        for pip in valid_ips(cfg, peer):
            for ip in ips:
                if ip != pip:
                    into.add((ip, pip))
                    into.add((pip, ip))


def elements(cfg: PolicyConfig, devices: Iterable[DeviceLike],
             bridges: Iterable[tuple[str, str]],
             memberships: Iterable[tuple[str, str]] = (),
             access: Iterable[AccessLike] = ()) -> Rows:
    """All set elements for a registry snapshot (union of every device's rows).

    ``memberships`` are ``(group, mac)`` pairs, ``access`` the access rules.
    """
    by_mac: dict[str, DeviceLike] = {d.mac: d for d in devices}
    partners: dict[str, list[DeviceLike]] = {}
    for a, b in bridges:
        if a in by_mac and b in by_mac:
            partners.setdefault(a, []).append(by_mac[b])
            partners.setdefault(b, []).append(by_mac[a])
    groups: dict[str, set[str]] = {}
    for group, mac in memberships:
        if mac in by_mac:
            groups.setdefault(group, set()).add(mac)
    peers: dict[str, set[str]] = {}
    for macs in groups.values():
        for mac in macs:
            peers.setdefault(mac, set()).update(macs)
    rules: dict[str, list[tuple[AccessLike, DeviceLike]]] = {}
    for r in access:
        if r.src in by_mac and r.dst in by_mac:
            rules.setdefault(r.src, []).append((r, by_mac[r.dst]))
            rules.setdefault(r.dst, []).append((r, by_mac[r.src]))
    out = empty_rows()
    for dev in by_mac.values():
        members = [by_mac[m] for m in peers.get(dev.mac, ()) if m != dev.mac]
        for name, rows in device_rows(cfg, dev, partners.get(dev.mac, ()), members,
                                      rules.get(dev.mac, ())).items():
            out[name] |= rows
    return out


# ---------------------------------------------------------------------------
# fixed part: table, sets, chains, rules


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _pl(proto: str, fld: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": fld}}


def _m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


_ACCEPT = {"accept": None}
_DROP = {"drop": None}
_LEASE_KEY = {"concat": [_meta("iifname"), _pl("ether", "saddr"), _pl("ip", "saddr")]}
_UDP = _m(_meta("l4proto"), "udp")
_TCP = _m(_meta("l4proto"), "tcp")
_IPV4 = _m(_meta("nfproto"), "ipv4")
_IPV6 = _m(_meta("nfproto"), "ipv6")
_CT_REPLY = _m({"ct": {"key": "state"}}, ["established", "related"], "in")
_CT_ORIGINAL = _m({"ct": {"key": "direction"}}, "original")
_CT_ANSWER = [_m({"ct": {"key": "direction"}}, "reply"),
              _m({"ct": {"key": "state"}}, ["established"], "in")]
_SADDR, _DADDR = _pl("ip", "saddr"), _pl("ip", "daddr")
_L4 = _meta("l4proto")


def _rules(cfg: PolicyConfig) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(chain, comment, expr) of every rule, in order. Comments name the rule."""
    from_dev = _m(_meta("iifname"), f"@{DEVICE_IFS}")
    r: list[tuple[str, str, list[dict[str, Any]]]] = [
        # input: the gateway itself, seen from device bridges
        ("input", "not-device", [_m(_meta("iifname"), f"@{DEVICE_IFS}", "!="), _ACCEPT]),
        ("input", "denied", [_m(_pl("ether", "saddr"), f"@{DENIED}"), _DROP]),
        ("input", "dhcp", [_UDP, _m(_pl("udp", "dport"), 67), _ACCEPT]),
        ("input", "ipv6", [_IPV6, {"jump": {"target": "input6"}}]),
        ("input", "not-ipv4", [_m(_meta("nfproto"), "ipv4", "!="), _DROP]),
        ("input", "spoof", [_m(_LEASE_KEY, f"@{LEASES}", "!="), _DROP]),
        ("input", "replies", [_CT_REPLY, _ACCEPT]),
        ("input", "dns-udp", [_UDP, _m(_pl("udp", "dport"), 53), _ACCEPT]),
        ("input", "dns-tcp", [_TCP, _m(_pl("tcp", "dport"), 53), _ACCEPT]),
        ("input", "quarantine", [_m(_pl("ether", "saddr"), f"@{QUARANTINED}"), _DROP]),
        ("input", "mdns4", [_m(_pl("ip", "daddr"), "224.0.0.251"), _UDP,
                            _m(_pl("udp", "dport"), 5353), _ACCEPT]),
        ("input", "drop", [_DROP]),
        # input6: only mDNS and neighbour discovery (IPv6 is never routed for devices)
        ("input6", "mdns6", [_m(_pl("ip6", "daddr"), "ff02::fb"), _UDP,
                             _m(_pl("udp", "dport"), 5353), _ACCEPT]),
        ("input6", "nd", [_m(_pl("icmpv6", "type"),
                             {"set": ["nd-neighbor-solicit", "nd-neighbor-advert",
                                      "nd-router-solicit"]}), _ACCEPT]),
        ("input6", "drop", [_DROP]),
        # forward: device bridges in, and towards device bridges
        ("forward", "from-device", [from_dev, {"jump": {"target": "from_device"}}]),
        ("forward", "to-device", [_m(_meta("oifname"), f"@{DEVICE_IFS}"),
                                  {"jump": {"target": "to_device"}}]),
        ("from_device", "denied", [_m(_pl("ether", "saddr"), f"@{DENIED}"), _DROP]),
        ("from_device", "quarantine", [_m(_pl("ether", "saddr"), f"@{QUARANTINED}"), _DROP]),
        ("from_device", "not-ipv4", [_m(_meta("nfproto"), "ipv4", "!="), _DROP]),
        ("from_device", "spoof", [_m(_LEASE_KEY, f"@{LEASES}", "!="), _DROP]),
        ("from_device", "bridge",
         [_m({"concat": [_pl("ip", "saddr"), _pl("ip", "daddr")]}, f"@{BRIDGES}"), _ACCEPT]),
        # groups: both directions; access: the opener, then the answers
        ("from_device", "group", [_m({"concat": [_SADDR, _DADDR]}, f"@{GROUPS}"), _ACCEPT]),
        ("from_device", "access",
         [_CT_ORIGINAL, _m({"concat": [_SADDR, _DADDR, _L4, _pl("th", "dport")]}, f"@{ACCESS}"),
          _ACCEPT]),
        ("from_device", "access-any",
         [_CT_ORIGINAL, _m({"concat": [_SADDR, _DADDR]}, f"@{ACCESS_ANY}"), _ACCEPT]),
        ("from_device", "access-reply",
         [*_CT_ANSWER, _m({"concat": [_DADDR, _SADDR, _L4, _pl("th", "sport")]}, f"@{ACCESS}"),
          _ACCEPT]),
        ("from_device", "access-any-reply",
         [*_CT_ANSWER, _m({"concat": [_DADDR, _SADDR]}, f"@{ACCESS_ANY}"), _ACCEPT]),
    ]
    if cfg.nat_interface:
        r += [
            ("from_device", "nat-out", [_m(_meta("oifname"), cfg.nat_interface),
                                        _m(_pl("ip", "saddr"), f"@{NAT}"), _ACCEPT]),
            ("to_device", "nat-replies", [_m(_meta("iifname"), cfg.nat_interface), _IPV4,
                                          _CT_REPLY, _m(_pl("ip", "daddr"), f"@{NAT}"),
                                          _ACCEPT]),
            ("postrouting", "masquerade", [_m(_meta("oifname"), cfg.nat_interface),
                                           _m(_pl("ip", "saddr"), f"@{NAT}"),
                                           {"masquerade": None}]),
        ]
    r += [
        ("from_device", "drop", [_DROP]),
        ("to_device", "drop", [_DROP]),
    ]
    if cfg.nat_interface and cfg.dns_forward_port:
        at = r.index(next(x for x in r if x[:2] == ("input", "drop")))
        r[at:at] = _dns_forward_input(cfg.dns_forward_port)
        r += _dns_redirect(cfg.dns_forward_port)
    for chain in ("input", "from_device"):  # count what the final drops drop, per pair
        at = r.index(next(x for x in r if x[:2] == (chain, "drop")))
        r.insert(at, (chain, "count-drop", [_COUNT_DROP]))
    return r


# A rule of its own, without a verdict: if the set is full the update fails and
# only this rule ends; the drop that follows still drops.
_COUNT_DROP = {"set": {"op": "update", "elem": {"concat": [_SADDR, _DADDR]},
                       "set": f"@{DROPS}", "stmt": [{"counter": None}]}}


def _dns_forward_input(port: int) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """input: the forwarding resolver's port, from devices with NAT only."""
    return [("input", f"dns-forward-{proto}",
             [_m(_meta("l4proto"), proto), _m(_pl(proto, "dport"), port),
              _m(_pl("ip", "saddr"), f"@{NAT}"), _ACCEPT]) for proto in ("udp", "tcp")]


def _dns_redirect(port: int) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """prerouting: DNS to the gateway from devices with NAT goes to the forwarding resolver."""
    return [("prerouting", f"dns-redirect-{proto}",
             [_m(_meta("iifname"), f"@{DEVICE_IFS}"), _IPV4,
              _m(_pl("ip", "saddr"), f"@{NAT}"),
              _m({"fib": {"result": "type", "flags": ["daddr"]}}, "local"),
              _m(_meta("l4proto"), proto), _m(_pl(proto, "dport"), 53),
              {"redirect": {"port": port}}]) for proto in ("udp", "tcp")]


PREROUTING = {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}


def _base_chains(cfg: PolicyConfig) -> dict[str, dict[str, Any]]:
    """BASE_CHAINS, plus the nat prerouting chain when DNS is split."""
    if cfg.nat_interface and cfg.dns_forward_port:
        return {**BASE_CHAINS, "prerouting": PREROUTING}
    return BASE_CHAINS


BASE_CHAINS: dict[str, dict[str, Any]] = {
    "input": {"type": "filter", "hook": "input", "prio": 0, "policy": "accept"},
    "forward": {"type": "filter", "hook": "forward", "prio": 0, "policy": "accept"},
    "postrouting": {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
}
REGULAR_CHAINS = ("input6", "from_device", "to_device")


def rule_comment(chain: str, name: str) -> str:
    return f"edgesec:{chain}:{name}"


@dataclass(frozen=True)
class Skeleton:
    """The fixed objects of the table, for creation and for verification."""

    table: str
    chains: tuple[str, ...]
    rule_comments: dict[str, tuple[str, ...]]
    commands: tuple[dict[str, Any], ...]
    device_ifs: frozenset[str]


def skeleton(cfg: PolicyConfig) -> Skeleton:
    """Table, sets (with the device-bridge names), chains and rules."""
    fam, tab = "inet", cfg.table
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": fam, "name": tab}}}]
    for name, typ in SET_TYPES.items():
        cmds.append({"add": {"set": {"family": fam, "table": tab, "name": name, "type": typ}}})
    cmds.append({"add": {"set": {"family": fam, "table": tab, "name": DROPS,
                                 "type": ["ipv4_addr", "ipv4_addr"],
                                 "flags": ["timeout"], "timeout": DROPS_TIMEOUT_S,
                                 "size": DROPS_SIZE}}})
    ifs = sorted({s.bridge for s in cfg.subnets})
    if ifs:
        cmds.append({"add": {"element": {"family": fam, "table": tab, "name": DEVICE_IFS,
                                         "elem": ifs}}})
    base = _base_chains(cfg)
    for name, hook in base.items():
        cmds.append({"add": {"chain": {"family": fam, "table": tab, "name": name, **hook}}})
    for name in REGULAR_CHAINS:
        cmds.append({"add": {"chain": {"family": fam, "table": tab, "name": name}}})
    comments: dict[str, list[str]] = {c: [] for c in (*base, *REGULAR_CHAINS)}
    for chain, name, expr in _rules(cfg):
        comment = rule_comment(chain, name)
        comments[chain].append(comment)
        cmds.append({"add": {"rule": {"family": fam, "table": tab, "chain": chain,
                                      "expr": expr, "comment": comment}}})
    return Skeleton(tab, tuple(comments), {k: tuple(v) for k, v in comments.items()},
                    tuple(cmds), frozenset(ifs))


# ---------------------------------------------------------------------------
# JSON command lists


def _elem(row: Row) -> Any:
    return {"concat": list(row)} if isinstance(row, tuple) else row


def element_commands(table: str, op: str, rows: Mapping[str, Iterable[Row]]
                     ) -> list[dict[str, Any]]:
    """``add``/``delete`` element commands (one per non-empty set)."""
    out = []
    for name, items in rows.items():
        elem = [_elem(r) for r in sorted(items)]
        if elem:
            out.append({op: {"element": {"family": "inet", "table": table, "name": name,
                                         "elem": elem}}})
    return out


def full_commands(cfg: PolicyConfig, rows: Mapping[str, Iterable[Row]],
                  *, table_exists: bool) -> list[dict[str, Any]]:
    """Replace the whole table in one transaction (start-up and healing)."""
    cmds: list[dict[str, Any]] = []
    if table_exists:
        cmds.append({"delete": {"table": {"family": "inet", "name": cfg.table}}})
    cmds += skeleton(cfg).commands
    cmds += element_commands(cfg.table, "add", rows)
    return cmds


def diff_commands(table: str, add: Mapping[str, set[Row]], delete: Mapping[str, set[Row]]
                  ) -> list[dict[str, Any]]:
    """Deletions then additions, for one atomic transaction."""
    return element_commands(table, "delete", delete) + element_commands(table, "add", add)


def as_script(cmds: list[dict[str, Any]]) -> dict[str, Any]:
    """Wrap a command list as a libnftables JSON document."""
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *cmds]}
