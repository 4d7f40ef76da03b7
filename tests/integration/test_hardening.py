"""The real daemon under attack by a local user and by its own state (issue #12).

A second daemon on the same state, another user on the control port, plain
loopback UDP, file modes, a corrupt registry DB: each refused or closed, with
a clear message and nothing of the running daemon touched.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from isolation_lab import IsolationLab, NetnsDaemon, wait_for

from daemon import EDGESEC, Daemon, write_config
from edgesec.lab.topology import Topology
from edgesec.store import DeviceRow, Store

A = "11:22:33:44:55:66"
NOBODY = {"user": "nobody", "group": "nogroup", "extra_groups": [], "cwd": "/"}
PY = "/usr/bin/python3"  # the system python: user nobody cannot read the worktree's venv


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_daemon(config: Path) -> subprocess.CompletedProcess[str]:
    """``edgesec run`` expected to refuse: returns at once with its exit code and stderr."""
    return subprocess.run([*EDGESEC, "run", "-c", str(config)], capture_output=True,
                          text=True, timeout=60, cwd=config.parent)


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def start(config: Path) -> Daemon:
        d = Daemon(config)
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.stop()


# -- 4: one daemon per state ----------------------------------------------------------------


def test_second_daemon_on_the_same_state_refuses_and_touches_nothing(tmp_path: Path,
                                                                     daemons) -> None:
    first = daemons(write_config(tmp_path))
    assert first.ctl(f"ACCEPT_MAC {A} 2") == "OK\n"
    sock_inode = os.stat(first.socket_path).st_ino
    # a copy of the config with only the pid file changed
    copy = tmp_path / "copy.ini"
    copy.write_text((tmp_path / "config.ini").read_text().replace('"edgesec.pid"',
                                                                  '"second.pid"'))
    second = run_daemon(copy)
    assert second.returncode == 1, second.stderr
    assert "in use by another edgesec" in second.stderr, second.stderr
    assert "connections.sqlite" in second.stderr and "Traceback" not in second.stderr
    assert first.proc is not None and f"pid {first.proc.pid}" in second.stderr
    # the first still has its socket, its pid file and its devices; no stray pid file
    assert os.stat(first.socket_path).st_ino == sock_inode
    assert first.ctl(f"GET_MAP {A}").startswith(f"a,{A},")
    assert not (tmp_path / "second.pid").exists()
    # the control socket alone is locked too (another DB, same socket)
    other = tmp_path / "other.ini"
    other.write_text(copy.read_text().replace('"connections.sqlite"', '"other.sqlite"')
                     .replace('"crypt.sqlite"', '"other-crypt.sqlite"'))
    third = run_daemon(other)
    assert third.returncode == 1 and "supervisorControlPath" in third.stderr, third.stderr
    assert os.stat(first.socket_path).st_ino == sock_inode
    assert first.ctl("PING_SUPERVISOR") == "PONG\n"


def test_state_lock_is_released_by_kill_9(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    d = Daemon(config).start()
    d.kill9()
    d = Daemon(config).start()  # the kernel dropped the lock with the process
    try:
        assert d.ctl("PING_SUPERVISOR") == "PONG\n"
    finally:
        assert d.stop() == 0


# -- 10, 11: the UDP control port ------------------------------------------------------------

HIJACK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError as exc:
    print("refused", exc.errno)
else:
    print("bound")
"""


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
def test_another_user_cannot_bind_the_control_port(tmp_path: Path, daemons,
                                                   address: str) -> None:
    port = free_udp_port()
    d = daemons(write_config(tmp_path, {"supervisor": {
        "supervisorControlPort": port, "supervisorControlKey": "k3y-for-the-test"}}))
    out = subprocess.run([PY, "-c", HIJACK, address, str(port)], capture_output=True,
                         text=True, timeout=30, **NOBODY)
    assert out.stdout.strip() == "refused 98", out  # EADDRINUSE
    assert d.ctl("PING_SUPERVISOR") == "PONG\n"


