"""Shared set-up for the isolation tests: the test bed plus a real ``edgesec run``.

``IsolationLab`` = a :class:`~edgesec.lab.topology.Topology` whose gateway
namespace runs the daemon with the subnet, firewall and DHCP services (real
dnsmasq, nftables, udhcpc in the devices).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from daemon import Daemon, write_config  # tests/ is on sys.path (tests/conftest.py)
from edgesec.lab.topology import LabDevice, Topology, run

# The healing bound (nft flush, kill -9 of dnsmasq).
HEAL_S = 2.0
SUPERVISOR_UDP_PORT = 32101
RADIUS_PORT = 1812
_COUNTER = itertools.count()
CONTROL_KEY = "isolation-lab-control-key"


class NetnsDaemon(Daemon):
    """A :class:`Daemon` whose control client binds a filesystem address.

    The stock client autobinds an abstract UNIX address, which is private to
    the caller's network namespace, so replies from a daemon in another netns
    would never arrive.
    """

    def ctl(self, command: str, timeout: float = 5.0) -> str:
        path = self.dir / f"client-{os.getpid()}-{next(_COUNTER)}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            try:
                sock.settimeout(timeout)
                sock.sendto(command.encode(), str(self.socket_path))
                return sock.recv(4 * 1024 * 1024).decode("utf-8", "replace")
            finally:
                path.unlink(missing_ok=True)


def bridge_ready(topo: Topology, name: str) -> bool:
    """Has the gateway's bridge ``name`` an IPv4 address (made and configured)?"""
    res = run(topo.gateway, ["ip", "-o", "-4", "addr", "show", "dev", name], check=False)
    return res.returncode == 0 and "inet " in res.stdout


