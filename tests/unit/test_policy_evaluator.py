"""Behaviour of the computed ruleset, asked packet by packet (no root, no kernel).

The interpreter in ``edgesec.net.evaluator`` runs the same JSON the firewall
sends; these properties hold for any registry snapshot hypothesis can build.
The network-namespace tests remain the end-to-end proof.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesec.net import policy as P
from edgesec.net.evaluator import Packet, Ruleset, UnsupportedExpression
from edgesec.registry import Device

WAN = "wan0"
VLANS = (1, 2, 3)
GW = {v: f"10.0.{v}.1" for v in VLANS}
INTERNET_IP = "198.51.100.7"


def config(nat_if: str = WAN) -> P.PolicyConfig:
    subs = tuple(P.PolicySubnet(v, f"br{v}", ipaddress.IPv4Network(f"10.0.{v}.0/24"))
                 for v in VLANS)
    return P.PolicyConfig(subnets=subs, nat_interface=nat_if)


@dataclass(frozen=True)
class Snapshot:
    devices: tuple[Device, ...]
    bridges: tuple[tuple[str, str], ...]

    def ruleset(self, cfg: P.PolicyConfig) -> Ruleset:
        rows = P.elements(cfg, self.devices, self.bridges)
        return Ruleset.from_policy(P.skeleton(cfg).commands, rows)

    def bridged(self, a: str, b: str) -> bool:
        return (a, b) in self.bridges or (b, a) in self.bridges


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    count = draw(st.integers(min_value=2, max_value=6))
    devices = []
    for i in range(count):
        vlan = draw(st.sampled_from(VLANS))
        devices.append(Device(
            mac=f"02:00:00:00:00:{i + 1:02x}", vlanid=vlan,
            allow=draw(st.booleans()), nat=draw(st.booleans()),
            # host numbers are unique per device, so no two devices share an address
            primary_ip=f"10.0.{vlan}.{i + 10}"))
    macs = [d.mac for d in devices]
    pairs = [(a, b) for i, a in enumerate(macs) for b in macs[i + 1:]]
    bridges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs)))
    return Snapshot(tuple(devices), tuple(bridges))


def sent_by(dev: Device, **fields: object) -> Packet:
    """A packet a device sends with its own bridge, MAC and address."""
    base: dict[str, object] = {"iif": f"br{dev.vlanid}", "src_mac": dev.mac,
                               "src_ip": dev.primary_ip, "dst_ip": GW[dev.vlanid]}
    return Packet(**{**base, **fields})  # type: ignore[arg-type]


def to_peer(src: Device, dst: Device, **fields: object) -> Packet:
    return sent_by(src, dst_ip=dst.primary_ip, oif=f"br{dst.vlanid}", **fields)


@given(snapshots())
def test_devices_reach_each_other_only_through_a_bridge_of_two_allowed_ends(
        snap: Snapshot) -> None:
    rules = snap.ruleset(config())
    for a in snap.devices:
        for b in snap.devices:
            if a is b:
                continue
            expected = a.allow and b.allow and snap.bridged(a.mac, b.mac)
            for l4, port in (("tcp", 80), ("udp", 5000)):
                got = rules.verdict(to_peer(a, b, l4proto=l4, dport=port))
                assert got.accepted == expected, (a, b, got)


@given(snapshots())
def test_bridges_are_symmetric(snap: Snapshot) -> None:
    rules = snap.ruleset(config())
    for a in snap.devices:
        for b in snap.devices:
            if a is not b:
                assert (rules.verdict(to_peer(a, b)).accepted
                        == rules.verdict(to_peer(b, a)).accepted)


@given(snapshots())
def test_nat_only_outward_and_only_for_allowed_devices_with_nat(snap: Snapshot) -> None:
    rules = snap.ruleset(config())
    for dev in snap.devices:
        out = rules.verdict(sent_by(dev, dst_ip=INTERNET_IP, oif=WAN))
        assert out.accepted == (dev.allow and dev.nat), (dev, out)
        # nothing from the WAN opens a connection to a device
        inbound_new = Packet(iif=WAN, src_mac="02:aa:00:00:00:01", src_ip=INTERNET_IP,
                             dst_ip=dev.primary_ip, oif=f"br{dev.vlanid}", ct_state="new")
        assert not rules.verdict(inbound_new)
        reply = Packet(iif=WAN, src_mac="02:aa:00:00:00:01", src_ip=INTERNET_IP,
                       dst_ip=dev.primary_ip, oif=f"br{dev.vlanid}", ct_state="established")
        assert rules.verdict(reply).accepted == (dev.allow and dev.nat)


def test_without_a_nat_interface_nothing_reaches_the_wan() -> None:
    dev = Device("02:00:00:00:00:01", vlanid=1, nat=True, primary_ip="10.0.1.10")
    rules = Snapshot((dev,), ()).ruleset(config(nat_if=""))
    assert not rules.verdict(sent_by(dev, dst_ip=INTERNET_IP, oif=WAN))


@given(snapshots(), st.sampled_from(("mac", "ip", "bridge")))
def test_a_spoofed_packet_gets_nowhere(snap: Snapshot, what: str) -> None:
    rules = snap.ruleset(config())
    for a in snap.devices:
        spoof: dict[str, object] = {
            "mac": {"src_mac": "02:66:66:66:66:66"},
            "ip": {"src_ip": f"10.0.{a.vlanid}.250"},
            "bridge": {"iif": f"br{a.vlanid % 3 + 1}"},
        }[what]
        for b in snap.devices:
            if b is not a:
                assert not rules.verdict(to_peer(a, b, **spoof))
        assert not rules.verdict(sent_by(a, dst_ip=INTERNET_IP, oif=WAN, **spoof))
        assert not rules.verdict(sent_by(a, l4proto="udp", dport=53, **spoof))


@given(snapshots())
def test_the_gateway_answers_allowed_devices_on_dhcp_dns_mdns_only(snap: Snapshot) -> None:
    rules = snap.ruleset(config())
    for dev in snap.devices:
        dhcp = sent_by(dev, src_ip="0.0.0.0", dst_ip="255.255.255.255",
                       l4proto="udp", dport=67)
        services = [
            sent_by(dev, l4proto="udp", dport=53),
            sent_by(dev, l4proto="tcp", dport=53),
            sent_by(dev, dst_ip="224.0.0.251", l4proto="udp", dport=5353),
        ]
        closed = [sent_by(dev, l4proto="tcp", dport=22), sent_by(dev, l4proto="tcp", dport=80),
                  sent_by(dev, l4proto="icmp")]
        assert rules.verdict(dhcp).accepted == dev.allow
        for pkt in services:
            assert rules.verdict(pkt).accepted == dev.allow, pkt
        for pkt in closed:
            assert not rules.verdict(pkt), pkt


@given(snapshots())
def test_a_denied_device_gets_nothing_at_all(snap: Snapshot) -> None:
    """Stronger than "nothing but DHCP": the policy drops a denied MAC's DHCP too."""
    rules = snap.ruleset(config())
    for dev in (d for d in snap.devices if not d.allow):
        dhcp = sent_by(dev, src_ip="0.0.0.0", dst_ip="255.255.255.255",
                       l4proto="udp", dport=67)
        assert rules.verdict(dhcp).rule == "edgesec:input:denied"
        for other in snap.devices:
            if other is not dev:
                assert not rules.verdict(to_peer(dev, other))


