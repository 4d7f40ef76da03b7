"""The network-namespace test bed itself: hermetic, reusable, always cleaned up."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import pytest
from pyroute2 import netns

from edgesec.lab.topology import Topology, down, new_prefix, pids_in_netns, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def wait_until(cond: Callable[[], object], timeout: float = 5) -> object:
    deadline = time.monotonic() + timeout
    while not (value := cond()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def _ours(prefix: str) -> list[str]:
    return [n for n in netns.listnetns() if n.startswith(prefix + "-")]


def test_topology_builds_gateway_wan_devices_and_removes_everything() -> None:
    with Topology() as t:
        a = t.add_device("a", 4)
        assert sorted(_ours(t.prefix)) == sorted([t.gateway, t.wan, a.ns])
        # the device's veth sits in br4 of the gateway, with the device's own MAC
        links = run(t.gateway, ["ip", "-o", "link", "show", "master", "br4"]).stdout
        assert a.veth in links
        assert a.mac in run(a.ns, ["ip", "-o", "link", "show", "eth0"]).stdout
        # the wan services answer the gateway; the probes also say no when nothing listens
        assert t.tcp_ok(t.gateway, t.WAN_IP) and t.udp_ok(t.gateway, t.WAN_IP)
        assert t.http_ok(t.gateway, t.WAN_IP) and t.ping_ok(t.gateway, t.WAN_IP)
        assert not t.tcp_ok(t.gateway, t.WAN_IP, 9)
        assert not t.udp_ok(t.gateway, t.WAN_IP, 9)
        proc = t.popen(a.ns, ["sleep", "60"])
        prefix, workdir = t.prefix, t.workdir
    assert _ours(prefix) == []
    assert proc.poll() is not None
    assert not workdir.exists()


def test_cleanup_also_when_the_body_fails() -> None:
    with pytest.raises(RuntimeError, match="boom"), Topology(wan=False) as t:
        t.add_device("x", 1)
        prefix = t.prefix
        raise RuntimeError("boom")
    assert _ours(prefix) == []


def test_down_removes_leftovers_of_a_crashed_run_by_prefix() -> None:
    prefix = new_prefix("ed")
    netns.create(f"{prefix}-gw")
    proc = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-gw", "sleep", "60"])
    try:
        assert wait_until(lambda: pids_in_netns(f"{prefix}-gw"))
        assert down(prefix) == [f"{prefix}-gw"]
        assert proc.wait(5) is not None
        assert _ours(prefix) == []
        assert down(prefix) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        if _ours(prefix):
            down(prefix)


def test_device_names_are_checked() -> None:
    with Topology(wan=False) as t:
        with pytest.raises(ValueError):
            t.add_device("gw", 1)
        with pytest.raises(ValueError):
            t.add_device("bad-name", 1)
        with pytest.raises(ValueError, match="does not exist"):
            t.add_device("y", 7, create_bridge=False)