def wait_for(cond: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``cond`` until truthy (returned) or ``timeout``; then return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class IsolationLab:
    """Topology + daemon config; ``start()``/``stop()`` run ``edgesec run`` in the gateway."""

    def __init__(self, topo: Topology, vlans: tuple[int, ...] = (1, 2, 3),
                 extra: dict[str, dict[str, object]] | None = None) -> None:
        self.topo = topo
        self.dir = topo.workdir / "gw"
        self.dir.mkdir()
        ifs = {f"if{v}": f"{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0" for v in vlans}
        ranges = {f"dhcpRange{v}": f"{v},10.0.{v}.10,10.0.{v}.200,255.255.255.0,1h"
                  for v in vlans}
        overrides: dict[str, dict[str, object]] = {
            "system": {"createInterfaces": True, "execFirewall": True, "execDhcp": True,
                       "setIpForward": True, "ignoreErrorOnIfCreate": False,
                       "defaultOpenVlanId": vlans[0], "execCrypt": False},
            "supervisor": {"supervisorControlPort": SUPERVISOR_UDP_PORT,
                           "supervisorControlAddress": "0.0.0.0",
                           "supervisorControlKey": CONTROL_KEY},
            "nat": {"natInterface": topo.WAN_IFNAME},
            "dns": {"servers": topo.WAN_IP},
            "radius": {"port": RADIUS_PORT},
            "interfaces": {"bridgePrefix": "br", "interfacePrefix": "br", **ifs},
            "dhcp": {"dhcpConfigPath": "dnsmasq.conf", "dhcpScriptPath": "dhcp-hook.sh",
                     "dhcpLeasefilePath": "dnsmasq.leases", **ranges},
        }
        for section, keys in (extra or {}).items():
            overrides.setdefault(section, {}).update(keys)
        self.config = write_config(self.dir, overrides)
        # BASE_CONFIG's if1..if5 would add VLANs we did not ask for: rewrite them out.
        text = self.config.read_text()
        text = re.sub(r'^(if|dhcpRange)(\d+) = .*$',
                      lambda m: m.group(0) if int(m.group(2)) in vlans else "", text,
                      flags=re.M)
        self.config.write_text(text)
        self.daemon: NetnsDaemon | None = None

    def start(self) -> NetnsDaemon:
        self.daemon = NetnsDaemon(self.config, netns=self.topo.gateway).start()
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    @contextmanager
    def stopping(self) -> Iterator[IsolationLab]:
        """Stop the daemon on the way out, printing the tail of its log (for a failure)."""
        try:
            yield self
        finally:
            if self.daemon is not None:
                print(self.daemon.log()[-4000:])
            self.stop()

    @contextmanager
    def running(self, *devices: LabDevice, echo: bool = False) -> Iterator[IsolationLab]:
        """Started with ``devices`` joined (each serving the echo ports when ``echo``)."""
        with self.stopping():
            self.start()
            for dev in devices:
                self.join(dev)
                if echo:
                    self.topo.serve_echo(dev.ns)
            yield self

    def ctl(self, command: str) -> str:
        assert self.daemon is not None
        return self.daemon.ctl(command)

    def ok(self, command: str) -> None:
        reply = self.ctl(command)
        assert reply == "OK\n", f"{command} -> {reply!r}\n{self.daemon.log()[-3000:]}"

    def status(self) -> str:
        return self.ctl("STATUS")

    def heals(self) -> int:
        """How often the firewall re-applied its table (from STATUS)."""
        m = re.search(r"healed (\d+)x", self.status())
        return int(m.group(1)) if m else -1

    def dnsmasq_pid(self) -> int | None:
        m = re.search(r"dnsmasq running pid (\d+)", self.status())
        return int(m.group(1)) if m else None

    def mapped_ip(self, dev: LabDevice) -> str:
        line = self.ctl(f"GET_MAP {dev.mac}")
        fields = line.strip().split(",")
        return fields[2] if len(fields) > 2 else ""

    def join(self, dev: LabDevice) -> str:
        """ACCEPT_MAC on its VLAN, get a lease with udhcpc, wait until GET_MAP has it."""
        self.ok(f"ACCEPT_MAC {dev.mac} {dev.vlan}")
        ip = self.topo.dhcp(dev)
        got = wait_for(lambda: self.mapped_ip(dev) == ip, 15)  # the hook runs after the ACK
        assert got, f"GET_MAP never showed {ip}: {self.ctl(f'GET_MAP {dev.mac}')!r}"
        return ip

    def udp_ping_supervisor(self, ns: str, ip: str) -> bool:
        """An *authenticated* PING_SUPERVISOR over UDP from ``ns`` answered PONG."""
        code = ("import sys\n"
                "from edgesec.supervisor.client import SupervisorClient\n"
                f"c = SupervisorClient(udp=({ip!r}, {SUPERVISOR_UDP_PORT}), "
                f"key={CONTROL_KEY.encode()!r}, timeout=1.0)\n"
                "try:\n    sys.exit(0 if c.request('PING_SUPERVISOR') == 'PONG\\n' else 1)\n"
                "except Exception:\n    sys.exit(1)\n")
        return run(ns, [sys.executable, "-c", code], check=False).returncode == 0

    def nft(self, *args: str, check: bool = True) -> str:
        return run(self.topo.gateway, ["nft", *args], check=check).stdout

    def table_snapshot(self) -> dict[str, object]:
        """Our table's chains, rules and set elements, independent of order and handles."""
        listing = json.loads(self.nft("-j", "list", "table", "inet", "edgesec"))
        snap: dict[str, object] = {}
        for obj in listing["nftables"]:
            kind, body = next(iter(obj.items()))
            body = {k: v for k, v in body.items() if k != "handle"}
            if kind == "set":
                elems = body.pop("elem", [])
                if body["name"] == "drops":  # filled by the kernel as packets are dropped
                    elems = []
                snap[f"set {body['name']}"] = (json.dumps(body, sort_keys=True),
                                               sorted(json.dumps(e, sort_keys=True)
                                                      for e in elems))
            elif kind == "rule":
                snap.setdefault(f"rules {body['chain']}", []).append(  # type: ignore[union-attr]
                    json.dumps(body, sort_keys=True))
            elif kind in ("chain", "table"):
                snap[f"{kind} {body['name']}"] = json.dumps(body, sort_keys=True)
        return snap

    def table_present(self) -> bool:
        return run(self.topo.gateway, ["nft", "list", "table", "inet", "edgesec"],
                   check=False).returncode == 0
