"""Detection and containment end to end: ``edgesec run`` with the detect service in a
gateway netns, real dnsmasq and nftables, devices in namespaces making real attack
traffic with ``edgesec.lab.attack``.

Devices: a (VLAN 1) and b (VLAN 2) with NAT and bridged to each other; c (VLAN 3)
is exempt.  Every scenario must quarantine a: no WAN, no bridged peer, DHCP and
DNS still work, b unaffected; RELEASE restores the exact NAT and bridge rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator

import pytest
from isolation_lab import IsolationLab, wait_for

from edgesec.lab.topology import LabDevice, Topology, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

DNS_PROBE = """
import socket, sys
import dns.message
q = dns.message.make_query("probe.example", "A").to_wire()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, (sys.argv[1], 53))
try:
    s.recv(4096)
except OSError:
    sys.exit(1)
"""


class Bed:
    def __init__(self, topo: Topology, lab: IsolationLab, a: LabDevice, b: LabDevice,
                 c: LabDevice) -> None:
        self.topo, self.lab, self.a, self.b, self.c = topo, lab, a, b, c

    def gw(self, dev: LabDevice) -> str:
        return f"10.0.{dev.vlan}.1"

    def attack(self, dev: LabDevice, kind: str, *extra: str) -> float:
        peers = [d.ip for d in (self.a, self.b, self.c) if d is not dev]
        argv = [sys.executable, "-m", "edgesec.lab.attack", kind, "--gateway", self.gw(dev),
                "--wan", self.topo.WAN_IP, *[x for p in peers for x in ("--peer", p)], *extra]
        out = run(dev.ns, argv, timeout=120).stdout
        first = next(json.loads(line) for line in out.splitlines() if "first_packet" in line)
        return float(first["first_packet"])

    def dns_ok(self, dev: LabDevice) -> bool:
        return run(dev.ns, [sys.executable, "-c", DNS_PROBE, self.gw(dev)],
                   check=False, timeout=20).returncode == 0

    def wan_ok(self, dev: LabDevice) -> bool:
        return self.topo.http_ok(dev.ns, self.topo.WAN_IP)

    def quarantined(self) -> dict[str, str]:
        reply = self.lab.ctl("GET_QUARANTINE")
        return {f[0]: f[1] for f in (ln.split(",") for ln in reply.splitlines()) if len(f) > 1}

    def alerts(self) -> list[tuple[str, str, int, str]]:
        db = sqlite3.connect(self.lab.dir / "detect.sqlite")
        try:
            return [tuple(r) for r in db.execute(  # type: ignore[misc]
                "SELECT mac, kind, severity, community_id FROM alerts ORDER BY rowid")]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    with Topology() as topo:
        # the upstream DNS server dnsmasq forwards to (answers every name)
        topo.popen(topo.wan or "", [sys.executable, "-m", "edgesec.lab.dnsd", "--answer",
                                    topo.WAN_IP], ready="ready")
        a, b, c = (topo.add_device(n, v) for n, v in (("a", 1), ("b", 2), ("c", 3)))
        detect = {"enabled": True, "containment": "quarantine", "learningWindow": 5,
                  "exemptDevices": c.mac}
        lab = IsolationLab(topo, extra={"detect": detect})
        try:
            lab.start()
            for dev in (a, b, c):
                lab.join(dev)
                topo.serve_echo(dev.ns)
            for dev in (a, b, c):
                lab.ok(f"ADD_NAT {dev.mac}")
            lab.ok(f"ADD_BRIDGE {a.mac} {b.mac}")
            assert wait_for(lambda: "detect ok running" in lab.status(), 30), lab.status()
            yield Bed(topo, lab, a, b, c)
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-6000:])
            lab.stop()


def _reach(bed: Bed) -> dict[str, bool]:
    a, b = bed.a, bed.b
    return {"a-wan": bed.wan_ok(a), "a-b": bed.topo.tcp_ok(a.ns, b.ip),
            "b-a": bed.topo.tcp_ok(b.ns, a.ip), "b-wan": bed.wan_ok(b),
            "a-dns": bed.dns_ok(a)}


def test_01_benign_traffic_raises_nothing(bed: Bed) -> None:
    """Normal lab behaviour: web, DNS lookups, the bridged peer, DHCP renewals, mDNS."""
    for _ in range(3):
        assert _reach(bed) == {"a-wan": True, "a-b": True, "b-a": True, "b-wan": True,
                               "a-dns": True}
        bed.topo.dhcp(bed.a)
        bed.topo.dhcp(bed.b)
    time.sleep(6)  # past the learning window: the same again is still nothing
    assert _reach(bed)["a-wan"]
    bed.topo.dhcp(bed.a)
    time.sleep(2)
    assert [x for x in bed.alerts() if x[2] >= 2] == []
    assert bed.quarantined() == {}


@pytest.mark.parametrize("kind", ["scan", "lateral", "dnstunnel", "spoof", "exfil"])
def test_02_attack_is_detected_and_contained_and_release_restores(bed: Bed, kind: str) -> None:
    a, b = bed.a, bed.b
    rows_before = bed.lab.table_snapshot()
    all_before = bed.lab.ctl("GET_ALL")
    bed.attack(a, kind)
    assert wait_for(lambda: a.mac in bed.quarantined(), 30), (bed.alerts(), bed.lab.status())
    assert any(m == a.mac and s >= 3 for m, _k, s, _c in bed.alerts())
    # contained: no WAN, no bridged peer either way; DHCP and DNS still work
    reach = _reach(bed)
    assert reach == {"a-wan": False, "a-b": False, "b-a": False, "b-wan": True,
                     "a-dns": True}, reach
    assert bed.topo.dhcp(a) == a.ip
    assert bed.lab.ctl("GET_ALL") == all_before  # byte-compatible: NAT flag etc. unchanged
    bed.lab.ok(f"RELEASE {a.mac}")
    assert wait_for(lambda: bed.lab.table_snapshot() == rows_before, 10)
    assert _reach(bed)["a-wan"] and bed.topo.tcp_ok(a.ns, b.ip)


def test_03_alerts_reach_eve_with_community_id(bed: Bed) -> None:
    eve = bed.lab.dir / "eve.json"
    lines = [json.loads(x) for x in eve.read_text().splitlines()]
    alerts = [x for x in lines if x.get("event_type") == "alert"]
    assert alerts and any(x.get("community_id", "").startswith("1:") and x.get("flow_id")
                          for x in alerts)
    out = run(bed.topo.gateway, [sys.executable, "-m", "edgesec.cli", "alerts", "-c",
                                 str(bed.lab.config), "--json"]).stdout
    kinds = {json.loads(x)["kind"] for x in out.splitlines()}
    assert {"port_scan", "lateral_probe", "dns_tunnel", "upload_volume"} <= kinds, kinds


def test_04_an_exempt_device_is_recorded_never_quarantined(bed: Bed) -> None:
    c = bed.c
    bed.attack(c, "scan")
    assert wait_for(lambda: any(m == c.mac for m, *_ in bed.alerts()), 30)
    time.sleep(2)
    assert c.mac not in bed.quarantined()


def test_05_quarantine_survives_a_restart(bed: Bed) -> None:
    a = bed.a
    bed.lab.ok(f"QUARANTINE {a.mac} operator")
    assert wait_for(lambda: not bed.wan_ok(a), 10)
    bed.lab.stop()
    bed.lab.start()
    assert bed.quarantined() == {a.mac: "operator"}
    assert not bed.wan_ok(a) and not bed.topo.tcp_ok(bed.b.ns, a.ip)
    assert bed.dns_ok(a)
    bed.lab.ok(f"RELEASE {a.mac}")
    assert wait_for(lambda: bed.wan_ok(a), 10)


def test_06_a_released_device_that_attacks_again_is_contained_again(bed: Bed) -> None:
    a = bed.a
    for _ in range(2):
        bed.attack(a, "scan")
        assert wait_for(lambda: a.mac in bed.quarantined(), 30), bed.alerts()
        bed.lab.ok(f"RELEASE {a.mac}")
        assert wait_for(lambda: bed.wan_ok(a), 10)


FLOOD = """
import os, socket, struct, sys
ifname = [n for n in os.listdir("/sys/class/net") if n != "lo"][0]
gw = socket.inet_aton(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
for i in range(3000):
    mac = bytes([2, 0x66, (i >> 16) & 255, (i >> 8) & 255, i & 255, 1])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                     bytes([10, 0, 3, 200]), gw)
    total = sum(struct.unpack("!10H", ip))
    total = (total >> 16) + (total & 0xFFFF)
    ip = ip[:10] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + ip[12:]
    udp = struct.pack("!HHHH", 40000 + i % 1000, 1000 + i % 5000, 8, 0)
    s.send(b"\\xff" * 6 + mac + b"\\x08\\x00" + ip + udp)
