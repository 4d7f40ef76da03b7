"""VLAN pool: bridges of pool VLANs appear when a device is put there, dnsmasq serves
the pool subnet, and pool devices are isolated like any other."""

from __future__ import annotations

import os

import pytest
from isolation_lab import IsolationLab, bridge_ready, wait_for

from edgesec.lab.topology import Topology

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def test_pool_vlans_get_bridges_lazily_and_leases_from_their_subnet() -> None:
    with Topology() as topo:
        lab = IsolationLab(topo, vlans=(1,), extra={
            "interfaces": {"vlanPoolPrefix": "10.200.0.0/24", "vlanPoolPrefixLen": 28,
                           "vlanPoolFirstVlan": 100},
            "system": {"allocateVlans": True}})
        try:
            lab.start()
            assert not bridge_ready(topo, "br100")  # nobody on the pool yet: no bridge
            devs = []
            for name, vlan in (("p", 100), ("q", 101)):
                mac = f"02:00:00:00:01:{vlan - 100:02x}"
                lab.ok(f"ACCEPT_MAC {mac} {vlan}")
                assert wait_for(lambda v=vlan: bridge_ready(topo, f"br{v}"), 5)
                dev = topo.add_device(name, vlan, mac, create_bridge=False)
                devs.append(dev)
            p, q = devs
            assert lab.join(p).startswith("10.200.0.")  # join repeats ACCEPT_MAC: idempotent
            assert lab.join(q).startswith("10.200.0.")
            assert not bridge_ready(topo, "br102")
            # /28 subnets: p in .0/28 (gateway .1), q in .16/28 (gateway .17)
            assert 2 <= int(p.ip.rsplit(".", 1)[1]) <= 14
            assert 18 <= int(q.ip.rsplit(".", 1)[1]) <= 30
            topo.serve_echo(q.ns)
            assert topo.tcp_ok(topo.gateway, q.ip)
            assert not topo.tcp_ok(p.ns, q.ip)
            lab.ok(f"ADD_BRIDGE {p.mac} {q.mac}")
            assert topo.tcp_ok(p.ns, q.ip)
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-3000:])
            lab.stop()