def test_a_port_held_by_someone_else_refuses_the_start(tmp_path: Path) -> None:
    port = free_udp_port()
    squatter = subprocess.Popen(
        [PY, "-c", "import socket, sys, time; s = socket.socket(socket.AF_INET, "
         "socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
         f"s.bind(('0.0.0.0', {port})); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, **NOBODY)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == "ready\n"
        config = write_config(tmp_path, {"supervisor": {
            "supervisorControlPort": port, "supervisorControlKey": "k3y-for-the-test"}})
        out = run_daemon(config)
    finally:
        squatter.kill()
        squatter.wait()
    assert out.returncode == 1, out.stderr
    assert "already bound by another process" in out.stderr and str(port) in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "edgesec.sock").exists()


PLAIN_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
for command in sys.argv[2:]:
    s.sendto(command.encode(), ("127.0.0.1", int(sys.argv[1])))
    try:
        print(s.recv(65536).decode().strip() or "empty")
    except (TimeoutError, ConnectionRefusedError):
        print("no reply")
"""


def test_plain_loopback_udp_is_off_without_a_key(tmp_path: Path, daemons) -> None:
    port = free_udp_port()
    d = daemons(write_config(tmp_path, {"supervisor": {"supervisorControlPort": port}}))
    out = subprocess.run([PY, "-c", PLAIN_CLIENT, str(port), f"ACCEPT_MAC {A} 2",
                          f"ADD_NAT {A}", "PUT_CRYPT k dg=="], capture_output=True,
                         text=True, timeout=30, **NOBODY)
    assert out.stdout.split("\n")[:3] == ["no reply"] * 3, out
    assert d.ctl(f"GET_MAP {A}") == "OK\n"  # nothing was stored
    status = d.ctl("STATUS")
    assert "udp=off (no key)" in status, status
    assert d.log().count("UDP control is off") == 1
    # and the opt-in gives the original's plain UDP back, on loopback only
    d.stop()
    config = write_config(tmp_path, {"supervisor": {"supervisorControlPort": port,
                                                    "allowUnauthenticatedUdp": True}})
    daemons(config)
    out = subprocess.run([PY, "-c", PLAIN_CLIENT, str(port), "PING_SUPERVISOR"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "PONG\n", out


# -- 12: file modes ----------------------------------------------------------------------------


def test_state_files_are_private_in_an_open_directory(tmp_path: Path, daemons) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)  # world-writable, as the issue found
    config = write_config(tmp_path, {"system": {
        "connectionDbPath": "state/connections.sqlite", "cryptDbPath": "state/crypt.sqlite"}})
    d = daemons(config)
    assert d.ctl(f"ACCEPT_MAC {A} 2") == "OK\n"
    assert d.ctl("ASSIGN_PSK 11:22:33:44:55:66 secret-passphrase") == "OK\n"
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
    for name in ("connections.sqlite", "connections.sqlite-wal", "connections.sqlite-shm"):
        assert files.get(name) == 0o600, files
    assert all(mode & 0o077 == 0 for mode in files.values()), files
    assert stat.S_IMODE(d.socket_path.stat().st_mode) == 0o660
    warnings = [ln for ln in d.log().splitlines() if "open to other users" in ln]
    assert len(warnings) == 1 and str(state) in warnings[0] and "0777" in warnings[0]


def test_an_existing_open_db_is_tightened(tmp_path: Path, daemons) -> None:
    Store(tmp_path / "connections.sqlite").close()
    (tmp_path / "connections.sqlite").chmod(0o644)
    d = daemons(write_config(tmp_path))
    assert d.ctl(f"ACCEPT_MAC {A} 2") == "OK\n"
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE((tmp_path / f"connections.sqlite{suffix}").stat().st_mode)
        assert mode == 0o600, (suffix, oct(mode))


# -- 14: a corrupt registry DB -----------------------------------------------------------------


def corrupt_index(path: Path) -> None:
    """Store 300 devices, then scramble the cells of the MAC index's root page."""
    store = Store(path)
    with store.transaction():
        for i in range(300):
            store.put_device(DeviceRow(str(i), f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", 0,
                                       1, "", "", False, True, "", 0, ""))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = store.db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'instance_mac'").fetchone()[0]
    size = store.db.execute("PRAGMA page_size").fetchone()[0]
    store.close()
    data = bytearray(path.read_bytes())
    page = data[(root - 1) * size:root * size]
    content = int.from_bytes(page[5:7], "big")  # start of the cell content area
    page[content:] = bytes(reversed(page[content:]))
    data[(root - 1) * size:root * size] = page
    path.write_bytes(bytes(data))


def test_corrupt_index_refuses_to_start(tmp_path: Path) -> None:
    corrupt_index(tmp_path / "connections.sqlite")
    before = (tmp_path / "connections.sqlite").read_bytes()
    out = run_daemon(write_config(tmp_path))
    assert out.returncode == 1, out.stderr
    assert "connections.sqlite" in out.stderr and "quick_check" in out.stderr, out.stderr
    assert "restore it from a backup" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "edgesec.sock").exists() and not (tmp_path / "edgesec.pid").exists()
    assert (tmp_path / "connections.sqlite").read_bytes() == before  # nothing "repaired"


