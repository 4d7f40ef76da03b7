"""The reusable network-namespace test bed (gateway, wan and device namespaces).

Owns: creating and tearing down hermetic topologies with ``ip netns``/veth so
edgesec can run against real bridges, nftables and DHCP without touching the
host's own networking.

Layout for a prefix ``P`` (``new_prefix()`` makes a unique one per run)::

    P-wan  eth0 198.51.100.2/24, default via .1; echo services (tcp/udp 7, http 80)
      |
    P-gw   wan0 198.51.100.1/24   <- edgesec runs here (natInterface = "wan0")
      |    br<vlan> bridges (created by edgesec's subnet service, or by add_device)
      |      v<name>  (gateway end of each device veth, enslaved to br<vlan>)
    P-<name>  eth0 with the device's own MAC; gets its address with udhcpc

Everything lives inside namespaces named ``P-*``; deleting them deletes every
veth. ``Topology.close()`` (or leaving the ``with`` block) kills the processes
it started (by pid) and removes its namespaces; ``down(prefix)`` does the same
for leftovers of a crashed run by name prefix. Small API::

    with Topology() as t:                        # gateway + wan
        a = t.add_device("a", vlan=1)            # device netns, veth in br1
        t.popen(t.gateway, [...])                # start something in a netns
        ip = t.dhcp(a)                           # real udhcpc lease
        t.tcp_ok(a.ns, t.WAN_IP, 7)              # reachability checks
        t.ping_ok(a.ns, "10.0.1.1")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, netns

NETNS_DIR = Path("/run/netns")
IFNAMSIZ = 15

_UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event script of the edgesec test bed: configures only the address and
# default route of the namespace's interface (never /etc/resolv.conf).
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
      ip route replace default via "${router%% *}" dev "$interface"
    fi
    echo "$ip" > "$EDGESEC_LAB_LEASE"
    ;;
esac
exit 0
"""


def new_prefix(tag: str = "et") -> str:
    """A unique namespace-name prefix for one test run, e.g. ``et3fa9c1``."""
    return f"{tag}{secrets.token_hex(3)}"


def _ns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def pids_in_netns(name: str) -> list[int]:
    """Pids of processes whose network namespace is the named netns (never our own)."""
    ino = _ns_inode(name)
    if ino is None:
        return []
    out = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == me:
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                out.append(int(entry))
        except OSError:
            continue
    return out


def _kill_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists()]
        time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def down(prefix: str) -> list[str]:
    """Remove every namespace named ``<prefix>-*`` (killing processes inside, by pid).

    Returns the namespaces removed. Safe to call when nothing is left.
    """
    if not prefix or len(prefix) < 2:
        raise ValueError("refusing an empty or one-character prefix")
    names = [n for n in netns.listnetns() if n.startswith(prefix + "-")]
    for name in names:
        _kill_pids(pids_in_netns(name))
        with contextlib.suppress(OSError):
            netns.remove(name)
    return names