"""


def test_07_floods_stay_bounded_and_the_control_plane_answers(bed: Bed) -> None:
    """From a device namespace: 3000 forged MACs, a 2000-port scan, a DNS tunnel at once.

    Alerts stay within the rate limit, only registry devices get profiles, the
    daemon keeps answering, nothing crashes.
    """
    c = bed.c  # exempt: stays connected while it floods
    before = len(bed.alerts())
    run(c.ns, [sys.executable, "-c", FLOOD, bed.gw(c)], timeout=120)
    bed.attack(c, "dnstunnel")
    bed.attack(c, "scan")
    assert bed.lab.ctl("PING_SUPERVISOR") == "PONG\n"
    assert wait_for(lambda: "new_device_flood" in {k for _m, k, *_ in bed.alerts()}, 30), (
        bed.alerts()[before:], bed.lab.status())
    time.sleep(6)  # a stats line and a profile write later
    new = bed.alerts()[before:]
    assert len(new) <= 60, new  # alertsPerMinute; repeats are aggregated
    assert "detect ok running" in bed.lab.status() and "malformed 0" in bed.lab.status()
    db = sqlite3.connect(bed.lab.dir / "detect.sqlite")
    try:
        profiles = [r[0] for r in db.execute("SELECT mac FROM profiles")]
    except sqlite3.OperationalError:
        profiles = []  # not written yet (every 30 s): the bound holds trivially
    finally:
        db.close()
    assert set(profiles) <= {bed.a.mac, bed.b.mac, bed.c.mac}


def test_08_a_beacon_to_a_new_address_is_reported_not_contained(bed: Bed) -> None:
    """After learning, connections to a never-seen external address: low severity only."""
    a = bed.a
    bed.attack(a, "beacon")
    assert wait_for(lambda: any(m == a.mac and k == "new_destination" and s == 1
                                for m, k, s, _c in bed.alerts()), 30), bed.alerts()
    assert a.mac not in bed.quarantined()
