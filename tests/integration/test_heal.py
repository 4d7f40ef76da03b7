"""Healing a flushed ruleset: both tables come back, counted, announced, still isolating.

The real ``edgesec run`` (subnets, firewall, DHCP, mDNS with automatic
bridging) in a gateway namespace; ``nft flush ruleset`` there removes both
tables edgesec owns (``inet edgesec`` and ``inet edgesec_mdns``). The daemon
learns it from netlink notifications and re-applies both; STATUS counts the
heals and subscribers get ``FIREWALL_HEALED`` events. A second bed runs the
``nft`` binary backend through a wrapper that can be made to fail: while the
table cannot be restored, IPv4 forwarding stays off.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from isolation_lab import IsolationLab, wait_for

from edgesec.lab.topology import LabDevice, Topology, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

DEADLINE_S = 30.0
MDNS = {"system": {"execMdnsForward": True},
        "dns": {"mdnsReflectIp4": True, "mdnsAutoBridge": True}}


def forwarding(topo: Topology) -> str:
    return run(topo.gateway, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()


def count(pattern: str, status: str) -> int:
    m = re.search(pattern, status, re.M)
    return int(m.group(1)) if m else -1


def fw_heals(lab: IsolationLab) -> int:
    return count(r"^firewall .*healed (\d+)x", lab.status())


def mdns_heals(lab: IsolationLab) -> int:
    return count(r"^mdns .*detection table healed (\d+)x", lab.status())


def table_present(lab: IsolationLab, table: str) -> bool:
    return run(lab.topo.gateway, ["nft", "list", "table", "inet", table],
               check=False).returncode == 0


class Subscriber:
    """An event subscriber on the daemon's UNIX socket (filesystem-bound, see NetnsDaemon)."""

    def __init__(self, lab: IsolationLab) -> None:
        assert lab.daemon is not None
        self.path = lab.dir / "events.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(5.0)
        self.sock.sendto(b"SUBSCRIBE_EVENTS", str(lab.daemon.socket_path))
        assert self.sock.recv(4096) == b"OK\n"
        self.seen: list[str] = []

    def wait(self, prefix: str, timeout: float = DEADLINE_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.seen:
                if line.startswith(prefix):
                    self.seen.remove(line)
                    return line
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self.seen += self.sock.recv(65536).decode().splitlines()
            except TimeoutError:
                break
        raise AssertionError(f"no event {prefix!r}; got {self.seen}")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


class Bed:
    def __init__(self, topo: Topology, lab: IsolationLab, a: LabDevice, b: LabDevice) -> None:
        self.topo, self.lab, self.a, self.b = topo, lab, a, b


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    with Topology() as topo:
        a, b = topo.add_device("a", 1), topo.add_device("b", 2)
        lab = IsolationLab(topo, vlans=(1, 2), extra=MDNS)
        with lab.running(a, b, echo=True):
            assert wait_for(lambda: mdns_heals(lab) == 0, DEADLINE_S), lab.status()
            yield Bed(topo, lab, a, b)


def test_flushed_ruleset_restores_both_tables_counts_and_announces(bed: Bed) -> None:
    lab, topo = bed.lab, bed.topo
    events = Subscriber(lab)
    try:
        assert fw_heals(lab) == 0
        for n in range(1, 4):
            fw, md = fw_heals(lab), mdns_heals(lab)
            lab.nft("flush", "ruleset")
            assert wait_for(lambda: table_present(lab, "edgesec")
                            and table_present(lab, "edgesec_mdns")
                            and fw_heals(lab) > fw and mdns_heals(lab) > md,  # noqa: B023
                            DEADLINE_S), lab.status()
            assert fw_heals(lab) == fw + 1 and mdns_heals(lab) == md + 1, lab.status()
            assert re.match(r"FIREWALL_HEALED inet edgesec \d+ table_deleted$",
                            events.wait("FIREWALL_HEALED inet edgesec "))
            assert events.wait("FIREWALL_HEALED inet edgesec_mdns ")
            assert fw_heals(lab) == n
        # enforcement after the heals: isolated, no WAN, forwarding back on
        assert topo.tcp_ok(topo.gateway, bed.b.ip) and topo.tcp_ok(topo.gateway, topo.WAN_IP)
        assert not topo.tcp_ok(bed.a.ns, bed.b.ip)
        assert not topo.tcp_ok(bed.a.ns, topo.WAN_IP)
        assert forwarding(topo) == "1"
        # the mDNS table is whole again (sets, chain, rules)
        listing = lab.nft("list", "table", "inet", "edgesec_mdns")
        assert "announced4" in listing and "group 5353" in listing, listing
    finally:
        events.close()


def test_altered_mdns_table_is_healed_and_foreign_tables_are_ignored(bed: Bed) -> None:
    lab = bed.lab
    md, fw = mdns_heals(lab), fw_heals(lab)
    lab.nft("flush", "chain", "inet", "edgesec_mdns", "detect")  # rules gone, table stays
    assert wait_for(lambda: mdns_heals(lab) > md, DEADLINE_S), lab.status()
    assert "group 5353" in lab.nft("list", "chain", "inet", "edgesec_mdns", "detect")
    # someone else's table is none of our business
    md, fw2 = mdns_heals(lab), fw_heals(lab)
    lab.nft("add", "table", "inet", "someone_else")
    lab.nft("delete", "table", "inet", "someone_else")
    time.sleep(1.0)  # a wrong reaction would be within milliseconds
    assert (mdns_heals(lab), fw_heals(lab)) == (md, fw2) and fw2 == fw, lab.status()


def test_bridged_pair_survives_a_flush(bed: Bed) -> None:
    lab = bed.lab
    lab.ok(f"ADD_BRIDGE {bed.a.mac} {bed.b.mac}")
    try:
        fw = fw_heals(lab)
        lab.nft("flush", "ruleset")
        assert wait_for(lambda: fw_heals(lab) > fw and table_present(lab, "edgesec"),
                        DEADLINE_S)
        assert wait_for(lambda: bed.topo.tcp_ok(bed.a.ns, bed.b.ip), DEADLINE_S)
    finally:
        lab.ok(f"REMOVE_BRIDGE {bed.a.mac} {bed.b.mac}")
    assert not bed.topo.tcp_ok(bed.a.ns, bed.b.ip)


# -- a heal that cannot be made keeps forwarding off ------------------------------------------


def _write_exe(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(stat.S_IRWXU)
    tmp.replace(path)  # atomic: never a half-written (or busy) script


def test_failed_heal_holds_forwarding_off_until_restored(tmp_path: Path) -> None:
    wrapper = tmp_path / "nft"
    _write_exe(wrapper, "#!/bin/sh\nexec nft \"$@\"\n")
    with Topology() as topo:
        a, b = topo.add_device("a", 1), topo.add_device("b", 2)
        lab = IsolationLab(topo, vlans=(1, 2), extra={
            "firewall": {"nftBackend": "binary", "nftBinPath": str(wrapper)}})
        try:
            lab.start()
            for dev in (a, b):
                lab.join(dev)
                topo.serve_echo(dev.ns)
            assert "(binary backend)" in lab.status() and forwarding(topo) == "1"
            _write_exe(wrapper, "#!/bin/sh\necho 'nft broken by the test' >&2\nexit 1\n")
            lab.nft("flush", "ruleset")
            assert wait_for(lambda: "heal failed" in lab.status(), DEADLINE_S), lab.status()
            assert forwarding(topo) == "0"  # the table is gone: nothing is forwarded
            assert not topo.tcp_ok(a.ns, b.ip) and not topo.tcp_ok(a.ns, topo.WAN_IP)
            fw = fw_heals(lab)
            _write_exe(wrapper, "#!/bin/sh\nexec nft \"$@\"\n")  # retried every second
            assert wait_for(lambda: fw_heals(lab) > fw and forwarding(topo) == "1",
                            DEADLINE_S), lab.status()
            assert lab.table_present() and not topo.tcp_ok(a.ns, b.ip)
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-4000:])
            lab.stop()
