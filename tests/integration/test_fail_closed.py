"""Fail closed: a gateway whose enforcement cannot run never forwards.

Against the real ``edgesec run`` in a gateway namespace:

* the libnftables binding is hidden (a ``PYTHONPATH`` directory whose
  ``nftables.py`` raises ImportError, as in a venv without Debian's
  python3-nftables): the firewall falls back to the ``nft`` binary and devices
  stay isolated, bridges open and close, a flushed ruleset is healed;
* every backend fails (binding hidden and no nft binary, through the env knob
  or the ``[firewall] nftBinPath`` key): ``run`` exits non-zero with the reason,
  IPv4 forwarding stays 0 and "gateway running" is never logged;
* a required service (DHCP by default) fails: ``run`` exits non-zero and what
  did start is stopped (firewall table removed, forwarding back off).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from isolation_lab import IsolationLab, wait_for

from edgesec.lab.topology import LabDevice, Topology, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

RUN_TIMEOUT_S = 90


def hide_binding(directory: Path) -> Path:
    """A PYTHONPATH directory whose ``nftables`` module fails to import."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "nftables.py").write_text(
        'raise ImportError("No module named \'nftables\' (hidden by the test)")\n')
    return directory


def forwarding(topo: Topology) -> str:
    return run(topo.gateway, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()


def run_to_exit(lab: IsolationLab, env: dict[str, str]) -> tuple[int, str]:
    """``edgesec run`` in the gateway netns; it must exit by itself (it refuses)."""
    argv = [sys.executable, "-m", "edgesec.cli", "run", "-c", str(lab.config), "-ddd"]
    proc = run(lab.topo.gateway, argv, check=False, timeout=RUN_TIMEOUT_S,
               env={**os.environ, **env})
    return proc.returncode, proc.stdout + proc.stderr


def refused(lab: IsolationLab, env: dict[str, str]) -> str:
    """``edgesec run`` refused to start: non-zero exit, never "running", forwarding
    off; its output."""
    code, out = run_to_exit(lab, env)
    assert code != 0, out
    assert "gateway running" not in out, out
    assert forwarding(lab.topo) == "0"
    return out


# -- (a) binding missing: the nft binary enforces -----------------------------------------


class Bed:
    def __init__(self, topo: Topology, lab: IsolationLab, a: LabDevice, b: LabDevice) -> None:
        self.topo, self.lab, self.a, self.b = topo, lab, a, b

    def tcp(self, src: LabDevice, dst: LabDevice | str) -> bool:
        return self.topo.tcp_ok(src.ns, dst.ip if isinstance(dst, LabDevice) else dst)


@pytest.fixture(scope="module")
def binary_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    hidden = hide_binding(tmp_path_factory.mktemp("nobinding"))
    with Topology() as topo:
        a, b = topo.add_device("a", 1), topo.add_device("b", 2)
        lab = IsolationLab(topo, vlans=(1, 2))
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(hidden)  # the daemon's environment only
        try:
            lab.start()
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old
        with lab.stopping():
            for dev in (a, b):
                lab.join(dev)
                topo.serve_echo(dev.ns)
            yield Bed(topo, lab, a, b)


def test_without_binding_the_nft_binary_backend_is_used(binary_bed: Bed) -> None:
    log = binary_bed.lab.daemon.log()
    assert "No module named 'nftables'" in log and "nftables backend: binary" in log, log
    assert "(binary backend)" in binary_bed.lab.status()
    assert binary_bed.lab.table_present()
    assert forwarding(binary_bed.topo) == "1"


def test_without_binding_devices_stay_isolated(binary_bed: Bed) -> None:
    bed = binary_bed
    assert bed.topo.tcp_ok(bed.topo.gateway, bed.b.ip)  # control: b's echo answers
    assert not bed.tcp(bed.a, bed.b) and not bed.tcp(bed.b, bed.a)
    assert bed.topo.tcp_ok(bed.topo.gateway, bed.topo.WAN_IP)  # control: the WAN answers
    assert not bed.tcp(bed.a, bed.topo.WAN_IP)
    bed.lab.ok(f"ADD_BRIDGE {bed.a.mac} {bed.b.mac}")
    try:
        assert bed.tcp(bed.a, bed.b)
    finally:
        bed.lab.ok(f"REMOVE_BRIDGE {bed.a.mac} {bed.b.mac}")
    assert not bed.tcp(bed.a, bed.b)
    # our own commits (made by nft children) are not mistaken for foreign ones
    assert bed.lab.heals() == 0


def test_without_binding_a_flushed_ruleset_is_healed(binary_bed: Bed) -> None:
    bed = binary_bed
    heals = bed.lab.heals()
    bed.lab.nft("flush", "ruleset")
    assert wait_for(lambda: bed.lab.heals() > heals and bed.lab.table_present(), 30)
    assert not bed.tcp(bed.a, bed.b)
    assert forwarding(bed.topo) == "1"


# -- (b) no backend works: refuse ----------------------------------------------------------


@pytest.mark.parametrize("knob", ["env", "config"])
def test_no_nftables_backend_refuses_to_run(tmp_path: Path, knob: str) -> None:
    hidden = hide_binding(tmp_path / "nobinding")
    with Topology() as topo:
        topo.add_device("a", 1)
        extra: dict[str, dict[str, object]] = {}
        env = {"PYTHONPATH": str(hidden)}
        if knob == "env":
            env["EDGESEC_NFT_BIN"] = "/nonexistent/nft"
        else:
            extra["firewall"] = {"nftBinPath": "/nonexistent/nft"}
        lab = IsolationLab(topo, vlans=(1,), extra=extra)
        assert forwarding(topo) == "0"
        out = refused(lab, env)
        assert "No module named 'nftables'" in out and "/nonexistent/nft" in out, out
        assert "required service(s) not running: firewall" in out, out
        assert not lab.table_present()


def test_forwarding_switched_on_before_is_switched_off_on_refusal(tmp_path: Path) -> None:
    hidden = hide_binding(tmp_path / "nobinding")
    with Topology() as topo:
        lab = IsolationLab(topo, vlans=(1,), extra={"firewall": {"nftBackend": "binary",
                                                                 "nftBinPath": "/nonexistent"}})
        run(topo.gateway, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])  # a previous run's
        refused(lab, {"PYTHONPATH": str(hidden)})


