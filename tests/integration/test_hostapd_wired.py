"""HostapdService with the real hostapd (``driver=wired``) on a veth in a namespace, a
device namespace running ``wpa_supplicant -D wired`` through 802.1X (hostapd's
internal EAP server, EAP-MD5), and the real registry over a temporary SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgesec.access.hostapd import HostapdService
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

DEV_MAC = "02:5e:00:00:00:01"
EAP_USER, EAP_PASSWORD = "device1", "device1-md5-password"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two namespaces joined by a veth: the AP side and the device side."""
    tag = secrets.token_hex(3)
    ns_ap, ns_dev = f"hs{tag}ap", f"hs{tag}dev"
    if_ap, if_dev = f"hs{tag}a", f"hs{tag}d"
    try:
        sh("ip", "netns", "add", ns_ap)
        sh("ip", "netns", "add", ns_dev)
        sh("ip", "link", "add", if_ap, "type", "veth", "peer", "name", if_dev)
        sh("ip", "link", "set", if_ap, "netns", ns_ap)
        sh("ip", "link", "set", if_dev, "netns", ns_dev)
        sh("ip", "-n", ns_dev, "link", "set", if_dev, "address", DEV_MAC)
        for ns, ifname in ((ns_ap, if_ap), (ns_dev, if_dev)):
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield {"ns_ap": ns_ap, "ns_dev": ns_dev, "if_ap": if_ap, "if_dev": if_dev}
    finally:
        for ns in (ns_ap, ns_dev):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def make_settings(tmp: Path, if_ap: str) -> Settings:
    sub = Subnet(0, ipaddress.IPv4Address("10.77.0.1"), ipaddress.IPv4Address("10.77.0.255"),
                 ipaddress.IPv4Network("10.77.0.0/24"), "br0")
    return Settings(
        system=SystemSettings(exec_ap=True, allow_all_connections=False),
        ap=ApSettings(ap_bin_path=Path("/usr/sbin/hostapd"), ap_file_path=tmp / "hostapd.conf",
                      ap_log_path=None, interface=if_ap, ssid="edgesec-test",
                      wpa_passphrase="ap-passphrase", ctrl_interface=tmp / "ctrl",
                      vlan_file=tmp / "hostapd.vlan"),
        radius=RadiusSettings(secret="unused-here"),
        interfaces=InterfacesSettings(subnets=(sub,)),
    )