def test_ipv6_from_a_device_reaches_only_mdns_and_neighbour_discovery() -> None:
    dev = Device("02:00:00:00:00:01", vlanid=1, primary_ip="10.0.1.10")
    rules = Snapshot((dev,), ()).ruleset(config())
    v6 = {"src_ip": "fe80::1", "family": "ipv6"}
    assert rules.verdict(sent_by(dev, dst_ip="ff02::fb", l4proto="udp", dport=5353, **v6))
    assert rules.verdict(sent_by(dev, dst_ip="ff02::1", l4proto="icmpv6",
                                 icmpv6_type="nd-neighbor-solicit", **v6))
    assert not rules.verdict(sent_by(dev, dst_ip="fe80::2", l4proto="tcp", dport=22, **v6))
    other = Device("02:00:00:00:00:02", vlanid=2, primary_ip="10.0.2.11")
    assert not Snapshot((dev, other), ((dev.mac, other.mac),)).ruleset(config()).verdict(
        sent_by(dev, dst_ip="fd00::2", oif="br2", **v6))


def test_traffic_not_from_a_device_bridge_is_left_alone() -> None:
    rules = Snapshot((), ()).ruleset(config())
    assert rules.verdict(Packet(iif="lo", src_mac="", src_ip="127.0.0.1",
                                dst_ip="127.0.0.1", dport=22))


