"""End-to-end scenarios of the lab: the real daemon in a gateway namespace, real
RADIUS exchanges, dnsmasq leases to udhcpc, nftables, and the `edgesec lab` CLI."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgesec.lab import lab as lab_mod
from edgesec.lab.lab import Lab
from edgesec.lab.report import parse_all, parse_bridges
from edgesec.lab.state import LabState, state_root
from edgesec.lab.topology import Topology, pids_in_netns

pytestmark = pytest.mark.integration

EDGESEC = [sys.executable, "-m", "edgesec.cli"]
WAN = Topology.WAN_IP


def _prefix() -> str:
    return "lt" + secrets.token_hex(3)


@pytest.fixture
def prefix() -> Iterator[str]:
    p = _prefix()
    try:
        yield p
    finally:
        lab_mod.down(p)


def _lab(prefix: str, devices: int, **kw: object) -> Lab:
    lab = Lab.create(prefix)
    lab.up(devices, **kw)  # type: ignore[arg-type]
    return lab


def _policy(lab: Lab) -> tuple[dict[str, tuple[str, ...]], set[tuple[str, str]]]:
    """(mac -> (allow, ip, vlan, nat), bridges) as the daemon reports them."""
    devices = {mac: (f[0], f[2], f[4], f[5]) for mac, f in parse_all(lab.ctl("GET_ALL")).items()}
    bridges = {tuple(sorted(p)) for p in parse_bridges(lab.ctl("GET_BRIDGES"))}
    return devices, bridges  # type: ignore[return-value]


def test_fifty_devices_join_and_get_leases(prefix: str) -> None:
    """Behaviour only: the time it takes is bench/lab.py's figure, not an assertion."""
    lab = _lab(prefix, 50, agents=False, workers=16)
    try:
        devs = lab.state.devices
        assert [d.state for d in devs] == ["joined"] * 50, [
            (d.name, d.error) for d in devs if d.state != "joined"
        ]
        # every device has its own VLAN and an address inside that VLAN's subnet
        assert len({d.vlan for d in devs}) == 50
        assert len({d.ip for d in devs}) == 50
        for d in devs:
            addr = ipaddress.IPv4Address(d.ip)
            gw = lab.run(d.name, ["ip", "-4", "route", "show", "default"]).stdout
            assert gw.startswith("default via 10.100."), gw
            assert addr in ipaddress.IPv4Network(f"{gw.split()[2]}/28", strict=False)
        # and edgesec's registry learned every lease from dnsmasq's hook
        assert lab.wait_registered(timeout=120) == []
        known = parse_all(lab.ctl("GET_ALL"))
        assert {known[d.mac][2] for d in devs} == {d.ip for d in devs}
        assert {int(known[d.mac][4]) for d in devs} == {d.vlan for d in devs}
    finally:
        lab.down()


def test_daemon_restart_keeps_every_device_policy(prefix: str) -> None:
    lab = _lab(prefix, 4)
    try:
        d1, d2, d3, d4 = (lab.device(f"dev{i}") for i in range(1, 5))
        assert lab.ctl(f"ADD_BRIDGE {d1.mac} {d2.mac}") == "OK\n"
        assert lab.ctl(f"ADD_NAT {d3.mac}") == "OK\n"

        def check_paths() -> None:
            assert lab.probe("dev1", "tcp", d2.ip, 7, timeout=2)
            assert lab.probe("dev2", "tcp", d1.ip, 7, timeout=2)
            assert not lab.probe("dev1", "tcp", d4.ip, 7)
            assert not lab.probe("dev4", "tcp", d2.ip, 7)
            assert lab.probe("dev3", "http", WAN, 80, timeout=2)
            assert not lab.probe("dev4", "http", WAN, 80)
            assert not lab.probe("dev1", "http", WAN, 80)

        _wait_agents(lab)
        check_paths()
        before = _policy(lab)
        old_pid = lab.state.daemon_pid
        states = lab.restart_daemon()
        assert lab.state.daemon_pid != old_pid
        assert all(v.startswith("ok") for v in states.values()), states
        assert _policy(lab) == before
        check_paths()
        # the restarted daemon still hands out leases and records them
        lease = lab.run(
            "dev4",
            ["udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "5", "-T", "1", "-s", "/bin/true"],
        )
        assert lease.returncode == 0, lease.stdout + lease.stderr
    finally:
        lab.down()


def _wait_agents(lab: Lab) -> None:
    import time

    deadline = time.monotonic() + 15
    logs = [lab.dir / f"agent-{d.name}.log" for d in lab.state.devices]
    while time.monotonic() < deadline:
        if all(p.exists() and "ready" in p.read_text() for p in logs):
            return
        time.sleep(0.2)
    raise AssertionError("device agents did not start")


def _root_links() -> set[str]:
    out = subprocess.run(
        ["ip", "-j", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {link["ifname"] for link in json.loads(out)}


def _root_tables() -> set[str]:
    out = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.splitlines())


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*EDGESEC, "lab", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_cli_up_status_exec_then_down_after_kill9_leaves_nothing(prefix: str) -> None:
    links, tables = _root_links(), _root_tables()
    up = _cli("up", "--devices", "3", "--prefix", prefix)
    assert "3 devices joined" in up.stdout
    state = LabState.load(prefix)
    status = _cli("status", "--prefix", prefix).stdout
    for dev in state.devices:
        assert dev.name in status and dev.mac in status and dev.ip in status, status
    shown = _cli("exec", "--prefix", prefix, "dev1", "--", "ip", "-4", "-br", "addr").stdout
    assert state.device("dev1").ip in shown

    # crash: kill -9 the daemon (and its process group), the agents and everything
    # else running in the lab's namespaces, without any chance to clean up
    victims = set()
    for ns in lab_mod.leftovers(prefix):
        victims.update(pids_in_netns(ns))
    assert state.daemon_pid in victims
    os.killpg(state.daemon_pid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert lab_mod.leftovers(prefix)  # the debris is there

    down = _cli("down", "--prefix", prefix)
    assert f"namespace {prefix}-gw" in down.stdout
    assert lab_mod.leftovers(prefix) == []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
    assert not {
        name for name in _root_links() - links if prefix in name or name.startswith(("br", "vdev"))
    }
    assert _root_tables() - tables == set()
    for pid in victims:
        assert (
            not Path(f"/proc/{pid}").exists()
            or Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
        )
    assert not (state_root() / prefix).exists()
    assert not list(Path("/tmp").glob(f"{prefix}-*"))
    again = _cli("down", "--prefix", prefix)
    assert "nothing left" in again.stdout
