"""Running as a service: sd_notify, STATUS health states, bounded stop, reload planning
and the gateway's SIGHUP path (with stand-in services), dnsmasq's reload hook."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from daemon import write_config
from edgesec import gateway as gw
from edgesec.config import load_settings, parse_settings
from edgesec.dhcp.dnsmasq import DhcpConfigError, DhcpService
from edgesec.reload import affected, changed_keys, restart_needed
from edgesec.sdnotify import Notifier

# -- sd_notify ---------------------------------------------------------------------


def test_notifier_sends_key_value_lines(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        n = Notifier(str(path))
        assert n.enabled and n.send(ready=1, status="running: 3 ok\nextra")
        assert sock.recv(100) == b"READY=1\nSTATUS=running: 3 ok extra\n"
        n.close()


def test_notifier_abstract_address_and_absent_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edgesec-test-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        n = Notifier()
        assert n.send(stopping=1)
        assert sock.recv(100) == b"STOPPING=1\n"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not Notifier().enabled and Notifier().send(ready=1) is False
    assert Notifier("/nonexistent/sock").send(ready=1) is False  # logged, no crash


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert Notifier("x").watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert Notifier("x").watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert Notifier("x").watchdog_interval() is None


def test_notify_variables_are_not_inherited_by_children(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    n = Notifier(unset_environment=True)
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    assert n.address == "/run/systemd/notify" and n.watchdog_interval() == 1.0


# -- reload planning -----------------------------------------------------------------

BASE = """[system]
defaultOpenVlanId = 1
[interfaces]
if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"
[dhcp]
dhcpRange1 = "1,10.0.1.2,10.0.1.254,255.255.255.0,24h"
[radius]
port = 1812
"""


def test_changed_keys_name_sections_and_keys() -> None:
    old = parse_settings(BASE)
    new = parse_settings(BASE.replace("port = 1812", "port = 1813")
                         + '[dns]\nservers = "9.9.9.9"\n')
    changes = changed_keys(old, new)
    assert changes == {"radius": ["port"], "dns": ["servers"]}
    assert restart_needed(changes) == ["[radius] port"]
    assert affected(changes) == {"dhcp", "mdns"}
    assert changed_keys(old, parse_settings(BASE)) == {}


# -- the gateway with stand-in services ------------------------------------------------


class Fake:
    def __init__(self, name: str, health: Any = None, stop_delay: float = 0.0) -> None:
        self.name = name
        self.reloaded: list[Any] = []
        self.stop_delay = stop_delay
        if health is not None:
            self.health = health

    async def start(self) -> None: ...

    async def stop(self) -> None:
        await asyncio.sleep(self.stop_delay)

    def status(self) -> str:
        return f"{self.name} status"

    def reload(self, settings: Any) -> None:
        self.reloaded.append(settings)


@pytest.fixture
def gateway(tmp_path: Path) -> gw.Gateway:
    return gw.Gateway(load_settings(write_config(tmp_path)))


def test_status_lines_health_states(gateway: gw.Gateway) -> None:
    def boom() -> tuple[str, str]:
        raise RuntimeError("x")

    gateway.services = [Fake("a"), Fake("b", lambda: ("ok", "")),
                        Fake("hostapd", lambda: ("degraded", "not attached to /r/wlan0")),
                        Fake("c", lambda: ("failed", "dnsmasq exits")), Fake("d", boom),
                        Fake("e", lambda: ("weird", "?"))]
    gateway.failed = {"radius": "failed to start: port in use"}
    lines = gateway.status_lines()
    assert lines[:2] == ["a ok a status", "b ok b status"]
    assert lines[2] == "hostapd degraded not attached to /r/wlan0; hostapd status"
    assert lines[3] == "c failed dnsmasq exits; c status"
    assert lines[4].startswith("d failed health check raised RuntimeError")
    assert lines[5] == "e failed ?; e status"
    assert lines[6] == "radius failed failed to start: port in use"
    summary = gateway.summary()
    assert summary == "running: 2 ok, 1 degraded (hostapd), 4 failed (c d e radius)"


@pytest.mark.slow  # waits out real time (deadlines, back-off, idle sampling)
def test_stop_is_bounded_whatever_the_services_do(gateway: gw.Gateway) -> None:
    gateway.services = [Fake("a"), Fake("hangs", stop_delay=3600), Fake("b")]
    t0 = time.monotonic()
    asyncio.run(gateway.stop())
    assert time.monotonic() - t0 < 10  # was 15 s per hanging service
    assert gateway.services == []


def test_reload_hands_new_settings_and_refuses_a_broken_config(
        gateway: gw.Gateway, caplog: pytest.LogCaptureFixture) -> None:
    fake = Fake("subnets")
    gateway.services = [fake]
    path = gateway.settings.path
    assert path is not None
    text = path.read_text()
    path.write_text(text.replace("[interfaces]", '[interfaces]\nif40 = "40,10.0.40.1,'
                                 '10.0.40.255,255.255.255.0"'))
    caplog.set_level(logging.INFO, "edgesec.gateway")
    asyncio.run(gateway.reload())
    assert len(fake.reloaded) == 1 and fake.reloaded[0].interfaces.subnet_for_vlan(40)
    assert gateway.settings is fake.reloaded[0]
    assert gateway.registry.settings is fake.reloaded[0]
    assert "reloaded" in caplog.text and "[interfaces]" in caplog.text

    path.write_text(text.replace("[interfaces]", '[interfaces]\nif41 = "x"'))
    current = gateway.settings
    asyncio.run(gateway.reload())
    assert gateway.settings is current and len(fake.reloaded) == 1
    assert "reload refused, keeping the running configuration" in caplog.text
    assert "if41" in caplog.text

    path.write_text(text.replace('supervisorControlPort = 0', 'supervisorControlPort = 0\n'
                                 'supervisorControlAddress = "127.0.0.2"'))
    asyncio.run(gateway.reload())
    assert "[supervisor] supervisorControlAddress changed: not applied, needs a restart" \
        in caplog.text


class Rebuilt(Fake):
    built: ClassVar[list[Any]] = []


def build_rebuilt(settings: Any, registry: Any) -> Rebuilt:
    svc = Rebuilt("mdns")
    Rebuilt.built.append(settings)
    return svc


def test_reload_restarts_in_place_a_touched_service_without_a_hook(
        gateway: gw.Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    class NoHook(Fake):
        reload = None  # type: ignore[assignment]

    monkeypatch.setattr(gw, "OPTIONAL_SERVICES", (
        gw.ServiceSpec("mdns", __name__, "build_rebuilt", lambda s: True),))
    first, old, last = Fake("x"), NoHook("mdns"), Fake("y")
    gateway.services = [first, old, last]
    path = gateway.settings.path
    assert path is not None
    path.write_text(path.read_text() + '\n[dns]\nmdnsReflectIp6 = true\n')
    asyncio.run(gateway.reload())
    assert [s.name for s in gateway.services] == ["x", "mdns", "y"]
    assert gateway.services[1] is not old and isinstance(gateway.services[1], Rebuilt)
    assert Rebuilt.built[-1] is gateway.settings


# -- dnsmasq's reload hook -------------------------------------------------------------


def test_dnsmasq_reload_rewrites_and_validates_first(tmp_path: Path) -> None:
    ini = BASE + ('[dhcp]\ndhcpConfigPath = "d.conf"\ndhcpScriptPath = "hook.sh"\n'
                  'dhcpLeasefilePath = "d.leases"\n')
    settings = parse_settings(ini, base=tmp_path)
    svc = DhcpService(settings, run=False)
    asyncio.run(svc.start())
    conf = tmp_path / "d.conf"
    assert "dhcp-range=br1,10.0.1.2" in conf.read_text()
    wider = parse_settings(ini.replace('[interfaces]', '[interfaces]\nif40 = "40,10.0.40.1,'
                                       '10.0.40.255,255.255.255.0"')
                           .replace('[dhcp]\ndhcpConfigPath', '[dhcp]\ndhcpRange40 = "40,'
                                    '10.0.40.9,10.0.40.99,255.255.255.0,1h"\ndhcpConfigPath'),
                           base=tmp_path)
    asyncio.run(svc.reload(wider))
    text = conf.read_text()
    assert "dhcp-range=br40,10.0.40.9,10.0.40.99" in text and "interface=br40" in text
    # the config loader refuses this too; built past it to prove dnsmasq's own check
    broken = replace(wider, dns=replace(wider.dns, servers=("not-an-ip",)))
    with pytest.raises(DhcpConfigError):
        asyncio.run(svc.reload(broken))
    assert conf.read_text() == text and svc.settings is wider


# -- hostapd's reload hook -------------------------------------------------------------


def test_hostapd_reload_takes_new_vlans_only(tmp_path: Path, gateway: gw.Gateway) -> None:
    from edgesec.access.hostapd import HostapdService

    ap = ('[ap]\ninterface = "wlan0"\nssid = "one"\napFilePath = "h.conf"\n'
          'vlanFile = "h.vlan"\nctrlInterface = "ctrl"\n')
    settings = parse_settings(BASE + ap, base=tmp_path)
    svc = HostapdService(settings, gateway.registry)
    svc.write_files()
    vlan = tmp_path / "h.vlan"
    assert "40\t" not in vlan.read_text()
    new = parse_settings(BASE.replace("[interfaces]", '[interfaces]\nif40 = "40,10.0.40.1,'
                                      '10.0.40.255,255.255.255.0"') + ap.replace('"one"',
                                                                                 '"two"'),
                         base=tmp_path)
    asyncio.run(svc.reload(new))
    assert "40\twlan0.40\tbr40" in vlan.read_text()
    conf = (tmp_path / "h.conf").read_text()
    assert "ssid=one\n" in conf  # [ap] needs a restart: not applied half-way
    assert svc.health()[0] == "degraded"  # never attached


def test_installed_config_matches_the_readme_and_ctl_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgesec.supervisor.client import default_socket

    root = Path(__file__).resolve().parents[2]
    monkeypatch.delenv("EDGESEC_SOCKET", raising=False)
    settings = load_settings(root / "packaging/config.ini")
    sock = str(settings.supervisor.supervisor_control_path)
    assert sock == default_socket() == "/run/edgesec/edgesec.sock"
    readme = (root / "README.md").read_text()
    assert f"nc -uU {sock} " in readme and "/etc/edgesec/config.ini" in readme
    assert str(settings.system.pid_file_path).startswith("/run/edgesec/")
    assert str(settings.system.connection_db_path).startswith("/var/lib/edgesec/")
    unit = (root / "packaging/edgesec.service").read_text()
    assert "ReadWritePaths=/var/lib/edgesec /run/edgesec" in unit