def test_the_verdict_names_the_rule_that_decided() -> None:
    a = Device("02:00:00:00:00:01", vlanid=1, primary_ip="10.0.1.10")
    b = Device("02:00:00:00:00:02", vlanid=2, primary_ip="10.0.2.11")
    assert Snapshot((a, b), ()).ruleset(config()).verdict(
        to_peer(a, b)).rule == "edgesec:from_device:drop"
    assert Snapshot((a, b), ((a.mac, b.mac),)).ruleset(config()).verdict(
        to_peer(a, b)).rule == "edgesec:from_device:bridge"


def test_an_unknown_expression_is_refused_not_misread() -> None:
    cmds = [{"add": {"table": {"family": "inet", "name": "t"}}},
            {"add": {"chain": {"family": "inet", "table": "t", "name": "input",
                               "type": "filter", "hook": "input", "policy": "accept"}}},
            {"add": {"rule": {"family": "inet", "table": "t", "chain": "input",
                              "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}},
                                                  "right": 1}}, {"drop": None}]}}}]
    with pytest.raises(UnsupportedExpression):
        Ruleset(cmds).verdict(Packet(iif="br1", src_mac="", src_ip="", dst_ip=""))


# -- quarantine (edgesec.detect) -------------------------------------------------------


def _quarantine(snap: Snapshot, macs: set[str]) -> Snapshot:
    devs = tuple(replace(d, quarantined=d.mac in macs) for d in snap.devices)
    return Snapshot(devs, snap.bridges)


def _probes(snap: Snapshot, dev: Device) -> list[Packet]:
    """Everything a device might try: the WAN, every peer, the gateway's services."""
    out = [sent_by(dev, dst_ip=INTERNET_IP, oif=WAN),
           sent_by(dev, l4proto="udp", dport=53), sent_by(dev, l4proto="tcp", dport=53),
           sent_by(dev, dst_ip="224.0.0.251", l4proto="udp", dport=5353),
           sent_by(dev, src_ip="0.0.0.0", dst_ip="255.255.255.255", l4proto="udp", dport=67),
           sent_by(dev, l4proto="tcp", dport=22)]
    for peer in snap.devices:
        if peer is not dev:
            out += [to_peer(dev, peer), to_peer(peer, dev),
                    to_peer(peer, dev, ct_state="established"),
                    to_peer(dev, peer, ct_state="established")]
    out.append(Packet(iif=WAN, src_mac="02:aa:00:00:00:01", src_ip=INTERNET_IP,
                      dst_ip=dev.primary_ip, oif=f"br{dev.vlanid}", ct_state="established"))
    return out


@given(snapshots(), st.data())
def test_a_quarantined_device_reaches_nothing_but_dhcp_and_dns(snap: Snapshot,
                                                               data: st.DataObject) -> None:
    macs = {d.mac for d in snap.devices}
    held = set(data.draw(st.lists(st.sampled_from(sorted(macs)), min_size=1, unique=True)))
    rules = _quarantine(snap, held).ruleset(config())
    for dev in (d for d in snap.devices if d.mac in held):
        dhcp = sent_by(dev, src_ip="0.0.0.0", dst_ip="255.255.255.255", l4proto="udp", dport=67)
        dns = [sent_by(dev, l4proto="udp", dport=53), sent_by(dev, l4proto="tcp", dport=53)]
        # DHCP and DNS to the gateway stay exactly as the device's admission allows
        assert rules.verdict(dhcp).accepted == dev.allow
        for pkt in dns:
            assert rules.verdict(pkt).accepted == dev.allow
        for pkt in _probes(snap, dev):
            if pkt in (dhcp, *dns):
                continue
            assert not rules.verdict(pkt), pkt


@given(snapshots(), st.data())
def test_quarantine_leaves_other_devices_alone_and_release_restores_everything(
        snap: Snapshot, data: st.DataObject) -> None:
    macs = sorted(d.mac for d in snap.devices)
    held = set(data.draw(st.lists(st.sampled_from(macs), min_size=1, unique=True)))
    before = snap.ruleset(config())
    during = _quarantine(snap, held).ruleset(config())
    after = _quarantine(_quarantine(snap, held), set()).ruleset(config())
    for dev in snap.devices:
        for pkt in _probes(snap, dev):
            assert after.verdict(pkt).accepted == before.verdict(pkt).accepted, pkt
            if pkt.src_mac not in held and pkt.dst_ip not in {
                    d.primary_ip for d in snap.devices if d.mac in held}:
                assert during.verdict(pkt).accepted == before.verdict(pkt).accepted, pkt
