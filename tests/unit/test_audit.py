"""Audit pieces: sender credentials, the policy event, redaction, bounds, log formats."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest

from edgesec.events import EventBus
from edgesec.logsetup import JournalFormatter, JsonFormatter, syslog_priority
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.audit import (
    AUDIT_BURST,
    CMSG_CREDS_SPACE,
    Audit,
    Peer,
    unix_credentials,
)

MAC = "02:ab:cd:ef:00:01"


def test_unix_credentials_from_a_real_datagram(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with server, client:
        server.bind(str(tmp_path / "s"))
        server.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        client.sendto(b"PING_SUPERVISOR", str(tmp_path / "s"))
        _data, anc, _flags, _addr = server.recvmsg(4096, CMSG_CREDS_SPACE)
    assert unix_credentials(anc) == (os.getpid(), os.getuid(), os.getgid())
    assert unix_credentials([]) is None


def _audit() -> tuple[Audit, list]:
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    return Audit(bus, clock=lambda: 1764000000.5), events


def test_policy_change_logs_and_publishes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgesec.audit")
    audit, events = _audit()
    peer = Peer("unix", "/tmp/c", 42, 1000, 1000)
    audit.record("ACCEPT_MAC", (MAC, "3"), peer, "OK\n")
    assert caplog.records[0].getMessage() == (
        f"audit: ACCEPT_MAC {MAC} 3 by unix pid=42 uid=1000 gid=1000: OK")
    assert caplog.records[0].audit["peer_pid"] == 42  # type: ignore[attr-defined]
    (event,) = events
    assert proto.event_line(event) == (
        f"POLICY 1764000000.500 unix:pid=42:uid=1000:gid=1000 ACCEPT_MAC {MAC} 3\n")


def test_reads_are_not_audited_and_failures_send_no_event(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgesec.audit")
    audit, events = _audit()
    peer = Peer("udp", ("127.0.0.1", 4000))
    audit.record("GET_ALL", (), peer, "")
    audit.record("DENY_MAC", ("zz",), peer, "FAIL\n")
    assert [r.getMessage() for r in caplog.records] == [
        "audit: DENY_MAC zz by udp 127.0.0.1:4000: FAIL"]
    assert events == []


def test_secrets_and_control_characters_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgesec.audit")
    audit, events = _audit()
    audit.record("ASSIGN_PSK", (MAC, "s3cret-psk"), Peer("unix"), "OK\n")
    audit.record("REGISTER_TICKET", ("me", "cam\x1b[2J", "3"), Peer("unix"), "ticket-pass\n")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "s3cret" not in text and "ticket-pass" not in text and "\x1b" not in text
    assert "unix (no credentials)" in text
    assert all("s3cret" not in str(e.data) for e in events)


def test_audit_lines_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgesec.audit")
    audit, events = _audit()
    for i in range(AUDIT_BURST * 5):
        audit.record("ACCEPT_MAC", (f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", "3"),
                     Peer("unix"), "OK\n")
    assert len(caplog.records) == AUDIT_BURST
    assert len(events) == AUDIT_BURST * 5  # subscribers still see every change


@pytest.mark.parametrize(("level", "prio"), [(logging.DEBUG, 7), (logging.INFO, 6),
                                             (logging.WARNING, 4), (logging.ERROR, 3),
                                             (logging.CRITICAL, 2), (25, 6)])
def test_syslog_priorities(level: int, prio: int) -> None:
    assert syslog_priority(level) == prio


def _record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("edgesec.audit", level, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_journal_and_json_formats() -> None:
    assert JournalFormatter().format(_record("hello", logging.WARNING)) == (
        "<4>edgesec.audit: hello")
    obj = json.loads(JsonFormatter().format(_record("x \"y\"", audit={"command": "DENY_MAC"})))
    assert obj["msg"] == 'x "y"' and obj["audit"] == {"command": "DENY_MAC"}
    assert obj["level"] == "info" and obj["ts"].endswith("+00:00")
    assert JsonFormatter(journal=True).format(_record("z")).startswith('<6>{"ts": ')


def test_under_journal_compares_the_stream(tmp_path: Path) -> None:
    from edgesec.logsetup import under_journal

    path = tmp_path / "stream"
    with open(path, "w") as fh:
        st = os.fstat(fh.fileno())
        assert under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fh.fileno())
        assert not under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"},
                                 fh.fileno())
        assert not under_journal({"JOURNAL_STREAM": "garbage"}, fh.fileno())
        assert not under_journal({}, fh.fileno())


def test_radius_decisions_are_bounded_and_summarised(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of Access-Requests (every MAC new, every one rejected) logs a burst of
    decisions a window and then one line counting the rest."""
    import ipaddress

    from pyrad.packet import AuthPacket

    from edgesec.access.radius import DECISION_BURST, RadiusConfig, RadiusServer
    from edgesec.access.radius_dictionary import pyrad_dictionary
    from edgesec.registry import Admission

    class Refuse:
        def admit(self, mac: str, passphrase: str | None = None) -> Admission:
            return Admission(False, reason="unknown device and no open ticket")

    caplog.set_level(logging.INFO, logger="edgesec")
    now = [0.0]
    srv = RadiusServer(RadiusConfig(secret=b"s", clients=ipaddress.IPv4Network("127.0.0.0/8")),
                       Refuse(), clock=lambda: now[0])
    d = pyrad_dictionary()
    for i in range(DECISION_BURST * 3):
        pkt = AuthPacket(secret=b"s", dict=d)
        mac = f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"
        pkt["User-Name"] = mac.replace(":", "")
        pkt["User-Password"] = pkt.PwCrypt(mac.replace(":", ""))
        pkt["Calling-Station-Id"] = mac.replace(":", "-")
        pkt.add_message_authenticator()
        assert srv.handle(pkt.RequestPacket(), ("127.0.0.1", 4000 + i)) is not None
    rejects = [r for r in caplog.records if r.getMessage().startswith("radius: reject")]
    assert len(rejects) == DECISION_BURST
    assert rejects[0].audit["reason"] == "unknown device and no open ticket"  # type: ignore
    now[0] += 11
    srv._log_reject("02:00:00:00:ff:ff", "x", ("127.0.0.1", 1))
    assert any(r.getMessage() == f"{DECISION_BURST * 2} more RADIUS decisions were not logged"
               for r in caplog.records)
