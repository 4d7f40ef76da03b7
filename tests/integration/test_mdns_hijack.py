"""mDNS name hijack (issue #12 item 8) with real DHCP leases and hostnames.

Gateway netns running ``edgesec run`` (subnets, firewall, dnsmasq, mDNS);
dev1 (VLAN 1, the attacker), dev4 (VLAN 2) and dev3 (VLAN 3) get their
addresses from dnsmasq with udhcpc, each sending its name as DHCP hostname.
dev3 never announces anything over mDNS. dev1 announces ``dev3.local A
<dev1's own address>``; dev4 asks for ``dev3.local`` and connects to dev1's
address. The original bridged dev1<->dev4 for good.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator

import pytest
from isolation_lab import IsolationLab, wait_for

from edgesec.lab.topology import LabDevice, Topology, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

PROBE = [sys.executable, "-m", "edgesec.mdns.probe"]


def _mdns_line(lab: IsolationLab) -> str:
    return next((ln for ln in lab.status().splitlines() if ln.startswith("mdns ")), "")


def _count(line: str, pattern: str) -> int:
    m = re.search(pattern, line)
    return int(m.group(1)) if m else 0


@pytest.fixture(scope="module")
def bed() -> Iterator[tuple[Topology, IsolationLab, dict[str, LabDevice]]]:
    with Topology() as topo:
        devs = {n: topo.add_device(n, v) for n, v in (("dev1", 1), ("dev4", 2), ("dev3", 3))}
        lab = IsolationLab(topo, extra={"system": {"execMdnsForward": True},
                                        "dns": {"mdnsReflectIp4": True}})
        try:
            lab.start()
            for dev in devs.values():
                lab.join(dev)  # udhcpc sends the device's name as hostname
            yield topo, lab, devs
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-4000:])
            lab.stop()


def _probe(topo: Topology, dev: LabDevice, *args: str) -> dict:
    res = run(dev.ns, [*PROBE, *args], check=False, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _bridged(lab: IsolationLab, x: LabDevice, y: LabDevice) -> bool:
    reply = lab.ctl("GET_BRIDGES")
    return f"{x.mac},{y.mac}" in reply or f"{y.mac},{x.mac}" in reply


def test_dhcp_hostname_owner_is_not_hijacked(bed) -> None:
    topo, lab, d = bed
    dev1, dev3, dev4 = d["dev1"], d["dev3"], d["dev4"]
    # the mDNS service knows the three DHCP hostnames (lease file re-read on change)
    assert wait_for(lambda: _count(_mdns_line(lab), r"(\d+) identities") >= 3, 30), \
        _mdns_line(lab)
    topo.serve_echo(dev1.ns, tcp=7, udp=None)
    # dev1 announces its own name (so its address is watched for first packets) ...
    _probe(topo, dev1, "send", "dev1.local", dev1.ip, "--answer", dev1.ip)
    assert wait_for(lambda: "dev1.local,A" in lab.ctl("MDNS_NAMES dev1"), 30)
    before = _mdns_line(lab)
    # ... then dev3's name at its own address, while dev4 listens on its VLAN
    lis = topo.popen(dev4.ns, [*PROBE, "listen", "--seconds", "4", "--match", "dev3"],
                     ready="ready")
    _probe(topo, dev1, "send", "dev3.local", dev1.ip, "--answer", dev1.ip, "--count", "3",
           "--interval", "0.2")
    out, _ = lis.communicate(timeout=30)
    assert json.loads(out.strip().splitlines()[-1])["count"] == 0  # not reflected
    # dev4 asks for dev3.local and connects to dev1's address: no bridge
    _probe(topo, dev4, "send", "dev3.local", dev4.ip)
    assert not topo.tcp_ok(dev4.ns, dev1.ip, 7, timeout=2.5)
    assert not topo.tcp_ok(dev4.ns, dev1.ip, 7, timeout=2.5)
    assert not _bridged(lab, dev1, dev4)
    assert dev1.ip not in lab.ctl("MDNS_NAMES dev3")
    after = _mdns_line(lab)
    assert _count(after, r"\bname-conflict=(\d+)") == _count(before,
                                                               r"\bname-conflict=(\d+)") + 3
    assert _count(after, r"refused \([^)]*\bname-conflict (\d+)") >= 1, after
    log = lab.daemon.log()
    assert "dev3.local, which belongs to" in log and "DHCP hostname" in log
    # the rightful owner keeps working: dev3 announces itself, dev4 resolves and is bridged
    topo.serve_echo(dev3.ns, tcp=7, udp=None)
    _probe(topo, dev3, "send", "dev3.local", dev3.ip, "--answer", dev3.ip)
    assert wait_for(lambda: f"dev3.local,A,{dev3.ip}" in lab.ctl("MDNS_NAMES dev3"), 30)
    _probe(topo, dev4, "send", "dev3.local", dev4.ip)
    assert topo.tcp_ok(dev4.ns, dev3.ip, 7, timeout=6)
    assert _bridged(lab, dev3, dev4)