def wired_extra(tmp: Path) -> dict[str, str]:
    """Turn the generated config into a wired 802.1X authenticator for the test bed."""
    users = tmp / "eap_users"
    users.write_text(f'"{EAP_USER}" MD5 "{EAP_PASSWORD}"\n')
    return {"driver": "wired", "wpa": "0", "macaddr_acl": "0", "dynamic_vlan": "0",
            "ieee8021x": "1", "eap_server": "1", "eap_user_file": str(users),
            "eap_reauth_period": "0", "use_pae_group_addr": "1"}


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def test_hostapd_supervised_events_policy_and_heal(bed: dict[str, str], tmp_path: Path) -> None:
    settings = make_settings(tmp_path, bed["if_ap"])
    store = Store(tmp_path / "registry.sqlite")
    registry = Registry(settings, store)
    registry.accept_mac(DEV_MAC, 0)
    ap_events: list[tuple[str, int]] = []
    registry.bus.subscribe(
        lambda e: ap_events.append((e.mac, e.data["status"])) if e.kind == "ap" else None)
    sup_conf = tmp_path / "supplicant.conf"
    sup_ctrl = tmp_path / "sctrl"
    sup_conf.write_text(
        f"ctrl_interface={sup_ctrl}\nap_scan=0\nnetwork={{\n key_mgmt=IEEE8021X\n eap=MD5\n"
        f' identity="{EAP_USER}"\n password="{EAP_PASSWORD}"\n eapol_flags=0\n}}\n')

    def wpa_cli(*cmd: str) -> None:
        subprocess.run(["wpa_cli", "-p", str(sup_ctrl), "-i", bed["if_dev"], *cmd],
                       capture_output=True, timeout=10, check=True)

    def status() -> int:
        dev = registry.get(DEV_MAC)
        return dev.status if dev else -1

    async def scenario() -> None:
        svc = HostapdService(settings, registry, extra=wired_extra(tmp_path),
                             argv_prefix=["ip", "netns", "exec", bed["ns_ap"]],
                             ping_interval=0.3)
        supplicant = None
        try:
            await svc.start()
            assert svc.process is not None and svc.process.pid
            assert await svc.wait_attached(15), svc.attach_error  # attaching is in the background
            assert svc.mon is not None and svc.mon.attached
            assert svc.health() == ("ok", "")
            conf = Path(settings.ap.ap_file_path).read_text()
            assert f"interface={bed['if_ap']}\n" in conf and "driver=wired\n" in conf
            assert (Path(settings.ap.ap_file_path).stat().st_mode & 0o077) == 0

            supplicant = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", bed["ns_dev"], "wpa_supplicant", "-D", "wired",
                "-i", bed["if_dev"], "-c", str(sup_conf),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await wait_until(lambda: status() == 1, "AP-STA-CONNECTED after 802.1X")
            assert (DEV_MAC, 1) in ap_events

            # DENY_MAC: hostapd drops the station and keeps it out
            registry.deny_mac(DEV_MAC)
            await wait_until(lambda: status() == 2, "AP-STA-DISCONNECTED after deny")
            assert DEV_MAC in await svc.cmd.request("DENY_ACL SHOW")

            # ACCEPT_MAC again: off the deny list; the device re-authenticates
            registry.accept_mac(DEV_MAC, 0)
            await asyncio.sleep(0.5)
            assert DEV_MAC not in await svc.cmd.request("DENY_ACL SHOW")
            wpa_cli("logoff")
            wpa_cli("logon")
            await wait_until(lambda: status() == 1, "re-connection after accept")

            # a changed passphrase drops the station so the new policy applies
            before = len(ap_events)
            registry.assign_psk(DEV_MAC, "a-new-device-passphrase")
            await wait_until(lambda: (DEV_MAC, 2) in ap_events[before:], "drop on PSK change")

            # kill -9 of hostapd: restarted, re-attached, events flow again
            old_pid, attaches = svc.process.pid, svc.attaches
            os.kill(old_pid, signal.SIGKILL)
            await wait_until(lambda: svc.process.pid not in (None, old_pid)
                             and svc.attaches > attaches and svc.mon is not None
                             and svc.mon.attached, "restart and re-attach")
            before = len(ap_events)
            wpa_cli("logoff")
            wpa_cli("logon")
            await wait_until(lambda: (DEV_MAC, 1) in ap_events[before:],
                             "AP-STA-CONNECTED from the restarted hostapd")
            assert status() == 1
            assert "attached" in svc.status()
        finally:
            if supplicant is not None and supplicant.returncode is None:
                supplicant.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(supplicant.wait(), 5)
            await svc.stop()

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_psk_file_backend_with_real_hostapd(bed: dict[str, str], tmp_path: Path) -> None:
    """pskBackend=file: hostapd runs from the generated config without RADIUS keys,
    registry changes rewrite the PSK file and hostapd reloads it."""
    base = make_settings(tmp_path, bed["if_ap"])
    settings = dataclasses.replace(base, ap=dataclasses.replace(
        base.ap, psk_backend="file", wpa_psk_file=tmp_path / "hostapd.wpa_psk"))
    store = Store(tmp_path / "registry.sqlite")
    registry = Registry(settings, store)
    other = "02:5e:00:00:00:09"
    registry.accept_mac(DEV_MAC, 0)
    registry.assign_psk(DEV_MAC, "first-device-passphrase")

    async def scenario() -> None:
        svc = HostapdService(settings, registry, extra={"driver": "wired"},
                             argv_prefix=["ip", "netns", "exec", bed["ns_ap"]],
                             ping_interval=0.3)
        try:
            await svc.start()
            assert await svc.wait_attached(15), svc.attach_error
            assert svc.mon is not None and svc.mon.attached
            conf = Path(settings.ap.ap_file_path).read_text()
            assert "auth_server_addr" not in conf and "wpa_psk_radius" not in conf
            assert f"wpa_psk_file={settings.ap.wpa_psk_file}\n" in conf
            psk_path = Path(settings.ap.wpa_psk_file)
            assert f"{DEV_MAC} first-device-passphrase\n" in psk_path.read_text()
            assert (psk_path.stat().st_mode & 0o077) == 0
            registry.accept_mac(other, 0)
            registry.assign_psk(other, "second-device-passphrase")
            registry.deny_mac(DEV_MAC)
            await wait_until(lambda: f"{other} second-device-passphrase" in psk_path.read_text()
                             and DEV_MAC not in psk_path.read_text(), "PSK file rewritten", 10)
            assert DEV_MAC in await svc.cmd.request("DENY_ACL SHOW")
            # hostapd accepted the rewritten file and is still the same healthy process
            await svc.cmd.command_ok("RELOAD_WPA_PSK")
            assert await svc.cmd.ping() and svc.process.restarts == 0
        finally:
            await svc.stop()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
