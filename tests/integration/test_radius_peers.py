"""edgesec's RADIUS server against real peers (FreeRADIUS ``radclient``, pyrad's client)
answering from the real registry over a temporary SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrad.client import Client, Timeout
from pyrad.packet import AccessAccept, AccessReject, AuthPacket

from edgesec.access.radius import RadiusService, build_radius_service
from edgesec.access.radius_dictionary import pyrad_dictionary
from edgesec.config import (
    ApSettings,
    InterfacesSettings,
    RadiusSettings,
    Settings,
    Subnet,
    SystemSettings,
)
from edgesec.registry import Registry
from edgesec.store import Store

pytestmark = pytest.mark.integration

SECRET = "edgesec-test-secret"
AP_PSK = "global-ap-passphrase"
D = pyrad_dictionary()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(port: int) -> Settings:
    subnets = tuple(
        Subnet(v, ipaddress.IPv4Address(f"10.9.{v}.1"), ipaddress.IPv4Address(f"10.9.{v}.255"),
               ipaddress.IPv4Network(f"10.9.{v}.0/24"), f"br{v}") for v in range(1, 11))
    return Settings(
        system=SystemSettings(allow_all_connections=False, default_open_vlan_id=1),
        ap=ApSettings(wpa_passphrase=AP_PSK),
        radius=RadiusSettings(port=port, client_ip="127.0.0.1", client_mask=32,
                              server_ip="127.0.0.1", secret=SECRET),
        interfaces=InterfacesSettings(subnets=subnets),
    )


class ServerThread:
    """Runs a RADIUS service on its own asyncio loop in a thread."""

    def __init__(self, service: RadiusService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.service.start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.service.stop())
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Registry, int, ServerThread]]:
    port = _free_port()
    settings = make_settings(port)
    store = Store(tmp_path / "registry.sqlite")
    registry = Registry(settings, store)
    with ServerThread(build_radius_service(settings, registry)) as srv:
        yield registry, port, srv
    store.close()


def radclient(port: int, mac: str, *, password: str | None = None, secret: str = SECRET,
              with_ma: bool = True) -> subprocess.CompletedProcess[str]:
    """Send hostapd's MAC-ACL Access-Request with FreeRADIUS's radclient."""
    plain = mac.replace(":", "")
    lines = [f'User-Name = "{plain}"', f'User-Password = "{password or plain}"',
             f'Calling-Station-Id = "{mac.replace(":", "-").upper()}"',
             'NAS-IP-Address = 127.0.0.1', 'NAS-Port-Type = Wireless-802.11',
             'Called-Station-Id = "02-00-00-00-00-01:edgesec"']
    if with_ma:
        lines.append("Message-Authenticator = 0x00")
    return subprocess.run(
        ["radclient", "-x", "-r", "1", "-t", "1", f"127.0.0.1:{port}", "auth", secret],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=20)


def pyrad_request(mac: str, secret: bytes = SECRET.encode(), password: str | None = None
                  ) -> AuthPacket:
    plain = mac.replace(":", "")
    pkt = AuthPacket(secret=secret, dict=D)
    pkt["User-Name"] = plain
    pkt["User-Password"] = pkt.PwCrypt(password or plain)
    pkt["Calling-Station-Id"] = mac.replace(":", "-").upper()
    pkt["NAS-Port-Type"] = "Wireless-802.11"
    pkt.add_message_authenticator()
    return pkt


def pyrad_send(port: int, pkt: AuthPacket, bind: str | None = None) -> AuthPacket:
    client = Client(server="127.0.0.1", authport=port, secret=pkt.secret, dict=D,
                    retries=1, timeout=1, enforce_ma=True)
    if bind:
        client.bind((bind, 0))
    return client.SendPacket(pkt)


A, B, C = "02:11:22:33:44:01", "02:11:22:33:44:02", "02:11:22:33:44:03"


def test_radclient_accept_vlan_and_tunnel_password(env) -> None:
    registry, port, _ = env
    registry.accept_mac(A, 7)
    registry.assign_psk(A, "device-A-passphrase")
    out = radclient(port, A)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Received Access-Accept" in out.stdout
    assert "Tunnel-Private-Group-Id:0 = \"7\"" in out.stdout
    assert "Tunnel-Type:0 = VLAN" in out.stdout
    assert "Tunnel-Medium-Type:0 = IEEE-802" in out.stdout
    assert 'Tunnel-Password:0 = "device-A-passphrase"' in out.stdout
    assert registry.get(A).join_ts > 0


def test_radclient_accept_without_own_psk_gets_ap_passphrase(env) -> None:
    registry, port, _ = env
    registry.accept_mac(B, 3)
    out = radclient(port, B)
    assert f'Tunnel-Password:0 = "{AP_PSK}"' in out.stdout, out.stdout


def test_radclient_denied_and_unknown_rejected(env) -> None:
    registry, port, _ = env
    registry.accept_mac(A, 2)
    registry.deny_mac(A)
    for mac in (A, C):
        out = radclient(port, mac)
        assert "Received Access-Reject" in out.stdout, out.stdout + out.stderr
        assert "Tunnel-Password" not in out.stdout


def test_radclient_no_answer_without_ma_or_with_wrong_secret(env) -> None:
    registry, port, srv = env
    registry.accept_mac(A, 2)
    out = radclient(port, A, with_ma=False)
    assert "No reply" in out.stdout + out.stderr and "Received" not in out.stdout
    out = radclient(port, A, secret="not-the-secret")
    assert "No reply" in out.stdout + out.stderr and "Received" not in out.stdout
    c = srv.service.protocol.counters
    assert c.missing_authenticator >= 1 and c.bad_authenticator >= 1 and c.accepts == 0


def test_pyrad_accept_and_tunnel_password(env) -> None:
    registry, port, _ = env
    registry.accept_mac(B, 4)
    registry.assign_psk(B, "pyrad-device-passphrase-0123456789")
    pkt = pyrad_request(B)
    rep = pyrad_send(port, pkt)
    assert rep.code == AccessAccept
    rep.request_authenticator = pkt.authenticator
    assert rep["Tunnel-Private-Group-Id"] == ["4"]
    assert rep["Tunnel-Password"] == ["pyrad-device-passphrase-0123456789"]


def test_pyrad_wrong_ma_and_wrong_secret_no_answer(env) -> None:
    registry, port, _ = env
    registry.accept_mac(B, 4)
    with pytest.raises(Timeout):
        pyrad_send(port, pyrad_request(B, secret=b"wrong-secret"))
    pkt = pyrad_request(B)
    raw = bytearray(pkt.RequestPacket())
    raw[-1] ^= 0x55  # corrupt the signed attributes: Message-Authenticator no longer matches
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(bytes(raw), ("127.0.0.1", port))
        with pytest.raises(TimeoutError):
            s.recv(4096)


def test_client_outside_client_network_no_answer(env) -> None:
    registry, port, srv = env
    registry.accept_mac(B, 4)
    # 127.0.0.2 is on lo but outside clientIP/clientMask = 127.0.0.1/32
    with pytest.raises(Timeout):
        pyrad_send(port, pyrad_request(B), bind="127.0.0.2")
    assert srv.service.protocol.counters.unknown_client >= 1
    assert pyrad_send(port, pyrad_request(B), bind="127.0.0.1").code == AccessAccept


def test_ticket_works_once_then_not(env) -> None:
    registry, port, _ = env
    ticket = registry.register_ticket(A, "thermostat", 9)
    out = radclient(port, B, password=ticket.passphrase)
    assert "Received Access-Accept" in out.stdout, out.stdout + out.stderr
    assert 'Tunnel-Private-Group-Id:0 = "9"' in out.stdout
    assert f'Tunnel-Password:0 = "{ticket.passphrase}"' in out.stdout
    dev = registry.get(B)
    assert dev is not None and dev.label == "thermostat" and dev.vlanid == 9
    # a second device with the same passphrase: the ticket is spent and bound to B
    out = radclient(port, C, password=ticket.passphrase)
    assert "Received Access-Reject" in out.stdout, out.stdout
    rep = pyrad_send(port, pyrad_request(C, password=ticket.passphrase))
    assert rep.code == AccessReject
    # B keeps its access (its record now holds the ticket's passphrase)
    assert "Received Access-Accept" in radclient(port, B).stdout


def test_malformed_flood_counted_server_keeps_answering(env) -> None:
    registry, port, srv = env
    registry.accept_mac(A, 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n in range(50):
            s.sendto(bytes([1, n, 0, 200]) + bytes(30), ("127.0.0.1", port))
    assert "Received Access-Accept" in radclient(port, A).stdout
    assert srv.service.protocol.counters.malformed == 50


def test_audit_lines_for_accept_reject_and_bad_secret(env, caplog) -> None:
    """Every decision is an INFO line (MAC, VLAN, how); a wrong shared secret is one
    WARNING a window that says so, however many requests carry it."""
    import logging

    caplog.set_level(logging.INFO, logger="edgesec")
    registry, port, srv = env
    registry.accept_mac(A, 2)
    registry.deny_mac(C)
    assert "Received Access-Accept" in radclient(port, A).stdout
    assert "Received Access-Reject" in radclient(port, C).stdout
    messages = [r.getMessage() for r in caplog.records]
    assert any(re.fullmatch(rf"radius: accept {A} vlan 2 \(known device\) from 127\.0\.0\.1:\d+",
                            m) for m in messages), messages
    assert any(m.startswith(f"radius: reject {C} (device is denied) from 127.0.0.1:")
               for m in messages), messages

    now = [1000.0]
    srv.service.protocol.bad_secret.clock = lambda: now[0]
    for _ in range(3):
        radclient(port, A, secret="not-the-secret")
        pyrad_send_quiet(port, pyrad_request(A, secret=b"also-wrong"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "bad shared secret" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert re.match(r"radius: bad shared secret from 127\.0\.0\.1:\d+\? ",
                    warnings[0].getMessage())
    now[0] += 61  # the next window: one more warning and the count of the ones held back
    radclient(port, A, secret="not-the-secret")
    held = [r.getMessage() for r in caplog.records if "were not logged" in r.getMessage()]
    warnings = [r for r in caplog.records if "bad shared secret" in r.getMessage()]
    assert len(warnings) == 2 and held and held[0].startswith(
        f"{srv.service.protocol.counters.bad_authenticator - 2} more requests with a bad")


def pyrad_send_quiet(port: int, pkt: AuthPacket) -> None:
    with contextlib.suppress(Timeout):
        pyrad_send(port, pkt)