# -- a required service fails: stop what started --------------------------------------------


def test_failing_required_service_stops_the_gateway(tmp_path: Path) -> None:
    with Topology() as topo:
        lab = IsolationLab(topo, vlans=(1,), extra={"dhcp": {"dhcpBinPath": "/nonexistent"}})
        out = refused(lab, {})
        assert "required service(s) not running: dhcp" in out, out
        # the firewall had started: it was stopped again, and forwarding with it
        assert "firewall table inet edgesec in place" in out, out
        assert not lab.table_present()


def test_require_services_must_name_enabled_services(tmp_path: Path) -> None:
    with Topology() as topo:
        lab = IsolationLab(topo, vlans=(1,), extra={"system": {"requireServices": "mdns"}})
        out = refused(lab, {})
        assert "requireServices names mdns, which the config does not enable" in out, out


def test_forwarding_left_on_by_a_crash_is_held_off_until_the_firewall_is_in(
        tmp_path: Path) -> None:
    with Topology() as topo:
        topo.add_device("a", 1)
        lab = IsolationLab(topo, vlans=(1,))
        run(topo.gateway, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])  # as a kill -9 leaves it
        lab.start()
        try:
            # the control socket answers before the last services start
            log = wait_for(lambda: "gateway running" in lab.daemon.log() and lab.daemon.log(),
                           30) or lab.daemon.log()
            held = log.index("IPv4 forwarding held off")
            table = log.index("firewall table inet edgesec in place")
            enabled = log.index("IPv4 forwarding enabled")
            assert held < table < enabled < log.index("gateway running"), log
            assert forwarding(topo) == "1"
        finally:
            lab.stop()
        assert forwarding(topo) == "0"  # switched on by us, switched off at stop
