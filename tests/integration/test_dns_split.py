"""Split DNS end to end: a device without NAT gets local names only.

Gateway netns running ``edgesec run`` (subnets, firewall, DHCP/DNS with the
default ``localOnlyWithoutNat = true``), two devices with udhcpc leases, and a
DNS server in the wan namespace that records every name it is asked
(``edgesec.lab.dnsd --record``): the "internet" that must learn nothing from a
device without NAT.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isolation_lab import IsolationLab, wait_for

from edgesec.lab.topology import LabDevice, Topology, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

GW_A = "10.0.1.1"
GW_B = "10.0.2.1"
QUERY = """
import sys, dns.exception, dns.message, dns.query, dns.rcode
name, server, port, proto = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sport = int(sys.argv[5]) if len(sys.argv) > 5 else 0
q = dns.message.make_query(name, "A")
try:
    r = (dns.query.tcp if proto == "tcp" else dns.query.udp)(q, server, port=port, timeout=2,
                                                             source_port=sport)
    print(dns.rcode.to_text(r.rcode()), " ".join(str(x) for rr in r.answer for x in rr))
except (dns.exception.Timeout, OSError) as exc:
    print("NOANSWER", type(exc).__name__)
"""


class Bed:
    def __init__(self, topo: Topology, lab: IsolationLab, a: LabDevice, b: LabDevice,
                 record: Path) -> None:
        self.topo, self.lab, self.a, self.b, self.record = topo, lab, a, b, record

    def ask(self, dev: LabDevice, name: str, server: str, port: int = 53,
            proto: str = "udp", sport: int = 0) -> str:
        res = run(dev.ns, [sys.executable, "-c", QUERY, name, server, str(port), proto,
                           str(sport)], check=False, timeout=30)
        return res.stdout.strip() or res.stderr.strip()

    def wan_saw(self) -> str:
        return self.record.read_text() if self.record.exists() else ""

    def barrier(self) -> str:
        """Ask the wan resolver directly from the gateway and wait until it recorded
        that: whatever the gateway forwarded before has arrived by then."""
        marker = _secret()
        res = run(self.topo.gateway, [sys.executable, "-c", QUERY, f"{marker}.barrier.test",
                                      self.topo.WAN_IP, "53", "udp"], check=False, timeout=30)
        assert res.stdout.startswith("NOERROR"), res.stdout + res.stderr
        assert wait_for(lambda: marker in self.wan_saw(), 10)
        return self.wan_saw()


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    with Topology() as topo:
        a, b = topo.add_device("a", 1), topo.add_device("b", 2)
        record = topo.workdir / "wan-names.txt"
        topo.popen(topo.wan or "", [sys.executable, "-m", "edgesec.lab.dnsd", "--answer",
                                    topo.WAN_IP, "--record", str(record)], ready="ready")
        lab = IsolationLab(topo, vlans=(1, 2))
        try:
            lab.start()
            lab.join(a)
            lab.join(b)
            yield Bed(topo, lab, a, b, record)
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-4000:])
            lab.stop()


def _secret() -> str:
    return f"x{uuid.uuid4().hex[:20]}"


def test_both_resolvers_run_tracked_by_pid(bed: Bed) -> None:
    status = bed.lab.status()
    assert re.search(r"dnsmasq running pid \d+ .*; forwarder running pid \d+", status), status


def test_device_without_nat_gets_local_names_only(bed: Bed) -> None:
    secrets = [_secret() for _ in range(3)]
    for s in secrets[:2]:
        got = bed.ask(bed.b, f"{s}.example.com", GW_B)
        assert got.split()[0] in ("REFUSED", "NXDOMAIN"), got
    got = bed.ask(bed.b, f"{secrets[2]}.example.com", GW_B, proto="tcp")
    assert got.split()[0] in ("REFUSED", "NXDOMAIN"), got
    # the forwarder's own port is closed to a device without NAT
    assert bed.ask(bed.b, f"{_secret()}.example.com", GW_B, port=5053).startswith("NOANSWER")
    # local (DHCP) names still resolve
    assert bed.ask(bed.b, "a", GW_B) == f"NOERROR {bed.a.ip}"
    saw = bed.barrier()
    assert not any(s in saw for s in secrets), saw


def test_add_nat_forwards_and_remove_nat_stops_without_restart(bed: Bed) -> None:
    pid = bed.lab.dnsmasq_pid()
    bed.lab.ok(f"ADD_NAT {bed.b.mac}")
    try:
        s1, s2 = _secret(), _secret()
        got = wait_for(lambda: (r := bed.ask(bed.b, f"{s1}.example.com", GW_B))
                       .startswith("NOERROR") and r, 30, interval=0.5)
        assert got == f"NOERROR {bed.topo.WAN_IP}", got
        assert bed.ask(bed.b, f"{s2}.example.com", GW_B, proto="tcp") == (
            f"NOERROR {bed.topo.WAN_IP}")
        assert wait_for(lambda: s1 in bed.wan_saw() and s2 in bed.wan_saw(), 10)
        # local names through the forwarder, and the other device is unaffected
        assert bed.ask(bed.b, "a", GW_B) == f"NOERROR {bed.a.ip}"
        s3 = _secret()
        assert bed.ask(bed.a, f"{s3}.example.com", GW_A).split()[0] in ("REFUSED", "NXDOMAIN")
    finally:
        bed.lab.ok(f"REMOVE_NAT {bed.b.mac}")
    s4 = _secret()
    got = bed.ask(bed.b, f"{s4}.example.com", GW_B)
    assert got.split()[0] in ("REFUSED", "NXDOMAIN"), got
    assert bed.ask(bed.b, "a", GW_B) == f"NOERROR {bed.a.ip}"
    saw = bed.barrier()
    assert s3 not in saw and s4 not in saw, saw
    assert bed.lab.dnsmasq_pid() == pid  # no restart


def test_a_resolver_with_a_fixed_source_port_switches_too(bed: Bed) -> None:
    # Some embedded resolvers ask from one port: their flow (and its NAT binding)
    # would outlive the NAT change; edgesec forgets the device's DNS flows instead.
    port = 40053
    for _ in range(3):  # an established, assured flow from b:40053 to the gateway
        got = bed.ask(bed.b, f"{_secret()}.example.com", GW_B, sport=port)
        assert got.startswith("REFUSED"), got
    bed.lab.ok(f"ADD_NAT {bed.b.mac}")
    try:
        got = wait_for(lambda: (r := bed.ask(bed.b, f"{_secret()}.example.com", GW_B,
                                             sport=port)).startswith("NOERROR") and r,
                       10, interval=0.5)
        assert got == f"NOERROR {bed.topo.WAN_IP}", got
    finally:
        bed.lab.ok(f"REMOVE_NAT {bed.b.mac}")
    got = wait_for(lambda: (r := bed.ask(bed.b, "a", GW_B, sport=port))
                   .startswith("NOERROR") and r, 10, interval=0.5)
    assert got == f"NOERROR {bed.a.ip}", got  # local names again, on the same flow
    s = _secret()
    assert bed.ask(bed.b, f"{s}.example.com", GW_B, sport=port).startswith("REFUSED")
    assert s not in bed.barrier()