# -- 3: children die with the daemon -----------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_of_the_daemon_takes_dnsmasq_with_it() -> None:
    with Topology() as topo:
        dev = topo.add_device("a", 1)
        lab = IsolationLab(topo)
        try:
            daemon = lab.start()
            pid = wait_for(lab.dnsmasq_pid, 30)
            assert pid and _alive(pid), lab.status()
            daemon.kill9()
            assert wait_for(lambda: not _alive(pid), 30), f"dnsmasq {pid} outlived the daemon"
            # the next daemon's dnsmasq gets the DHCP port and serves leases
            lab.start()
            lab.join(dev)
            status = lab.status()
            assert re.search(r"^dhcp ok dnsmasq running pid \d+ \(restarts 0\)", status,
                             re.M), status
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-3000:])
            lab.stop()


# -- 13: log amplification ---------------------------------------------------------------------

FLOOD_SECRET = "flood-secret"
LOG_BOUND = 64 * 1024  # bytes the whole flood may add to the daemon's log


def _pyrad_request(mac: str, ident: int) -> bytes:
    from pyrad.packet import AuthPacket

    from edgesec.access.radius_dictionary import pyrad_dictionary

    plain = mac.replace(":", "")
    pkt = AuthPacket(id=ident & 0xFF, secret=FLOOD_SECRET.encode(), dict=pyrad_dictionary())
    pkt["User-Name"] = plain
    pkt["User-Password"] = pkt.PwCrypt(plain)
    pkt["Calling-Station-Id"] = mac.replace(":", "-").upper()
    pkt.add_message_authenticator()
    return pkt.RequestPacket()


def _radius_requests(status: str) -> int:
    m = re.search(r"^radius ok .* requests (\d+) accepts (\d+) rejects (\d+)", status, re.M)
    assert m, status
    return int(m.group(1))


