"""The audit trail of the real daemon: who changed which policy, seen in its log and events.

A change sent over the UNIX socket is logged with the command, the MAC and the
sender's pid/uid (SCM_CREDENTIALS); over UDP with the sender's address.
Subscribers get a timestamped ``POLICY`` event.  ``--log-format json`` puts
the same facts in fields; under systemd (``JOURNAL_STREAM``) lines carry a
syslog priority and no time.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon import Daemon, write_config
from edgesec.supervisor.client import SupervisorClient

pytestmark = pytest.mark.integration

MAC = "02:ab:cd:00:00:01"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def log_lines(d: Daemon, needle: str) -> list[str]:
    return [ln for ln in d.log().splitlines() if needle in ln]


@pytest.fixture
def daemon(tmp_path: Path):
    started: list[Daemon] = []

    def start(**kw: object) -> Daemon:
        port = free_udp_port()
        # plain UDP is off without a key unless opted in (the original's clients)
        config = write_config(tmp_path, {"supervisor": {"supervisorControlPort": port,
                                                        "allowUnauthenticatedUdp": True}})
        d = Daemon(config, **kw)  # type: ignore[arg-type]
        d.udp_port = port  # type: ignore[attr-defined]
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.stop()


def test_unix_change_is_logged_with_command_mac_and_peer(daemon) -> None:
    d = daemon(verbosity=0)  # the audit trail shows even without -ddd
    assert d.ctl(f"ACCEPT_MAC {MAC} 3") == "OK\n"
    lines = wait_for(lambda: log_lines(d, f"audit: ACCEPT_MAC {MAC} 3"))
    assert f"by unix pid={os.getpid()} uid={os.getuid()} gid={os.getgid()}: OK" in lines[0]
    # a PSK is never written to the log
    assert d.ctl(f"ASSIGN_PSK {MAC} hunter2-very-secret") == "OK\n"
    lines = wait_for(lambda: log_lines(d, "audit: ASSIGN_PSK"))
    assert f"ASSIGN_PSK {MAC} <redacted> by unix pid={os.getpid()}" in lines[0]
    assert "hunter2" not in d.log()
    # a refused change is recorded too, without an event
    assert d.ctl("DENY_MAC not-a-mac") == "FAIL\n"
    wait_for(lambda: log_lines(d, "audit: DENY_MAC not-a-mac by unix"))
    # a read is not a policy change
    assert MAC in d.ctl(f"GET_MAP {MAC}")
    assert not log_lines(d, "audit: GET_MAP")


def test_lease_from_the_hook_is_logged_with_its_pid(daemon) -> None:
    import subprocess
    import sys

    d = daemon()
    assert d.ctl(f"ACCEPT_MAC {MAC} 3") == "OK\n"
    hook = subprocess.Popen([sys.executable, "-m", "edgesec.dhcp.hook", "--socket",
                             str(d.socket_path), "add", MAC, "10.0.3.20"],
                            env={**os.environ, "DNSMASQ_INTERFACE": "br3"})
    assert hook.wait(60) == 0
    lines = wait_for(lambda: log_lines(d, f"audit: SET_IP add {MAC} 10.0.3.20 br3"))
    assert f"by unix pid={hook.pid} uid={os.getuid()}" in lines[0]


def test_udp_change_names_the_address_and_reaches_subscribers(daemon) -> None:
    d = daemon()
    with SupervisorClient(unix_path=d.socket_path, timeout=10) as watcher:
        assert watcher.request("SUBSCRIBE_EVENTS") == "OK\n"
        with SupervisorClient(udp=("127.0.0.1", d.udp_port), timeout=5) as udp:
            assert udp.request(f"ADD_NAT {MAC}") in ("OK\n", "FAIL\n")
            assert udp.request(f"DENY_MAC {MAC}") == "OK\n"
            port = udp.sock.getsockname()[1]
        event = ""
        while not event.startswith("POLICY"):
            event = watcher.sock.recv(65536).decode()
    lines = wait_for(lambda: log_lines(d, f"audit: DENY_MAC {MAC} by udp 127.0.0.1:{port}: OK"))
    assert lines
    m = re.fullmatch(r"POLICY (\d+\.\d{3}) (\S+) (\S+) (.*)\n", event)
    assert m, event
    assert abs(float(m.group(1)) - time.time()) < 120
    assert m.group(2) == f"udp:127.0.0.1:{port}"
    assert m.group(3) in ("ADD_NAT", "DENY_MAC") and m.group(4) == MAC


def test_unix_policy_event_carries_pid_and_uid(daemon) -> None:
    d = daemon()
    with SupervisorClient(unix_path=d.socket_path, timeout=10) as watcher:
        assert watcher.request("SUBSCRIBE_EVENTS") == "OK\n"
        assert d.ctl(f"ACCEPT_MAC {MAC} 2") == "OK\n"
        events = []
        while not any(e.startswith("POLICY") for e in events):
            events.append(watcher.sock.recv(65536).decode())
    policy = next(e for e in events if e.startswith("POLICY"))
    assert re.fullmatch(rf"POLICY \d+\.\d{{3}} unix:pid={os.getpid()}:uid={os.getuid()}:"
                        rf"gid={os.getgid()} ACCEPT_MAC {MAC} 2\n", policy), policy


def test_json_log_format_has_audit_fields(daemon) -> None:
    d = daemon(args=("--log-format", "json"))
    assert d.ctl(f"ACCEPT_MAC {MAC} 4") == "OK\n"

    def audit_record() -> dict | None:
        for line in d.log().splitlines():
            if line.startswith("{"):
                obj = json.loads(line)
                if obj.get("audit", {}).get("command") == "ACCEPT_MAC":
                    return obj
        return None

    obj = wait_for(audit_record)
    assert obj["level"] == "info" and obj["logger"] == "edgesec.audit"
    assert obj["audit"]["args"] == [MAC, "4"] and obj["audit"]["result"] == "OK"
    assert obj["audit"]["peer_pid"] == os.getpid() and obj["audit"]["peer_uid"] == os.getuid()
    assert obj["ts"].endswith("+00:00")
    # every line the daemon wrote is one JSON object
    for line in d.log().splitlines():
        json.loads(line)


def test_journal_stream_lines_have_priority_and_no_time(daemon, tmp_path: Path) -> None:
    # systemd names the stream it gave as stderr; here that stream is the log file
    log = tmp_path / "edgesec.log"
    log.touch()
    st = log.stat()
    d = daemon(env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert d.ctl(f"ACCEPT_MAC {MAC} 4") == "OK\n"
    lines = wait_for(lambda: log_lines(d, "audit: ACCEPT_MAC"))
    assert lines[0].startswith("<6>edgesec.audit: audit: ACCEPT_MAC"), lines[0]
    for line in d.log().splitlines():  # every line: a priority, a logger name, no time
        assert re.match(r"<[0-7]>edgesec[.\w]*: ", line), line


def test_journal_stream_of_another_stream_is_ignored(daemon) -> None:
    """A child whose stderr is not the journal keeps its timestamps."""
    d = daemon(env={"JOURNAL_STREAM": "8:12345"})
    assert d.ctl(f"ACCEPT_MAC {MAC} 4") == "OK\n"
    lines = wait_for(lambda: log_lines(d, "audit: ACCEPT_MAC"))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO edgesec.audit: ", lines[0])


def test_a_flood_of_changes_cannot_flood_the_log(daemon) -> None:
    """A client looping on policy changes gets AUDIT_BURST lines a window, then one
    line counting the rest when the next window opens; every change still lands."""
    from edgesec.supervisor.audit import AUDIT_BURST, AUDIT_WINDOW_S

    d = daemon()
    total = AUDIT_BURST * 3
    with SupervisorClient(unix_path=d.socket_path, timeout=10) as client:
        start = time.monotonic()
        for i in range(total):
            assert client.request(f"ACCEPT_MAC 02:ab:cd:00:{i // 256:02x}:{i % 256:02x} 3") \
                == "OK\n"
        elapsed = time.monotonic() - start
        time.sleep(max(0.0, AUDIT_WINDOW_S + 1 - elapsed))
        assert client.request(f"DENY_MAC {MAC}") == "OK\n"
    wait_for(lambda: log_lines(d, f"audit: DENY_MAC {MAC}"))  # written after the summary
    summaries = log_lines(d, "more audit lines were not logged")
    assert summaries
    logged = len(log_lines(d, "audit: ACCEPT_MAC"))
    suppressed = sum(int(ln.split("edgesec.audit: ")[1].split()[0]) for ln in summaries)
    assert logged + suppressed == total
    # at most one burst per window that the flood spanned
    assert logged <= AUDIT_BURST * (1 + int(elapsed // AUDIT_WINDOW_S) + 1)
    assert len(d.ctl("GET_ALL").splitlines()) >= total
