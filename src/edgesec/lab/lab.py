"""The lab: the whole gateway with virtual IoT devices on one machine.

Owns the lifecycle of one lab, named by a prefix: ``Lab.up`` builds the
test bed's topology (gateway and wan namespaces, :mod:`edgesec.lab.topology`),
writes the gateway's config (:mod:`edgesec.lab.gwconfig`), starts ``edgesec
run`` in the gateway namespace (:mod:`edgesec.lab.daemon`) and lets devices
join the way real ones do: a RADIUS MAC-auth exchange with edgesec's server
(:mod:`edgesec.lab.hostap`, the lab playing hostapd) decides accept and VLAN,
the device's veth is placed in that VLAN's bridge, a real DHCP client gets the
address from edgesec's dnsmasq, and an agent (:mod:`edgesec.lab.agent`) serves,
announces over mDNS and makes light traffic. Everything is recorded in the
lab's state (:mod:`edgesec.lab.state`) so ``status``/``exec``/``down`` work
from other processes; :func:`down` also cleans up after a crash.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyroute2 import IPRoute, netns

from edgesec.atomic import write_atomic
from edgesec.config import Settings, load_settings
from edgesec.lab import daemon, gwconfig, hostap
from edgesec.lab import topology as tb
from edgesec.lab.state import DEFAULT_PREFIX, DeviceState, LabState, check_prefix, lab_dir

AGENT_MARKER = "edgesec.lab.agent"
DAEMON_MARKER = "edgesec.cli run"
FORWARD_MARKER = "edgesec.lab.forward"
BRIDGE_WAIT_S = 5.0


class LabError(RuntimeError):
    """The lab cannot be built or found; the message says what to do."""


def device_name(index: int) -> str:
    return f"dev{index}"


def device_mac(prefix: str, name: str) -> str:
    """A stable, locally administered unicast MAC per lab and device."""
    digest = hashlib.sha256(f"edgesec-lab/{prefix}/{name}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def leftovers(prefix: str) -> list[str]:
    """Namespaces of a lab (or a crashed one) with this prefix."""
    return [n for n in netns.listnetns() if n.startswith(prefix + "-")]


class Lab:
    """One lab. Build with :meth:`create` + :meth:`up`, or find with :meth:`load`."""

    def __init__(self, state: LabState, topo: tb.Topology | None = None) -> None:
        self.state = state
        self.topo = topo
        self._daemon_proc: subprocess.Popen[bytes] | None = None
        self._radius: hostap.HostapdClient | None = None
        self._children: list[subprocess.Popen[bytes]] = []
        self.timings: dict[str, float] = {}  # seconds per phase of up()
        self.log: Callable[[str], None] = lambda _msg: None

    # -- finding -------------------------------------------------------------
    @classmethod
    def create(cls, prefix: str = DEFAULT_PREFIX, root: Path | None = None) -> Lab:
        """A new, empty lab; refuses when one with this prefix exists or left debris."""
        directory = lab_dir(check_prefix(prefix), root)
        if (directory / "state.json").exists() or leftovers(prefix):
            raise LabError(
                f"a lab with prefix {prefix!r} exists (or a crashed one left "
                f"namespaces): run `edgesec lab down --prefix {prefix}` first"
            )
        return cls(LabState(prefix=prefix, dir=str(directory)))

    @classmethod
    def load(cls, prefix: str = DEFAULT_PREFIX, root: Path | None = None) -> Lab:
        try:
            return cls(LabState.load(prefix, root))
        except FileNotFoundError as exc:
            raise LabError(f"{exc}; start one with `edgesec lab up`") from None

    @property
    def socket(self) -> Path:
        return Path(self.state.socket)

    @property
    def dir(self) -> Path:
        return Path(self.state.dir)

    # -- bringing up -----------------------------------------------------------
    def up(
        self,
        devices: int = 5,
        config: Path | None = None,
        *,
        agents: bool = True,
        announce_every: int = 2,
        workers: int = 8,
    ) -> None:
        """Build everything; on any failure tear down what was built and re-raise."""
        if devices < 0:
            raise LabError("the number of devices cannot be negative")
        try:
            t0 = time.monotonic()
            self._up_gateway(devices, config)
            t1 = time.monotonic()
            names = [device_name(i) for i in range(1, devices + 1)]
            self.join_many(names, announce_every=announce_every, workers=workers)
            t2 = time.monotonic()
            missing = self.wait_registered(timeout=10.0 + devices)
            if missing:
                self.log(f"edgesec has not recorded the leases of {', '.join(missing)} yet")
            t3 = time.monotonic()
            if agents:
                self.start_agents()
            self.timings = {
                "gateway": t1 - t0,
                "join": t2 - t1,
                "registered": t3 - t2,
                "agents": time.monotonic() - t3,
            }
        except BaseException:
            self.down()
            raise

    def _up_gateway(self, devices: int, config: Path | None) -> None:
        st = self.state
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        st.gateway_ns, st.wan_ns = f"{st.prefix}-gw", f"{st.prefix}-wan"
        st.save()  # from here on `down` finds the lab even if we crash
        self.topo = tb.Topology(st.prefix)
        st.workdir = str(self.topo.workdir)
        st.save()
        self.log(f"creating namespaces {st.gateway_ns} and {st.wan_ns}")
        self.topo.up()
        self.topo.popen(
            st.wan_ns,
            [sys.executable, "-m", "edgesec.lab.dnsd", "--answer", tb.Topology.WAN_IP],
            ready="ready",
        )
        st.pids = tb.pids_in_netns(st.wan_ns)
        secrets = gwconfig.LabSecrets.generate()
        st.crypt_passphrase = os.environ.get("EDGESEC_CRYPT_PASSPHRASE") or secrets.crypt_passphrase
        if config is None:
            path = gwconfig.write(self.dir, devices, secrets)
        else:
            path = Path(config).resolve()
        settings = load_settings(path)
        problems = gwconfig.check(settings, devices)
        if problems:
            raise LabError(f"{path}: " + "; ".join(problems))
        st.config = str(path)
        st.socket = str(settings.supervisor.supervisor_control_path)
        st.radius_port = settings.radius.port
        st.radius_secret = settings.radius.secret
        st.capture_db = str(settings.capture.capture_db_path or "")
        st.save()
        self._precreate_bridges(settings, devices)
        self.start_daemon()
        if settings.api.port and settings.api.token_file is not None:
            self._forward_api(settings.api.port, settings.api.token_file)

    def _forward_api(self, port: int, token_file: Path) -> None:
        """An admin token and the API/dashboard on the host's loopback (first free port)."""
        from edgesec.api.tokens import TokenStore

        st = self.state
        st.api_token, _ = TokenStore(token_file).create("admin", "lab")
        host_port = _free_port(port)
        assert self.topo is not None
        proc = self.topo.popen(
            None, [sys.executable, "-m", FORWARD_MARKER, "--listen", str(host_port),
                   "--netns", st.gateway_ns, "--to", str(port)], ready="ready")
        st.forwarder_pid = proc.pid
        st.api_url = f"http://127.0.0.1:{host_port}/"
        st.save()

    def api(self, method: str, path: str, body: object = None) -> object:
        """Call the lab gateway's management API with the lab's token; JSON in and out."""
        import json
        import urllib.request

        req = urllib.request.Request(
            self.state.api_url.rstrip("/") + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.state.api_token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as res:
            raw = res.read()
        return json.loads(raw) if raw else None

    def _precreate_bridges(self, settings: Settings, devices: int) -> None:
        """Create (down, without address) the pool bridges the devices will get.

        edgesec's subnet service completes them (address, up) when a device is
        allocated their VLAN, exactly as for bridges the test bed creates. Why:
        the capture service picks its interfaces among the bridges that exist
        when it starts, so bridges created later would not be captured.
        """
        pool = sorted(settings.interfaces.pool_vlans)
        if not settings.system.allocate_vlans or not pool:
            return
        with IPRoute(netns=self.state.gateway_ns) as ipr:
            for vlan in pool[:devices]:
                sub = settings.interfaces.subnet_for_vlan(vlan)
                if sub is not None and not ipr.link_lookup(ifname=sub.bridge):
                    ipr.link("add", ifname=sub.bridge, kind="bridge")

    def start_daemon(self, timeout: float = 40.0) -> dict[str, str]:
        """Start ``edgesec run`` in the gateway namespace and wait for its services."""
        st = self.state
        log_path = self.dir / "edgesec.log"
        self.log(f"starting edgesec in {st.gateway_ns}")
        proc = daemon.start(
            st.gateway_ns,
            Path(st.config),
            log_path,
            {"EDGESEC_CRYPT_PASSPHRASE": st.crypt_passphrase},
        )
        self._daemon_proc = proc
        st.daemon_pid = proc.pid
        st.save()
        return daemon.wait_ready(proc.pid, self.socket, log_path, timeout, netns=st.gateway_ns)

    def stop_daemon(self, kill: bool = False) -> None:
        """Stop the daemon by its recorded pid (SIGKILL at once with ``kill``)."""
        pid = self.state.daemon_pid
        daemon.terminate(pid, DAEMON_MARKER, grace=0 if kill else 20.0, group=True)
        if self._daemon_proc is not None:
            with contextlib.suppress(Exception):
                self._daemon_proc.wait(timeout=5)
            self._daemon_proc = None
        self.state.daemon_pid = None
        self.state.save()

    def restart_daemon(self) -> dict[str, str]:
        self.stop_daemon()
        return self.start_daemon()

    # -- devices ----------------------------------------------------------------
    def radius(self) -> hostap.HostapdClient:
        if self._radius is None:
            self._radius = hostap.HostapdClient(
                self.state.gateway_ns,
                self.state.radius_secret,
                ("127.0.0.1", self.state.radius_port),
            )
        return self._radius

    def join_many(
        self, names: Sequence[str], *, announce_every: int = 2, workers: int = 8
    ) -> list[DeviceState]:
        """Join devices in parallel; a device that fails is recorded, not fatal."""
        for i, name in enumerate(names, 1):
            ann = name if announce_every and i % announce_every == 1 % announce_every else ""
            self.state.devices.append(
                DeviceState(name=name, mac=device_mac(self.state.prefix, name), announce=ann)
            )
        self.state.save()
        todo = [self.state.device(n) for n in names]
        # RADIUS in order (milliseconds each), so dev1 gets the first pool VLAN,
        # dev2 the next, ...; then bridges and DHCP in parallel.
        verdicts: list[hostap.Verdict | Exception] = []
        for dev in todo:
            try:
                verdicts.append(self.radius().authorize(dev.mac))
            except Exception as exc:
                verdicts.append(exc)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            list(pool.map(self._join_safely, todo, verdicts))
        self.state.save()
        return todo

    def _join_safely(self, dev: DeviceState, verdict: hostap.Verdict | Exception) -> None:
        try:
            if isinstance(verdict, Exception):
                raise verdict
            self.join(dev, verdict)
        except Exception as exc:
            dev.state, dev.error = "failed", f"{type(exc).__name__}: {exc}"
            self.log(f"{dev.name}: {dev.error}")

    def join(self, dev: DeviceState, verdict: hostap.Verdict | None = None) -> DeviceState:
        """RADIUS decides, the veth goes into the VLAN's bridge, DHCP gives the address.

        ``verdict`` is the RADIUS answer when the caller already asked.
        """
        if self.topo is None:
            raise LabError("devices can only join in the process that built the lab")
        if verdict is None:
            verdict = self.radius().authorize(dev.mac)
        if not verdict.accept:
            dev.state, dev.error = "rejected", "Access-Reject"
            return dev
        if verdict.vlan is None:
            raise LabError("Access-Accept without a VLAN (Tunnel-Private-Group-ID)")
        dev.psk_ok = bool(verdict.psk)
        bridge = f"br{verdict.vlan}"
        self._wait_bridge(bridge)
        lab_dev = self.topo.add_device(dev.name, verdict.vlan, dev.mac)
        dev.ns, dev.vlan, dev.bridge, dev.veth = lab_dev.ns, lab_dev.vlan, bridge, lab_dev.veth
        dev.state = "attached"
        self.state.save()
        dev.ip = self.topo.dhcp(lab_dev, timeout=20)
        dev.state = "joined"
        self.log(f"{dev.name} {dev.mac} joined VLAN {dev.vlan} as {dev.ip}")
        return dev

    def wait_registered(self, timeout: float = 10.0) -> list[str]:
        """Wait until edgesec's registry holds every joined device's leased IP.

        (dnsmasq reports leases through its hook a moment after the client has
        it.) Returns the names still missing when the time is up.
        """
        from edgesec.lab.report import parse_all

        deadline = time.monotonic() + timeout
        missing: list[str] = []
        while True:
            try:
                known = parse_all(self.ctl("GET_ALL"))
            except Exception:
                known = {}
            missing = [
                d.name
                for d in self.state.devices
                if d.state == "joined" and d.ip not in known.get(d.mac, [""] * 4)[2:4]
            ]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)

    def _wait_bridge(self, bridge: str) -> bool:
        """Wait until edgesec's subnet service has the bridge up with an address."""
        deadline = time.monotonic() + BRIDGE_WAIT_S
        with IPRoute(netns=self.state.gateway_ns) as ipr:
            while time.monotonic() < deadline:
                idx = ipr.link_lookup(ifname=bridge)
                if idx and ipr.get_addr(index=idx[0], family=2):
                    return True
                time.sleep(0.05)
        return False

    def start_agents(self) -> None:
        """Start each joined device's agent (services, mDNS announcement, traffic)."""
        peers = [d.ip for d in self.state.devices if d.ip and not d.announce]
        peers_file = self.dir / "peers.json"
        write_atomic(peers_file, json.dumps(peers), 0o644)
        for dev in self.state.devices:
            if dev.state != "joined" or daemon.alive(dev.agent_pid, AGENT_MARKER):
                continue
            argv = [
                sys.executable,
                "-m",
                AGENT_MARKER,
                "--peers",
                str(peers_file),
                "--wan",
                tb.Topology.WAN_IP,
            ]
            if dev.announce:
                argv += ["--announce", dev.announce]
            with open(self.dir / f"agent-{dev.name}.log", "ab") as log:
                proc = subprocess.Popen(
                    tb.ns_cmd(dev.ns, argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self._children.append(proc)
            dev.agent_pid = proc.pid
        self.state.save()

    # -- using ---------------------------------------------------------------
    def ctl(self, command: str, timeout: float = 5.0) -> str:
        return daemon.ctl(self.socket, command, timeout, netns=self.state.gateway_ns)

    def device(self, name: str) -> DeviceState:
        try:
            return self.state.device(name)
        except KeyError as exc:
            raise LabError(str(exc.args[0])) from None

    def run(
        self, name: str, argv: Sequence[str], timeout: float = 30, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a device (or ``gw``/``wan``) and wait for it."""
        ns = {"gw": self.state.gateway_ns, "wan": self.state.wan_ns}.get(name)
        return tb.run(ns or self.device(name).ns, argv, check=check, timeout=timeout)

    def probe(self, name: str, kind: str, ip: str, port: int, timeout: float = 1.0) -> bool:
        """Reachability from a device: kind is tcp (echo), udp, http or connect."""
        argv = [
            sys.executable,
            "-m",
            "edgesec.lab.probe",
            kind,
            ip,
            str(port),
            "--timeout",
            str(timeout),
        ]
        return self.run(name, argv, timeout=timeout + 15).returncode == 0

    # -- tearing down ------------------------------------------------------------
    def down(self) -> list[str]:
        if self._radius is not None:
            self._radius.close()
            self._radius = None
        if self._daemon_proc is not None and self.state.daemon_pid:
            self.stop_daemon()
        removed = down(self.state.prefix, Path(self.state.dir).parent)
        if self.topo is not None:
            self.topo.close()  # reaps the processes it started (already killed above)
        for proc in self._children:
            with contextlib.suppress(Exception):
                proc.wait(timeout=2)
        self._children.clear()
        return removed


def down(prefix: str = DEFAULT_PREFIX, root: Path | None = None) -> list[str]:
    """Remove every trace of lab ``prefix``: processes, namespaces, files. Idempotent.

    Works from the state file when there is one, and by name prefix for what a
    crashed run left behind. Returns what was removed, one line per item.
    """
    check_prefix(prefix)
    removed: list[str] = []
    directory = lab_dir(prefix, root)
    state: LabState | None = None
    with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
        state = LabState.load(prefix, root)
    if state is not None:
        for dev in state.devices:
            if daemon.terminate(dev.agent_pid, AGENT_MARKER, grace=2.0):
                removed.append(f"agent of {dev.name} (pid {dev.agent_pid})")
        if daemon.terminate(state.daemon_pid, DAEMON_MARKER, grace=20.0, group=True):
            removed.append(f"edgesec daemon (pid {state.daemon_pid})")
        if daemon.terminate(state.forwarder_pid, FORWARD_MARKER, grace=2.0):
            removed.append(f"API forwarder (pid {state.forwarder_pid})")
    removed += [f"namespace {n}" for n in tb.down(prefix)]
    # the test bed's tempfile.mkdtemp(prefix="<prefix>-"): exactly 8 random characters
    workdirs = {
        p
        for p in glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}-*"))
        if re.fullmatch(re.escape(prefix) + r"-[a-z0-9_]{8}", os.path.basename(p))
    }
    if state is not None and state.workdir:
        workdirs.add(state.workdir)
    for path in sorted(workdirs):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"directory {path}")
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"directory {directory}")
    return removed


def _free_port(preferred: int) -> int:
    """``preferred`` if nothing on the host's loopback holds it, else any free port."""
    import socket

    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise LabError("no free port on 127.0.0.1 for the API forwarder")
