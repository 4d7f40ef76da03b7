"""Tickets are bound by the handshake, removed devices are dropped: the real hostapd.

hostapd (``driver=wired``, internal EAP server) reports ``AP-STA-CONNECTED``
only after the station proved its secret (EAP-MD5 here, the WPA 4-way
handshake on a radio); the registry binds an offered ticket on that event.
``Registry.admit(mac)`` stands in for the RADIUS MAC-ACL request hostapd
sends on association (the wired driver sends none).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

import pytest
from test_hostapd_wired import (  # tests/ is on sys.path (tests/conftest.py)
    DEV_MAC,
    EAP_PASSWORD,
    EAP_USER,
    bed,  # noqa: F401 - the fixture
    make_settings,
    wait_until,
    wired_extra,
)

from edgesec.access.hostapd import HostapdService
from edgesec.registry import Registry
from edgesec.store import Store

pytestmark = pytest.mark.integration

STRANGER = "02:5e:00:00:00:99"


def _supplicant_conf(path: Path, ctrl: Path, password: str) -> Path:
    path.write_text(
        f"ctrl_interface={ctrl}\nap_scan=0\nnetwork={{\n key_mgmt=IEEE8021X\n eap=MD5\n"
        f' identity="{EAP_USER}"\n password="{password}"\n eapol_flags=0\n}}\n')
    return path


def test_ticket_is_bound_only_after_the_station_authenticates_and_removal_drops_it(
        bed: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    settings = make_settings(tmp_path, bed["if_ap"])
    store = Store(tmp_path / "registry.sqlite")
    registry = Registry(settings, store)
    ap_events: list[tuple[str, int]] = []
    registry.bus.subscribe(
        lambda e: ap_events.append((e.mac, e.data["status"])) if e.kind == "ap" else None)

    async def supplicant(password: str, name: str) -> asyncio.subprocess.Process:
        conf = _supplicant_conf(tmp_path / f"{name}.conf", tmp_path / f"{name}-ctrl", password)
        return await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", bed["ns_dev"], "wpa_supplicant", "-D", "wired",
            "-i", bed["if_dev"], "-c", str(conf),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    def set_mac(mac: str) -> None:
        subprocess.run(["ip", "-n", bed["ns_dev"], "link", "set", bed["if_dev"], "address",
                        mac], check=True, capture_output=True, timeout=10)

    async def stop(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)

    async def scenario() -> None:
        svc = HostapdService(settings, registry, extra=wired_extra(tmp_path),
                             argv_prefix=["ip", "netns", "exec", bed["ns_ap"]],
                             ping_interval=0.3)
        procs: list[asyncio.subprocess.Process] = []
        try:
            await svc.start()
            ticket = registry.register_ticket(STRANGER, "thermostat", 0)
            # association of a stranger and of the device: both offered the ticket
            for mac in (STRANGER, DEV_MAC):
                adm = registry.admit(mac)
                assert adm.accept and adm.psk == ticket.passphrase
            # the stranger does not know the secret: EAP fails, nothing is bound
            set_mac(STRANGER)
            procs.append(await supplicant("not-the-password", "wrong"))
            await asyncio.sleep(4)
            assert (STRANGER, 1) not in ap_events
            assert registry.devices() == [] and registry.tickets() == [ticket]
            await stop(procs[-1])
            set_mac(DEV_MAC)
            # with the secret: AP-STA-CONNECTED binds the ticket to it
            procs.append(await supplicant(EAP_PASSWORD, "right"))
            await wait_until(lambda: registry.get(DEV_MAC) is not None, "ticket bound")
            dev = registry.get(DEV_MAC)
            assert dev.label == "thermostat" and dev.psk == ticket.passphrase
            assert dev.status == 1 and registry.tickets() == []
            assert not registry.admit(STRANGER).accept  # spent: the stranger is out

            # REMOVE_DEVICE while connected: hostapd drops it, no deny-list entry remains
            before = len(ap_events)
            registry.remove_device(DEV_MAC)
            await wait_until(lambda: (DEV_MAC, 2) in ap_events[before:], "drop on removal")
            await asyncio.sleep(0.3)
            assert DEV_MAC not in await svc.cmd.request("DENY_ACL SHOW")
            # a denied device that is removed leaves the deny list too
            registry.deny_mac(STRANGER)
            await wait_until(lambda: registry.get(STRANGER) is not None, "deny recorded")
            await asyncio.sleep(0.5)
            assert STRANGER in await svc.cmd.request("DENY_ACL SHOW")
            registry.remove_device(STRANGER)
            await asyncio.sleep(0.5)
            assert STRANGER not in await svc.cmd.request("DENY_ACL SHOW")
        finally:
            for proc in procs:
                await stop(proc)
            await svc.stop()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
