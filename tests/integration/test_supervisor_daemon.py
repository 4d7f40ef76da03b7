"""The real ``edgesec run`` daemon as a subprocess: sockets, events, durability, safety.

Commands go over the UNIX socket with Debian's ``nc -uU`` and ``socat`` exactly
as the original's documentation shows, and over UDP; the daemon is killed
with SIGKILL in the middle of 1,000 ACCEPT_MAC commands and every command
that was answered OK must be there after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from daemon import EDGESEC, Daemon, interrupt, interruptible, write_config
from edgesec.config import parse_settings
from edgesec.events import EventBus
from edgesec.registry import Registry
from edgesec.store import Store
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.client import ClientError, SupervisorClient
from edgesec.supervisor.commands import CommandTable, NetworkCommands
from edgesec.supervisor.server import SupervisorServer

A, B, C = "11:22:33:44:55:66", "aa:bb:cc:dd:ee:ff", "00:01:02:03:04:05"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daemons():
    """Start daemons through this; every one is stopped by pid afterwards."""
    started: list[Daemon] = []

    def start(config: Path, **kw: object) -> Daemon:
        d = Daemon(config, **kw)  # type: ignore[arg-type]
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.stop()


def subscriber(path: Path, timeout: float = 5.0) -> SupervisorClient:
    client = SupervisorClient(unix_path=path, timeout=timeout)
    assert client.request("SUBSCRIBE_EVENTS") == "OK\n"
    return client


def recv_line(client: SupervisorClient) -> str:
    """The next event other than POLICY (the audit extension; tests of it are in
    test_audit_daemon.py), as a client written for the original skips unknown names."""
    while True:
        line = client.sock.recv(65536).decode()
        if not line.startswith("POLICY "):
            return line


# -- transports ------------------------------------------------------------------------


def test_unix_socket_with_nc_and_socat(tmp_path: Path, daemons) -> None:
    d = daemons(write_config(tmp_path))
    sock = d.socket_path

    def nc(command: str) -> str:
        # the original's documentation: echo -n "GET_ALL" | nc -uU SOCKET -w2 -W1
        out = subprocess.run(f'echo -n "{command}" | nc -uU {sock} -w2 -W1', shell=True,
                             capture_output=True, timeout=20)
        return out.stdout.decode()

    assert nc("PING_SUPERVISOR") == "PONG\n"
    assert nc(f"ACCEPT_MAC {A} 2") == "OK\n"
    assert nc("GET_ALL").startswith(f"a,{A},,,2,0,,")
    assert nc("NO_SUCH_COMMAND") == "FAIL\n"  # the original stayed silent

    client = tmp_path / "socat-client.sock"
    out = subprocess.run(
        ["socat", "-t1", "-", f"UNIX-SENDTO:{sock},bind={client}"],
        input=f"GET_MAP {A}".encode(), capture_output=True, timeout=20)
    client.unlink(missing_ok=True)
    assert out.stdout.decode() == nc(f"GET_MAP {A}")
    assert out.stdout.decode().split(",")[1] == A


def test_udp_on_loopback_and_cli(tmp_path: Path, daemons) -> None:
    port = free_udp_port()
    config = write_config(tmp_path, {"supervisor": {"supervisorControlPort": port,
                                                    "allowUnauthenticatedUdp": True}})
    d = daemons(config)
    with SupervisorClient(udp=("127.0.0.1", port), timeout=5) as udp:
        assert udp.request("PING_SUPERVISOR") == "PONG\n"
        assert udp.request(f"DENY_MAC {B}") == "OK\n"
    assert d.ctl(f"GET_MAP {B}").startswith(f"d,{B},")
    # edgesec ctl over both transports; exit status 1 on FAIL
    ok = subprocess.run([*EDGESEC, "ctl", "--udp", f"127.0.0.1:{port}", "GET_MAP", B],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith(f"d,{B},")
    fail = subprocess.run([*EDGESEC, "ctl", "--socket", str(d.socket_path), "ACCEPT_MAC", B,
                           "99"], capture_output=True, text=True, timeout=60)
    assert fail.returncode == 1 and fail.stdout == "FAIL\n"


def test_udp_is_not_bound_beyond_loopback_by_default(tmp_path: Path, daemons) -> None:
    port = free_udp_port()
    d = daemons(write_config(tmp_path, {"supervisor": {"supervisorControlPort": port,
                                                       "allowUnauthenticatedUdp": True}}))
    assert d.proc is not None
    out = subprocess.run(["ss", "-H", "-u", "-l", "-n", "-p"], capture_output=True, text=True,
                         timeout=20).stdout
    mine = [line.split() for line in out.splitlines() if f"pid={d.proc.pid}," in line]
    local = [fields[3] for fields in mine]
    assert f"127.0.0.1:{port}" in local, out
    assert all(addr.startswith("127.") for addr in local), local
    # and the kernel table agrees: the port is bound only to 127.0.0.1
    rows = [ln.split() for ln in Path("/proc/net/udp").read_text().splitlines()[1:]]
    bound = {r[1] for r in rows if int(r[1].split(":")[1], 16) == port}
    assert bound == {f"0100007F:{port:04X}"}


def test_non_loopback_udp_without_key_refuses_to_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"supervisor": {"supervisorControlPort": free_udp_port(),
                                                    "supervisorControlAddress": "0.0.0.0"}})
    out = subprocess.run([*EDGESEC, "run", "-c", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2  # refused by the shared validation, as `config check` does
    assert "supervisorControlKey" in out.stderr and "0.0.0.0" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "edgesec.sock").exists()


def test_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"supervisor": {"supervisorControlPort": free_udp_port(),
                                                    "supervisorControlAddress": "0.0.0.0",
                                                    "supervisorControlKeyFile": "absent.key"}})
    out = subprocess.run([*EDGESEC, "run", "-c", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "supervisorControlKeyFile" in out.stderr and "absent.key" in out.stderr


def test_non_loopback_udp_with_key_answers_only_authenticated(tmp_path: Path, daemons) -> None:
    port = free_udp_port()
    key_file = tmp_path / "control.key"
    key_file.write_text("s3cret-shared-key\n")
    key_file.chmod(0o600)
    config = write_config(tmp_path, {"supervisor": {
        "supervisorControlPort": port, "supervisorControlAddress": "0.0.0.0",
        "supervisorControlKeyFile": "control.key"}})
    d = daemons(config)
    target = ("127.0.0.1", port)
    with SupervisorClient(udp=target, timeout=1.5) as plain, pytest.raises(ClientError):
        plain.request("PING_SUPERVISOR")
    with SupervisorClient(udp=target, key=b"wrong", timeout=1.5) as wrong, \
            pytest.raises(ClientError):
        wrong.request("PING_SUPERVISOR")
    with SupervisorClient(udp=target, key=b"s3cret-shared-key", timeout=5) as good:
        assert good.request("PING_SUPERVISOR") == "PONG\n"
        assert good.request(f"ACCEPT_MAC {C} 3") == "OK\n"
    # a captured request replayed by someone else gets no answer and changes nothing
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.settimeout(1.5)
        data, _ = proto.sign_request(b"s3cret-shared-key", f"DENY_MAC {C}")
        raw.sendto(data, target)
        assert raw.recv(4096).startswith(b"EDGESEC1 ")
        assert d.ctl(f"ACCEPT_MAC {C} 3") == "OK\n"
        raw.sendto(data, target)
        with pytest.raises(TimeoutError):
            raw.recv(4096)
    assert d.ctl(f"GET_MAP {C}").startswith(f"a,{C},")
    # the CLI signs with the key from the config
    out = subprocess.run([*EDGESEC, "ctl", "-c", str(config), "--udp", f"127.0.0.1:{port}",
                          "PING_SUPERVISOR"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "PONG\n"


# -- files, signals, status ---------------------------------------------------------------


def test_socket_mode_sigterm_and_pid_file(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path)).start()
    try:
        mode = stat.S_IMODE(os.stat(d.socket_path).st_mode)
        assert stat.S_ISSOCK(os.stat(d.socket_path).st_mode) and mode == 0o660
        pid_file = tmp_path / "edgesec.pid"
        assert d.proc is not None and pid_file.read_text().strip() == str(d.proc.pid)
        # a second daemon on the same config refuses (pid file lock)
        second = subprocess.run([*EDGESEC, "run", "-c", str(d.config)], capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 1 and "edgesec.pid" in second.stderr
        assert d.ctl("PING_SUPERVISOR") == "PONG\n"
        d.proc.send_signal(signal.SIGHUP)  # reload, not stop
        deadline = time.monotonic() + 20
        while "reloaded" not in d.log():
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        assert d.proc.poll() is None and d.ctl("PING_SUPERVISOR") == "PONG\n"
    finally:
        code = d.stop()
    assert code == 0
    assert not pid_file.exists() and not d.socket_path.exists()


def test_failing_optional_service_keeps_control_api_up(tmp_path: Path, daemons) -> None:
    # requireServices = none: DHCP is not required (by default it would be: no start)
    config = write_config(tmp_path, {"system": {"execDhcp": True, "requireServices": "none"},
                                     "dhcp": {"dhcpBinPath": "/nonexistent/dnsmasq"}})
    d = daemons(config)
    assert d.ctl("PING_SUPERVISOR") == "PONG\n"
    status = d.ctl("STATUS").splitlines()
    assert any(line.startswith("supervisor ok") for line in status), status
    assert any(line.startswith("dhcp failed") for line in status), status
    assert d.ctl(f"ACCEPT_MAC {A} 1") == "OK\n"


# -- events -----------------------------------------------------------------------------------


def test_two_subscribers_and_one_that_goes_away(tmp_path: Path, daemons) -> None:
    d = daemons(write_config(tmp_path))
    first, second = subscriber(d.socket_path), subscriber(d.socket_path)
    try:
        assert d.ctl(f"ACCEPT_MAC {A} 1") == "OK\n"
        assert d.ctl(f"SET_IP add {A} 10.0.1.20") == "OK\n"
        expected = f"IP {A} 10.0.1.20 1 1\n"
        assert recv_line(first) == expected and recv_line(second) == expected
        assert d.ctl(f"ADD_BRIDGE {A} {B}") == "OK\n"
        bridge = f"BRIDGE_ADDED {A} {B} manual\n"
        assert recv_line(first) == bridge and recv_line(second) == bridge
        assert "subscribers=2" in d.ctl("STATUS")

        second.close()  # goes away without unsubscribing
        assert d.ctl(f"SET_IP old {A} 10.0.1.21") == "OK\n"
        assert recv_line(first) == f"IP {A} 10.0.1.21 2 0\n"
        assert "subscribers=1" in d.ctl("STATUS")
        assert d.ctl(f"REMOVE_BRIDGE {A} {B}") == "OK\n"
        assert recv_line(first) == f"BRIDGE_REMOVED {A} {B} manual\n"
    finally:
        first.close()
        second.close()


def test_ctl_watch_prints_events(tmp_path: Path, daemons) -> None:
    d = daemons(write_config(tmp_path))
    watch = subprocess.Popen([*EDGESEC, "ctl", "--socket", str(d.socket_path), "watch"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=interruptible)
    try:
        deadline = time.monotonic() + 30
        while "subscribers=1" not in d.ctl("STATUS"):
            assert time.monotonic() < deadline and watch.poll() is None, watch.stderr
            time.sleep(0.1)
        assert d.ctl(f"SET_IP add {A} 10.0.1.30") == "OK\n"
        assert watch.stdout is not None
        assert watch.stdout.readline() == f"IP {A} 10.0.1.30 1 1\n"
    finally:
        code = interrupt(watch)
    assert code == 0


def test_ap_events_reach_every_subscriber(tmp_path: Path) -> None:
    """AP events come from hostapd; with no WiFi here the registry is driven directly.

    The server, sockets and subscribers are real; only the hostapd station
    event is replaced by the call it results in (``Registry.set_status``).
    """
    settings = parse_settings("[system]\ndefaultOpenVlanId = 1\n[interfaces]\n"
                              'if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"\n')
    store = Store(tmp_path / "db.sqlite")
    bus = EventBus()
    registry = Registry(settings, store, bus)
    table = CommandTable()
    NetworkCommands(registry).install(table)
    path = tmp_path / "sup.sock"
    server = SupervisorServer(table, bus, path)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    subs: list[SupervisorClient] = []
    try:
        subs = [subscriber(path), subscriber(path)]
        registry.accept_mac(A, 1)
        loop.call_soon_threadsafe(registry.set_status, A, 1)
        assert [recv_line(s) for s in subs] == [f"AP {A} 1\n"] * 2
        loop.call_soon_threadsafe(registry.set_status, B, 2)  # unknown MAC: event only
        assert [recv_line(s) for s in subs] == [f"AP {B} 2\n"] * 2
        subs[0].close()
        loop.call_soon_threadsafe(registry.set_status, A, 2)
        assert recv_line(subs[1]) == f"AP {A} 2\n"
        assert len(server.subscribers) == 1
    finally:
        for s in subs:
            s.close()
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        store.close()


# -- durability -------------------------------------------------------------------------------


def _mac(i: int) -> str:
    return f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}"


def test_kill_9_during_1000_accept_mac_loses_no_acknowledged_command(tmp_path: Path,
                                                                     daemons) -> None:
    config = write_config(tmp_path)
    d = daemons(config)
    acked: dict[str, str] = {}
    lock = threading.Lock()
    workers = 4

    def worker(index: int) -> None:
        with SupervisorClient(unix_path=d.socket_path, timeout=1.0) as client:
            for i in range(index, 1000, workers):
                mac, vlan = _mac(i), str(1 + i % 5)
                try:
                    reply = client.request(f"ACCEPT_MAC {mac} {vlan}")
                except ClientError:
                    return  # the daemon is gone
                if reply == "OK\n":
                    with lock:
                        acked[mac] = vlan

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 400 and time.monotonic() < deadline:
        time.sleep(0.005)
    d.kill9()
    for t in threads:
        t.join(30)
    assert 400 <= len(acked) < 1000, "the kill did not land in the middle of the run"

    again = daemons(config)
    rows = {line.split(",")[1]: line.split(",") for line in again.ctl("GET_ALL").splitlines()}
    missing = [mac for mac in acked if mac not in rows]
    assert missing == []
    assert all(rows[mac][0] == "a" and rows[mac][4] == vlan for mac, vlan in acked.items())
    # at most the in-flight commands (one per worker) were applied without an answer
    assert len(rows) - len(acked) <= workers


def test_restart_restores_devices_bridges_and_tickets(tmp_path: Path, daemons) -> None:
    config = write_config(tmp_path)
    d = daemons(config)
    for command in [f"ACCEPT_MAC {A} 2", f"SET_IP add {A} 10.0.2.10", f"SET_IP add {A} 10.0.2.11",
                    f"ADD_NAT {A}", f"ASSIGN_PSK {A} passphrase-of-a", f"DENY_MAC {B}",
                    f"ACCEPT_MAC {C} 3", f"SET_IP add {C} 10.0.3.5", f"ADD_BRIDGE {A} {B}",
                    "ADD_BRIDGE 10.0.2.10 10.0.3.5"]:
        assert d.ctl(command) == "OK\n", command
    ticket = d.ctl(f"REGISTER_TICKET {A} visitor 4").strip()
    assert re.fullmatch(r"\d{16}", ticket)
    devices, bridges = d.ctl("GET_ALL"), d.ctl("GET_BRIDGES")
    assert len(bridges.splitlines()) == 2

    d.kill9()  # no clean shutdown: only what was committed counts
    d2 = daemons(config)
    assert d2.ctl("GET_ALL") == devices
    assert d2.ctl("GET_BRIDGES") == bridges
    assert d2.ctl(f"GET_MAP {A}").split(",")[2:4] == ["10.0.2.10", "10.0.2.11"]
    # IP-based bridge commands work on restored addresses
    assert d2.ctl("REMOVE_BRIDGE 10.0.2.10 10.0.3.5") == "OK\n"
    assert d2.ctl("GET_BRIDGES") == f"{A},{B}\n"
    assert d2.stop() == 0

    # the ticket survived both restarts and still admits a new device once
    settings = parse_settings(config.read_text(), str(config), config.parent)
    store = Store(settings.system.connection_db_path)
    try:
        registry = Registry(settings, store)
        assert [t.passphrase for t in registry.tickets()] == [ticket]
        admission = registry.admit("02:11:22:33:44:55", ticket)
        assert admission.accept and admission.vlan == 4 and admission.label == "visitor"
    finally:
        store.close()
    d3 = daemons(config)
    line = d3.ctl("GET_MAP 02:11:22:33:44:55").split(",")
    assert line[0] == "a" and line[4] == "4" and line[6] == "visitor"


def test_oversized_and_garbage_datagrams_do_not_stop_the_daemon(tmp_path: Path,
                                                                daemons) -> None:
    d = daemons(write_config(tmp_path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("")
        s.settimeout(5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        for data in (b"", b"\xff\xfe", b"GET_ALL\0", b"x" * 65536, b" " * 10):
            s.sendto(data, str(d.socket_path))
            assert s.recv(65536) == b"FAIL\n", data[:20]
        for _ in range(200):  # a flood: answered, but logged only a few times
            s.sendto(b"\xff", str(d.socket_path))
            assert s.recv(64) == b"FAIL\n"
    assert d.ctl("PING_SUPERVISOR") == "PONG\n"
    assert "malformed=205" in d.ctl("STATUS")
    logged = [ln for ln in d.log().splitlines() if "malformed command" in ln]
    assert 1 <= len(logged) <= 10
    assert d.proc is not None and d.proc.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.kill(d.proc.pid, signal.SIGTERM)
    assert d.proc.wait(20) == 0