def ns_cmd(ns: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside network namespace ``ns`` (None: the host's)."""
    return list(argv) if ns is None else ["ip", "netns", "exec", ns, *argv]


def run(
    ns: str,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command inside ``ns`` and wait for it (text output captured)."""
    return subprocess.run(
        ns_cmd(ns, argv),
        check=check,
        timeout=timeout,
        input=input,
        capture_output=True,
        text=True,
        env=env,
    )


def _mac_for(prefix: str, name: str) -> str:
    digest = hashlib.sha256(f"{prefix}/{name}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


@dataclass
class LabDevice:
    """A device namespace: ``eth0`` with ``mac`` whose peer ``veth`` sits in ``bridge``."""

    name: str
    ns: str
    mac: str
    vlan: int
    bridge: str
    veth: str
    ip: str = ""


class Topology:
    """One hermetic topology; use as a context manager (cleans up also on failure)."""

    WAN_GATEWAY_IP = "198.51.100.1"
    WAN_IP = "198.51.100.2"
    WAN_IFNAME = "wan0"
    WAN_TCP_PORT = 7
    WAN_UDP_PORT = 7
    WAN_HTTP_PORT = 80

    def __init__(
        self, prefix: str | None = None, *, wan: bool = True, bridge_prefix: str = "br"
    ) -> None:
        self.prefix = prefix or new_prefix()
        self.gateway = f"{self.prefix}-gw"
        self.wan: str | None = f"{self.prefix}-wan" if wan else None
        self.bridge_prefix = bridge_prefix
        self.devices: dict[str, LabDevice] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._procs: list[subprocess.Popen[str]] = []
        self._udhcpc_script = self.workdir / "udhcpc.sh"
        self._up = False

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Topology:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        """Create the gateway (and wan) namespaces and start the wan services."""
        self._udhcpc_script.write_text(_UDHCPC_SCRIPT)
        self._udhcpc_script.chmod(0o755)
        self._new_ns(self.gateway)
        self._up = True
        if self.wan:
            self._new_ns(self.wan)
            with IPRoute(netns=self.gateway) as ipr:
                ipr.link("add", ifname=self.WAN_IFNAME, kind="veth",
                         peer={"ifname": "eth0", "net_ns_fd": self.wan})
                idx = ipr.link_lookup(ifname=self.WAN_IFNAME)[0]
                ipr.addr("add", index=idx, address=self.WAN_GATEWAY_IP, prefixlen=24)
                ipr.link("set", index=idx, state="up")
            with IPRoute(netns=self.wan) as ipr:
                idx = ipr.link_lookup(ifname="eth0")[0]
                ipr.addr("add", index=idx, address=self.WAN_IP, prefixlen=24)
                ipr.link("set", index=idx, state="up")
                ipr.route("add", dst="0.0.0.0/0", gateway=self.WAN_GATEWAY_IP)
            self.serve_echo(self.wan, tcp=self.WAN_TCP_PORT, udp=self.WAN_UDP_PORT,
                            http=self.WAN_HTTP_PORT)

    def close(self) -> None:
        """Kill started processes (by pid), remove namespaces and the work dir."""
        procs, self._procs = self._procs, []
        _kill_pids([p.pid for p in procs if p.poll() is None])
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=2)
        down(self.prefix)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._up = False

    def _new_ns(self, name: str) -> None:
        netns.create(name)
        with IPRoute(netns=name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    # -- devices -------------------------------------------------------------
    def add_device(
        self, name: str, vlan: int, mac: str | None = None, *, create_bridge: bool = True
    ) -> LabDevice:
        """Create device namespace ``<prefix>-<name>`` whose veth sits in ``br<vlan>``.

        The bridge is created (down, without address) when missing and
        ``create_bridge`` is true; edgesec's subnet service completes it.
        """
        if not name.isalnum() or len(name) > 10 or name in ("gw", "wan"):
            raise ValueError(f"device name must be 1-10 alphanumerics, not gw/wan: {name!r}")
        if name in self.devices:
            raise ValueError(f"device {name!r} exists")
        bridge = f"{self.bridge_prefix}{vlan}"
        veth = f"v{name}"
        if len(bridge) > IFNAMSIZ:
            raise ValueError(f"bridge name too long: {bridge}")
        dev = LabDevice(name=name, ns=f"{self.prefix}-{name}",
                        mac=mac or _mac_for(self.prefix, name),
                        vlan=vlan, bridge=bridge, veth=veth)
        self._new_ns(dev.ns)
        with IPRoute(netns=self.gateway) as ipr:
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": dev.ns})
            if not ipr.link_lookup(ifname=bridge):
                if not create_bridge:
                    raise ValueError(f"bridge {bridge} does not exist in {self.gateway}")
                ipr.link("add", ifname=bridge, kind="bridge")
            br = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("set", index=ipr.link_lookup(ifname=veth)[0], master=br, state="up")
        with IPRoute(netns=dev.ns) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=idx, address=dev.mac, state="up")
        self.devices[name] = dev
        return dev

    def dhcp(self, dev: LabDevice, *, timeout: float = 15, hostname: str | None = None) -> str:
        """Obtain a lease with busybox udhcpc in the device; returns and records the IP."""
        lease = self.workdir / f"{dev.name}.lease"
        lease.unlink(missing_ok=True)
        argv = ["udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", str(max(3, int(timeout))),
                "-T", "1", "-A", "1", "-s", str(self._udhcpc_script),
                "-x", f"hostname:{hostname or dev.name}"]
        env = {**os.environ, "EDGESEC_LAB_LEASE": str(lease)}
        res = run(dev.ns, argv, check=False, timeout=timeout + 5, env=env)
        if res.returncode != 0 or not lease.exists():
            raise RuntimeError(f"udhcpc in {dev.ns} got no lease: {res.stdout}{res.stderr}")
        dev.ip = lease.read_text().strip()
        return dev.ip

    def set_address(self, dev: LabDevice, cidr: str, gateway: str | None = None) -> None:
        """Give the device a static address (replacing others), e.g. to spoof."""
        run(dev.ns, ["ip", "-4", "addr", "flush", "dev", "eth0"])
        run(dev.ns, ["ip", "addr", "add", cidr, "dev", "eth0"])
        if gateway:
            run(dev.ns, ["ip", "route", "replace", "default", "via", gateway])
        dev.ip = cidr.split("/")[0]

    def set_mac(self, dev: LabDevice, mac: str) -> None:
        """Change the device's MAC (e.g. to spoof another device)."""
        with IPRoute(netns=dev.ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], address=mac)

    # -- processes -----------------------------------------------------------
    def popen(self, ns: str | None, argv: Sequence[str], *, ready: str | None = None,
              ready_timeout: float = 10, **kw: object) -> subprocess.Popen[str]:
        """Start ``argv`` in ``ns``; tracked and killed by pid on close.

        With ``ready`` the call waits until that text appears on the child's
        stdout (which must then be a pipe, the default here).
        """
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        proc: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
            ns_cmd(ns, argv), text=True, start_new_session=True, **kw)
        self._procs.append(proc)
        if ready:
            self._wait_line(proc, ready, ready_timeout)
        return proc

    @staticmethod
    def _wait_line(proc: subprocess.Popen[str], text: str, timeout: float) -> None:
        import selectors

        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen = []
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=0.1):
                    line = proc.stdout.readline()
                    if not line and proc.poll() is not None:
                        break
                    seen.append(line)
                    if text in line:
                        return
                elif proc.poll() is not None:
                    break
        raise RuntimeError(f"process {proc.args!r} not ready ({text!r}): {''.join(seen)[-2000:]}")

    def stop(self, proc: subprocess.Popen[str], sig: int = signal.SIGTERM,
             timeout: float = 5) -> int:
        """Signal one started process by pid and wait for it; returns its exit code."""
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        return proc.returncode

    def serve_echo(self, ns: str, *, tcp: int | None = 7, udp: int | None = 7,
                   http: int | None = None) -> subprocess.Popen[str]:
        """Start TCP/UDP echo (and HTTP) services in ``ns``; returns when bound."""
        argv = [sys.executable, "-m", "edgesec.lab.echo"]
        for flag, port in (("--tcp", tcp), ("--udp", udp), ("--http", http)):
            if port:
                argv += [flag, str(port)]
        return self.popen(ns, argv, ready="ready")

    # -- reachability ----------------------------------------------------------
    def _probe(self, ns: str, kind: str, ip: str, port: int, timeout: float,
               source: str | None = None) -> bool:
        argv = [sys.executable, "-m", "edgesec.lab.probe", kind, ip, str(port),
                "--timeout", str(timeout)]
        if source:
            argv += ["--source", source]
        return run(ns, argv, check=False, timeout=timeout + 10).returncode == 0

    def tcp_ok(self, ns: str, ip: str, port: int = 7, timeout: float = 1.0,
               source: str | None = None) -> bool:
        """True when a TCP echo at ip:port answers from inside ``ns`` (optional source IP)."""
        return self._probe(ns, "tcp", ip, port, timeout, source)

    def connect_ok(self, ns: str, ip: str, port: int, timeout: float = 1.0,
                   source: str | None = None) -> bool:
        """True when a TCP connect to ip:port succeeds from inside ``ns``."""
        return self._probe(ns, "connect", ip, port, timeout, source)

    def udp_ok(self, ns: str, ip: str, port: int = 7, timeout: float = 1.0,
               source: str | None = None) -> bool:
        """True when a UDP echo at ip:port answers from inside ``ns``."""
        return self._probe(ns, "udp", ip, port, timeout, source)

    def http_ok(self, ns: str, ip: str, port: int = 80, timeout: float = 1.0) -> bool:
        """True when an HTTP GET at ip:port answers 200 from inside ``ns``."""
        return self._probe(ns, "http", ip, port, timeout)

    def ping_ok(self, ns: str, ip: str, timeout: int = 1) -> bool:
        """True when one ICMP echo to ``ip`` is answered from inside ``ns``."""
        res = run(ns, ["busybox", "ping", "-c", "1", "-W", str(timeout), ip],
                  check=False, timeout=timeout + 10)
        return res.returncode == 0
