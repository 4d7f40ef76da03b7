"""Network isolation end to end: ``edgesec run`` in a gateway netns, real dnsmasq,
nftables and udhcpc in three device namespaces on VLANs 1, 2 and 3.

The module shares one topology and daemon; every test leaves the registry as
it found it (no bridges, no NAT, all three devices allowed with leases).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from isolation_lab import HEAL_S, RADIUS_PORT, SUPERVISOR_UDP_PORT, IsolationLab, wait_for

from edgesec.lab.topology import LabDevice, Topology, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


class Bed:
    def __init__(self, topo: Topology, lab: IsolationLab, a: LabDevice, b: LabDevice,
                 c: LabDevice) -> None:
        self.topo, self.lab, self.a, self.b, self.c = topo, lab, a, b, c

    def tcp(self, src: LabDevice | str, dst: LabDevice | str, port: int = 7) -> bool:
        ns = src.ns if isinstance(src, LabDevice) else src
        ip = dst.ip if isinstance(dst, LabDevice) else dst
        return self.topo.tcp_ok(ns, ip, port)

    def ping(self, src: LabDevice, dst: LabDevice | str) -> bool:
        ip = dst.ip if isinstance(dst, LabDevice) else dst
        return self.topo.ping_ok(src.ns, ip)


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    with Topology() as topo:
        a, b, c = (topo.add_device(n, v) for n, v in (("a", 1), ("b", 2), ("c", 3)))
        lab = IsolationLab(topo)
        with lab.running(a, b, c, echo=True):
            # Services on the gateway that devices must NOT reach (positive
            # controls below prove they listen): RADIUS port and a TCP echo.
            topo.serve_echo(topo.gateway, tcp=7, udp=RADIUS_PORT)
            yield Bed(topo, lab, a, b, c)


def test_three_devices_get_leases_and_get_map_shows_them(bed: Bed) -> None:
    for dev, net in ((bed.a, "10.0.1."), (bed.b, "10.0.2."), (bed.c, "10.0.3.")):
        assert dev.ip.startswith(net)
        line = bed.lab.ctl(f"GET_MAP {dev.mac}")
        fields = line.rstrip("\n").split(",")
        assert fields[0] == "a" and fields[1] == dev.mac and fields[2] == dev.ip
        assert fields[4] == str(dev.vlan)


def test_devices_are_isolated_by_default(bed: Bed) -> None:
    # control: the gateway itself reaches every device's service
    assert all(bed.tcp(bed.topo.gateway, d) for d in (bed.a, bed.b, bed.c))
    for src, dst in ((bed.a, bed.b), (bed.a, bed.c), (bed.b, bed.c), (bed.c, bed.a)):
        assert not bed.tcp(src, dst)
        assert not bed.ping(src, dst)
    # no internet without NAT (the wan netns routes back, so only the firewall stops it)
    assert bed.topo.tcp_ok(bed.topo.gateway, bed.topo.WAN_IP)
    assert not bed.topo.http_ok(bed.a.ns, bed.topo.WAN_IP)
    assert not bed.ping(bed.a, bed.topo.WAN_IP)


def test_bridge_opens_exactly_that_pair_and_removal_closes_it(bed: Bed) -> None:
    a, b, c = bed.a, bed.b, bed.c
    bed.lab.ok(f"ADD_BRIDGE {a.mac} {b.mac}")
    try:
        assert bed.tcp(a, b) and bed.tcp(b, a)
        assert bed.ping(a, b) and bed.ping(b, a)
        assert not bed.tcp(a, c) and not bed.tcp(c, a)
        assert not bed.tcp(b, c) and not bed.ping(c, b)
        assert bed.lab.ctl("GET_BRIDGES") == f"{min(a.mac, b.mac)},{max(a.mac, b.mac)}\n"
    finally:
        bed.lab.ok(f"REMOVE_BRIDGE {a.mac} {b.mac}")
    assert not bed.tcp(a, b) and not bed.tcp(b, a)
    assert not bed.ping(a, b)


def test_nat_opens_only_that_device_to_the_wan(bed: Bed) -> None:
    wan = bed.topo.WAN_IP
    bed.lab.ok(f"ADD_NAT {bed.a.mac}")
    try:
        assert bed.topo.http_ok(bed.a.ns, wan)
        assert bed.topo.udp_ok(bed.a.ns, wan)
        assert not bed.topo.http_ok(bed.b.ns, wan)
        # NAT does not open the device to the WAN, nor to other devices
        assert not bed.tcp(bed.topo.wan or "", bed.a)
        assert not bed.tcp(bed.a, bed.b)
    finally:
        bed.lab.ok(f"REMOVE_NAT {bed.a.mac}")
    assert not bed.topo.http_ok(bed.a.ns, wan)


def test_gateway_offers_devices_only_dhcp_dns_mdns(bed: Bed) -> None:
    gw_ip = "10.0.1.1"
    topo = bed.topo
    # DNS (dnsmasq listens on tcp/53 too) is reachable
    assert topo.connect_ok(bed.a.ns, gw_ip, 53)
    # the supervisor's UDP port answers an authenticated PING from the WAN side ...
    assert bed.lab.udp_ping_supervisor(topo.wan or "", topo.WAN_GATEWAY_IP)
    # ... but not from a device, on any gateway address
    assert not bed.lab.udp_ping_supervisor(bed.a.ns, gw_ip)
    assert not bed.lab.udp_ping_supervisor(bed.a.ns, topo.WAN_GATEWAY_IP)
    # RADIUS port and any other service on the gateway: same
    assert topo.udp_ok(topo.wan or "", topo.WAN_GATEWAY_IP, RADIUS_PORT)
    assert not topo.udp_ok(bed.a.ns, gw_ip, RADIUS_PORT)
    assert topo.tcp_ok(topo.wan or "", topo.WAN_GATEWAY_IP, 7)
    assert not topo.tcp_ok(bed.a.ns, gw_ip, 7)
    assert not topo.ping_ok(bed.a.ns, gw_ip)
    assert SUPERVISOR_UDP_PORT != RADIUS_PORT


def test_spoofed_source_address_is_dropped(bed: Bed) -> None:
    a, b, c = bed.a, bed.b, bed.c
    topo = bed.topo
    bed.lab.ok(f"ADD_BRIDGE {a.mac} {b.mac}")
    bed.lab.ok(f"ADD_BRIDGE {c.mac} {b.mac}")
    try:
        # c claims a's address (bridged to b) on its own bridge
        run(c.ns, ["ip", "addr", "add", f"{a.ip}/32", "dev", "eth0"])
        run(c.ns, ["ip", "route", "replace", "10.0.2.0/24", "via", "10.0.3.1", "src", a.ip])
        assert not topo.tcp_ok(c.ns, b.ip)
        run(c.ns, ["ip", "route", "replace", "10.0.2.0/24", "via", "10.0.3.1", "src", c.ip])
        assert topo.tcp_ok(c.ns, b.ip)  # control: c's own lease works
        # a uses an address of its own subnet that it was not leased
        fake = "10.0.1.250"
        run(a.ns, ["ip", "addr", "add", f"{fake}/32", "dev", "eth0"])
        run(a.ns, ["ip", "route", "replace", "10.0.2.0/24", "via", "10.0.1.1", "src", fake])
        assert not topo.tcp_ok(a.ns, b.ip)
        assert not topo.connect_ok(a.ns, "10.0.1.1", 53, source=fake)
        assert topo.connect_ok(a.ns, "10.0.1.1", 53, source=a.ip)  # control
    finally:
        for dev in (a, c):
            run(dev.ns, ["ip", "route", "del", "10.0.2.0/24"], check=False)
        run(c.ns, ["ip", "addr", "del", f"{a.ip}/32", "dev", "eth0"], check=False)
        run(a.ns, ["ip", "addr", "del", "10.0.1.250/32", "dev", "eth0"], check=False)
        bed.lab.ok(f"CLEAR_BRIDGE {b.mac}")


def test_deny_mac_removes_every_path_until_accepted_again(bed: Bed) -> None:
    a, b = bed.a, bed.b
    bed.lab.ok(f"ADD_BRIDGE {a.mac} {b.mac}")
    bed.lab.ok(f"ADD_NAT {b.mac}")
    try:
        assert bed.tcp(a, b)
        bed.lab.ok(f"DENY_MAC {b.mac}")
        assert not bed.tcp(a, b) and not bed.tcp(b, a)
        assert not bed.topo.http_ok(b.ns, bed.topo.WAN_IP)
        assert not bed.topo.connect_ok(b.ns, "10.0.2.1", 53)
        bed.lab.ok(f"ACCEPT_MAC {b.mac} {b.vlan}")
        assert bed.tcp(a, b)
    finally:
        bed.lab.ok(f"ACCEPT_MAC {b.mac} {b.vlan}")
        bed.lab.ok(f"REMOVE_NAT {b.mac}")
        bed.lab.ok(f"REMOVE_BRIDGE {a.mac} {b.mac}")


def test_flushed_ruleset_is_healed(bed: Bed) -> None:
    bed.lab.ok(f"ADD_BRIDGE {bed.a.mac} {bed.b.mac}")
    try:
        heals = bed.lab.heals()
        bed.lab.nft("flush", "ruleset")
        assert wait_for(lambda: bed.lab.heals() > heals and bed.lab.table_present(), HEAL_S)
        assert bed.tcp(bed.a, bed.b)
        assert not bed.tcp(bed.a, bed.c)
        # an altered table (one element deleted behind our back) is healed too
        heals = bed.lab.heals()
        bed.lab.nft("delete", "element", "inet", "edgesec", "bridges",
                    f"{{ {bed.a.ip} . {bed.b.ip} }}")
        assert wait_for(lambda: bed.lab.heals() > heals, HEAL_S)
        assert f"{bed.a.ip} . {bed.b.ip}" in bed.lab.nft("list", "set", "inet", "edgesec",
                                                         "bridges")
    finally:
        bed.lab.ok(f"REMOVE_BRIDGE {bed.a.mac} {bed.b.mac}")


def test_dnsmasq_killed_is_restarted_and_leases_keep_flowing(bed: Bed) -> None:
    c = bed.c
    # the registry forgets c's address; dnsmasq still holds the lease
    bed.lab.ok(f"SET_IP del {c.mac} {c.ip}")
    assert bed.lab.mapped_ip(c) == ""
    pid = bed.lab.dnsmasq_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: (p := bed.lab.dnsmasq_pid()) and p != pid and p, HEAL_S)
    assert new and new != pid
    # the restarted dnsmasq reports its existing leases ("old") to the registry
    # (one hook process per lease, serially: allow for a loaded machine)
    assert wait_for(lambda: bed.lab.mapped_ip(c) == c.ip, 20)
    assert bed.lab.mapped_ip(bed.a) == bed.a.ip
    # and a new device after the restart gets a lease that reaches the registry
    d = bed.topo.add_device("d", 1)
    bed.lab.join(d)


def test_daemon_restart_reapplies_the_same_policy(bed: Bed) -> None:
    a, b, c, lab = bed.a, bed.b, bed.c, bed.lab
    lab.ok(f"ADD_BRIDGE {a.mac} {b.mac}")
    lab.ok(f"ADD_NAT {a.mac}")
    try:
        before = lab.table_snapshot()
        lab.stop()
        assert not lab.table_present()  # edgesec removes only its own table
        assert not bed.tcp(a, b)  # bridges are down while edgesec is stopped
        lab.start()
        assert lab.table_snapshot() == before
        assert bed.tcp(a, b) and not bed.tcp(a, c)
        assert bed.topo.http_ok(a.ns, bed.topo.WAN_IP)
        assert lab.mapped_ip(a) == a.ip
    finally:
        lab.ok(f"REMOVE_NAT {a.mac}")
        lab.ok(f"REMOVE_BRIDGE {a.mac} {b.mac}")