def test_radius_flood_on_an_exhausted_pool_keeps_the_log_small(tmp_path: Path,
                                                             daemons) -> None:
    port = free_udp_port()
    d = daemons(write_config(tmp_path, {
        "system": {"execRadius": True, "allowAllConnections": True, "allocateVlans": True},
        "radius": {"port": port, "secret": FLOOD_SECRET, "clientIP": "127.0.0.1"},
        "interfaces": {"vlanPoolPrefix": "10.200.0.0/27", "vlanPoolPrefixLen": 28,
                       "vlanPoolFirstVlan": 100}}))
    flood = [_pyrad_request(f"02:00:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:"
                            f"{i & 0xFF:02x}", i) for i in range(3000)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        for first in flood[:2]:  # the two pool VLANs are taken
            s.sendto(first, ("127.0.0.1", port))
            assert s.recv(4096)[0] == 2  # Access-Accept
        size = d.log_path.stat().st_size
        s.setblocking(False)
        replies = 0
        for i, packet in enumerate(flood[2:]):
            s.sendto(packet, ("127.0.0.1", port))
            if i % 32 == 31:
                while True:
                    try:
                        replies += s.recv(4096)[0] == 3  # Access-Reject
                    except BlockingIOError:
                        break
                time.sleep(0.002)
        deadline = time.monotonic() + 60
        while _radius_requests(d.ctl("STATUS")) < 2 + len(flood[2:]) * 0.9:
            assert time.monotonic() < deadline, d.ctl("STATUS")
            time.sleep(0.2)
    grown = d.log_path.stat().st_size - size
    text = d.log()[size:]
    print(f"RADIUS flood: {len(flood) - 2} requests on a full pool, log +{grown} bytes")
    assert grown < LOG_BOUND, (grown, text[-3000:])
    assert "pool is exhausted" in text and "Traceback" not in text, text[-3000:]
    assert d.ctl("PING_SUPERVISOR") == "PONG\n"


def test_commands_on_a_full_disk_keep_the_log_small(tmp_path: Path) -> None:
    """The registry on a 1 MiB tmpfs (a private mount namespace), filled up."""
    state = tmp_path / "state"
    state.mkdir()
    config = write_config(tmp_path, {"system": {"connectionDbPath": "state/connections.sqlite",
                                                "allowAllConnections": True}})
    log_path = tmp_path / "edgesec.log"
    inner = (f"mount -t tmpfs -o size=1m tmpfs {state} && exec {' '.join(EDGESEC)} run "
             f"-c {config} -ddd")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 inner], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    d = Daemon(config)
    d.proc = proc  # stopped by its pid below
    try:
        deadline = time.monotonic() + 30
        while not d.socket_path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        label = "x" * 250
        i, full = 0, False
        while not full:  # fill the disk with devices
            i += 1
            assert i < 20_000, "the 1 MiB file system never filled up"
            full = d.ctl(f"ACCEPT_MAC 02:00:00:00:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x} 1") \
                != "OK\n" or (d.ctl(f"SET_IP add 02:00:00:00:{i >> 8 & 0xFF:02x}:"
                                    f"{i & 0xFF:02x} 10.0.1.{i % 250 + 2}") != "OK\n")
            if not full:
                d.ctl(f"ASSIGN_PSK 02:00:00:00:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x} "
                      f"{label[:63]}")
        size = log_path.stat().st_size
        for j in range(2000):  # every one of these fails: disk full
            assert d.ctl(f"ACCEPT_MAC 02:00:01:00:{j >> 8 & 0xFF:02x}:{j & 0xFF:02x} 2") \
                == "FAIL\n"
        text = log_path.read_text(errors="replace")[size:]
        print(f"disk full: 2000 failed commands, log +{log_path.stat().st_size - size} bytes")
        assert log_path.stat().st_size - size < LOG_BOUND, text[-3000:]
        assert "database or disk is full" in text and "Traceback" not in text, text[-3000:]
        assert d.ctl("PING_SUPERVISOR") == "PONG\n"
    finally:
        d.stop()


def test_crash_looping_dnsmasq_is_not_reported_ok(tmp_path: Path) -> None:
    """dnsmasq that cannot open its lease file exits at once, again and again."""
    with Topology() as topo:
        config = write_config(tmp_path, {
            "system": {"execDhcp": True},
            "dhcp": {"dhcpLeasefilePath": "/proc/edgesec-test.leases",
                     "dhcpConfigPath": "dnsmasq.conf", "dhcpScriptPath": "dhcp-hook.sh"}})
        with NetnsDaemon(config, netns=topo.gateway) as d:
            line = wait_for(lambda: next((ln for ln in d.ctl("STATUS").splitlines()
                                          if ln.startswith("dhcp ") and "crash-looping" in ln),
                                         ""), 60)
            assert line.startswith("dhcp failed "), d.ctl("STATUS")
            assert "last exit 3" in line, line  # dnsmasq's "cannot open lease file"
            assert d.ctl("PING_SUPERVISOR") == "PONG\n"
