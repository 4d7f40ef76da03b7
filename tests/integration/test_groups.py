"""Groups and one-way access end to end: ``edgesec run`` in a gateway netns, real nftables,
dnsmasq and udhcpc, four device namespaces on four VLANs (two cameras, an NVR, a phone).

The module shares one topology and daemon; every test leaves the registry as it found it
(no groups, no access rules, no bridges).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from isolation_lab import HEAL_S, IsolationLab, wait_for

from edgesec.lab.topology import LabDevice, Topology, run

_RECEIVER = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "s.bind(('', int(sys.argv[1])))\nprint('ready',flush=True)\ns.recv(64)\n"
             "print('got',flush=True)\n")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


class Bed:
    def __init__(self, topo: Topology, lab: IsolationLab, devs: dict[str, LabDevice]) -> None:
        self.topo, self.lab, self.devs = topo, lab, devs
        self.cam1, self.cam2, self.nvr, self.phone = (devs[n] for n in
                                                       ("cam1", "cam2", "nvr", "phone"))

    def tcp(self, src: LabDevice, dst: LabDevice, port: int = 7) -> bool:
        return self.topo.tcp_ok(src.ns, dst.ip, port)

    def http(self, src: LabDevice, dst: LabDevice, port: int = 80) -> bool:
        return self.topo.http_ok(src.ns, dst.ip, port)

    def udp(self, src: LabDevice, dst: LabDevice, port: int = 7) -> bool:
        return self.topo.udp_ok(src.ns, dst.ip, port)

    def ping(self, src: LabDevice, dst: LabDevice) -> bool:
        return self.topo.ping_ok(src.ns, dst.ip)

    def hold(self, src: LabDevice, dst: LabDevice, port: int = 7) -> subprocess.Popen[str]:
        """An open TCP echo connection src -> dst (see edgesec.lab.hold)."""
        return self.topo.popen(src.ns, [sys.executable, "-m", "edgesec.lab.hold", dst.ip,
                                        str(port)], ready="ready", stdin=subprocess.PIPE)

    def lands(self, src: LabDevice, dst: LabDevice, port: int = 9999, sport: int = 0) -> bool:
        """Does a lone UDP datagram src[:sport] -> dst:port arrive (no reply needed)?

        Catches one-way leaks that a request/reply probe cannot see.
        """
        rx = self.topo.popen(dst.ns, [sys.executable, "-c", _RECEIVER, str(port)], ready="ready")
        try:
            send = (f"import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                    f"s.bind(('', {sport}))\n"
                    f"for _ in range(3):\n    s.sendto(b'x',('{dst.ip}',{port}));time.sleep(0.2)")
            run(src.ns, [sys.executable, "-c", send])
            assert rx.stdout is not None
            ready, _, _ = select.select([rx.stdout], [], [], 2.0)
            return bool(ready) and rx.stdout.readline().strip() == "got"
        finally:
            self.topo.stop(rx)

    @staticmethod
    def still_echoes(proc: subprocess.Popen[str]) -> bool:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("probe\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip() == "echo"

    def clean(self) -> bool:
        return (self.lab.ctl("GET_GROUPS") == "OK\n" and self.lab.ctl("GET_ACCESS") == "OK\n")


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    with Topology() as topo:
        devs = {n: topo.add_device(n, v) for n, v in
                (("cam1", 1), ("cam2", 2), ("nvr", 3), ("phone", 4))}
        lab = IsolationLab(topo, vlans=(1, 2, 3, 4))
        try:
            lab.start()
            for dev in devs.values():
                lab.join(dev)
                topo.serve_echo(dev.ns, tcp=7, udp=7, http=80)
            yield Bed(topo, lab, devs)
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-4000:])
            lab.stop()


def test_group_members_reach_each_other_and_non_members_do_not(bed: Bed) -> None:
    cams = (bed.cam1, bed.cam2, bed.nvr)
    for d in cams:
        bed.lab.ok(f"ADD_GROUP_MEMBER cameras {d.mac}")
    try:
        assert bed.lab.ctl("GET_GROUPS") == "".join(
            f"cameras,{m}\n" for m in sorted(d.mac for d in cams))
        for src in cams:
            for dst in cams:
                if src is not dst:
                    assert bed.tcp(src, dst), (src.name, dst.name)
        assert bed.ping(bed.cam1, bed.nvr) and bed.udp(bed.nvr, bed.cam2)
        for d in cams:  # the phone is in no group
            assert not bed.tcp(bed.phone, d) and not bed.tcp(d, bed.phone)
        # leaving the group closes exactly that member's paths
        bed.lab.ok(f"REMOVE_GROUP_MEMBER cameras {bed.cam2.mac}")
        assert not bed.tcp(bed.cam2, bed.cam1) and not bed.tcp(bed.nvr, bed.cam2)
        assert bed.tcp(bed.cam1, bed.nvr) and bed.tcp(bed.nvr, bed.cam1)
    finally:
        for d in cams:
            bed.lab.ctl(f"REMOVE_GROUP_MEMBER cameras {d.mac}")
    assert bed.clean() and not bed.tcp(bed.cam1, bed.nvr)


def test_one_way_access_opens_exactly_from_to_port_and_replies_flow(bed: Bed) -> None:
    phone, cam1, cam2 = bed.phone, bed.cam1, bed.cam2
    bed.lab.ok(f"ADD_ACCESS {phone.mac} {cam1.mac} tcp/80")
    bed.lab.ok(f"ADD_ACCESS {phone.mac} {cam2.mac} udp/7")
    try:
        assert bed.lab.ctl("GET_ACCESS") == "".join(sorted(
            [f"{phone.mac},{cam1.mac},tcp/80\n", f"{phone.mac},{cam2.mac},udp/7\n"]))
        assert bed.http(phone, cam1)                 # the web UI, and its replies
        assert not bed.tcp(phone, cam1, 7)           # no other port
        assert not bed.udp(phone, cam1, 80)          # no other protocol
        assert not bed.ping(phone, cam1)
        assert not bed.http(cam1, phone) and not bed.tcp(cam1, phone)  # never the reverse
        assert not bed.lands(phone, cam1, 80)  # UDP is not TCP
        # not even lone datagrams from the answering side's port
        bed.lab.ok(f"ADD_ACCESS {phone.mac} {bed.nvr.mac} udp/9998")
        assert bed.lands(phone, bed.nvr, 9998)  # control: the receiver works
        assert not bed.lands(bed.nvr, phone, 9999, sport=9998)
        bed.lab.ok(f"REMOVE_ACCESS {phone.mac} {bed.nvr.mac} udp/9998")
        assert bed.udp(phone, cam2)                  # UDP: the answer is a reply
        assert not bed.udp(cam2, phone) and not bed.tcp(phone, cam2)
        assert not bed.http(phone, bed.nvr)
    finally:
        bed.lab.ok(f"REMOVE_ACCESS {phone.mac} {cam1.mac} tcp/80")
        bed.lab.ok(f"REMOVE_ACCESS {phone.mac} {cam2.mac} udp/7")
    assert not bed.http(phone, cam1) and not bed.udp(phone, cam2)
    assert bed.clean()


def test_any_access_opens_every_port_one_way(bed: Bed) -> None:
    bed.lab.ok(f"ADD_ACCESS {bed.nvr.mac} {bed.cam1.mac}")
    try:
        assert bed.tcp(bed.nvr, bed.cam1) and bed.http(bed.nvr, bed.cam1)
        assert bed.ping(bed.nvr, bed.cam1)           # ICMP echo and its reply
        assert not bed.tcp(bed.cam1, bed.nvr) and not bed.ping(bed.cam1, bed.nvr)
        assert bed.lands(bed.nvr, bed.cam1)  # control: the receiver works
        assert not bed.lands(bed.cam1, bed.nvr)  # no one-way leak either
    finally:
        bed.lab.ok(f"REMOVE_ACCESS {bed.nvr.mac} {bed.cam1.mac}")
    assert not bed.tcp(bed.nvr, bed.cam1)


def test_removal_cuts_established_connections(bed: Bed) -> None:
    phone, cam1, cam2, nvr = bed.phone, bed.cam1, bed.cam2, bed.nvr
    bed.lab.ok(f"ADD_ACCESS {phone.mac} {cam1.mac} tcp/7")
    bed.lab.ok(f"ADD_GROUP_MEMBER pair {cam2.mac}")
    bed.lab.ok(f"ADD_GROUP_MEMBER pair {nvr.mac}")
    try:
        by_rule, by_group = bed.hold(phone, cam1), bed.hold(cam2, nvr)
        assert bed.still_echoes(by_rule) and bed.still_echoes(by_group)
        bed.lab.ok(f"REMOVE_ACCESS {phone.mac} {cam1.mac} tcp/7")
        bed.lab.ok(f"REMOVE_GROUP_MEMBER pair {nvr.mac}")
        assert not bed.still_echoes(by_rule)
        assert not bed.still_echoes(by_group)
    finally:
        bed.lab.ctl(f"REMOVE_ACCESS {phone.mac} {cam1.mac} tcp/7")
        bed.lab.ctl(f"REMOVE_GROUP_MEMBER pair {cam2.mac}")
        bed.lab.ctl(f"REMOVE_GROUP_MEMBER pair {nvr.mac}")
    assert bed.clean()


def test_bad_requests_fail_and_change_nothing(bed: Bed) -> None:
    for command in ("ADD_GROUP_MEMBER cameras 02:00:00:00:00:99",
                    f"ADD_GROUP_MEMBER Bad!Name {bed.cam1.mac}",
                    f"ADD_ACCESS {bed.phone.mac} {bed.cam1.mac} tcp/70000",
                    f"REMOVE_ACCESS {bed.phone.mac} {bed.cam1.mac} tcp/80",
                    f"REMOVE_GROUP_MEMBER cameras {bed.cam1.mac}"):
        assert bed.lab.ctl(command) == "FAIL\n", command
    assert bed.clean()
    assert not bed.tcp(bed.phone, bed.cam1, 80)


def test_events_reach_subscribers(bed: Bed, tmp_path: Path) -> None:
    path = bed.lab.dir / f"watch-{os.getpid()}.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sub:
        sub.bind(str(path))
        sub.settimeout(5)
        try:
            sub.sendto(b"SUBSCRIBE_EVENTS", str(bed.lab.daemon.socket_path))  # type: ignore[union-attr]
            assert sub.recv(64) == b"OK\n"
            cam1, phone = bed.cam1.mac, bed.phone.mac
            bed.lab.ok(f"ADD_GROUP_MEMBER cameras {cam1}")
            bed.lab.ok(f"ADD_ACCESS {phone} {cam1} tcp/80")
            bed.lab.ok(f"REMOVE_ACCESS {phone} {cam1} tcp/80")
            bed.lab.ok(f"REMOVE_GROUP_MEMBER cameras {cam1}")
            got: list[str] = []
            audit: list[str] = []
            while len(got) < 4:
                line = sub.recv(512).decode()
                (audit if line.startswith("POLICY ") else got).append(line)
            # each command that changed the policy is audited too
            assert any(f"ADD_GROUP_MEMBER cameras {cam1}" in a for a in audit), audit
            assert got == [f"GROUP_CHANGED cameras {cam1} added\n",
                           f"ACCESS_ADDED {phone} {cam1} tcp/80 manual\n",
                           f"ACCESS_REMOVED {phone} {cam1} tcp/80 manual\n",
                           f"GROUP_CHANGED cameras {cam1} removed\n"]
            sub.sendto(b"UNSUBSCRIBE_EVENTS", str(bed.lab.daemon.socket_path))  # type: ignore[union-attr]
            assert wait_for(lambda: sub.recv(512) == b"OK\n", 10)  # after the last POLICY
        finally:
            path.unlink(missing_ok=True)


def test_flushed_ruleset_is_healed_with_groups_and_rules(bed: Bed) -> None:
    bed.lab.ok(f"ADD_GROUP_MEMBER g {bed.cam1.mac}")
    bed.lab.ok(f"ADD_GROUP_MEMBER g {bed.cam2.mac}")
    bed.lab.ok(f"ADD_ACCESS {bed.phone.mac} {bed.nvr.mac} tcp/80")
    try:
        before = bed.lab.table_snapshot()
        heals = bed.lab.heals()
        run(bed.topo.gateway, ["nft", "flush", "ruleset"])
        assert wait_for(lambda: bed.lab.heals() > heals, 30)
        assert wait_for(lambda: bed.lab.table_snapshot() == before, HEAL_S * 10)
        assert bed.tcp(bed.cam1, bed.cam2) and bed.http(bed.phone, bed.nvr)
        assert not bed.http(bed.nvr, bed.phone)
    finally:
        bed.lab.ok(f"REMOVE_GROUP_MEMBER g {bed.cam1.mac}")
        bed.lab.ok(f"REMOVE_GROUP_MEMBER g {bed.cam2.mac}")
        bed.lab.ok(f"REMOVE_ACCESS {bed.phone.mac} {bed.nvr.mac} tcp/80")


def test_restart_keeps_groups_and_rules(bed: Bed) -> None:
    lab, cam1, cam2, nvr, phone = bed.lab, bed.cam1, bed.cam2, bed.nvr, bed.phone
    lab.ok(f"ADD_GROUP_MEMBER cameras {cam1.mac}")
    lab.ok(f"ADD_GROUP_MEMBER cameras {nvr.mac}")
    lab.ok(f"ADD_ACCESS {phone.mac} {cam2.mac} tcp/80")
    try:
        groups, rules = lab.ctl("GET_GROUPS"), lab.ctl("GET_ACCESS")
        before = lab.table_snapshot()
        lab.stop()
        assert not bed.tcp(cam1, nvr)  # edgesec is down: its paths are too
        lab.start()
        assert lab.ctl("GET_GROUPS") == groups and lab.ctl("GET_ACCESS") == rules
        assert lab.table_snapshot() == before
        assert bed.tcp(cam1, nvr) and bed.tcp(nvr, cam1) and not bed.tcp(cam1, cam2)
        assert bed.http(phone, cam2) and not bed.http(cam2, phone)
    finally:
        lab.ok(f"REMOVE_GROUP_MEMBER cameras {cam1.mac}")
        lab.ok(f"REMOVE_GROUP_MEMBER cameras {nvr.mac}")
        lab.ok(f"REMOVE_ACCESS {phone.mac} {cam2.mac} tcp/80")
    assert bed.clean()
