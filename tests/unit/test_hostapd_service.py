"""HostapdService against a socket-level fake hostapd and a real registry.

The fake (tests/fakehostapd.py) speaks hostapd's control protocol over a UNIX
datagram socket; the registry is the real one on SQLite in memory. No mocks
between the service and either.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from edgesec.access.hostapd import HostapdService
from edgesec.config import parse_settings
from edgesec.device_status import DeviceStatus
from edgesec.registry import Registry
from edgesec.store import Store
from fakehostapd import FakeHostapd, short_dir

A, B, C, D = (f"02:00:00:00:00:0{i}" for i in range(1, 5))
INTERFACES = "".join(f'if{v} = "{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0"\n' for v in (1, 2, 3))


@pytest.fixture
def ctrl_dir() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make(tmp_path: Path, ctrl_dir: Path, backend: str = "radius") -> tuple[HostapdService,
                                                                            Registry]:
    """The service and its registry, in which A is accepted on VLAN 1."""
    ini = (f"[system]\ndefaultOpenVlanId = 1\n[interfaces]\n{INTERFACES}"
           f'[ap]\ninterface = "wlan0"\nctrlInterface = "{ctrl_dir}"\napFilePath = "h.conf"\n'
           f'vlanFile = "h.vlan"\nwpaPskFile = "h.psk"\npskBackend = "{backend}"\n'
           'wpaPassphrase = "ap-passphrase"\n')
    settings = parse_settings(ini, base=tmp_path)
    registry = Registry(settings, Store(":memory:"))
    registry.accept_mac(A, 1)
    return HostapdService(settings, registry, ping_interval=0.05), registry


@contextlib.asynccontextmanager
async def running(svc: HostapdService, ctrl_dir: Path,
                  stations: tuple[str, ...] = ()) -> AsyncIterator[FakeHostapd]:
    """A fake hostapd (listing ``stations``), the service started and attached to it."""
    with FakeHostapd(ctrl_dir) as ap:
        ap.stations = list(stations)
        await svc.start()
        try:
            assert await svc.wait_attached(30)
            yield ap
        finally:
            await svc.stop()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` on the loop until it holds (generous: the machine is shared)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


def test_attach_resyncs_deny_list_and_statuses(tmp_path: Path, ctrl_dir: Path) -> None:
    svc, reg = make(tmp_path, ctrl_dir)
    reg.accept_mac(B, 2)
    reg.deny_mac(B)
    reg.accept_mac(D, 1)
    reg.set_status(D, DeviceStatus.CONNECTED)  # stale: hostapd no longer lists it

    async def run() -> None:
        async with running(svc, ctrl_dir, stations=(A,)) as ap:
            assert await until(lambda: reg.get(D).status == DeviceStatus.DISCONNECTED)
            assert ap.saw(f"DENY_ACL ADD_MAC {B}") and B in ap.deny
            assert reg.get(A).status == DeviceStatus.CONNECTED
            assert svc.health() == ("ok", "")
            assert "attached" in svc.status() and (tmp_path / "h.conf").exists()

    asyncio.run(run())


def test_event_during_resync_is_not_overwritten_by_the_older_station_list(
        tmp_path: Path, ctrl_dir: Path) -> None:
    """The station list is read (A absent), then A associates before the reply is
    handled: the event is newer and must win."""
    svc, reg = make(tmp_path, ctrl_dir)

    async def run() -> None:
        with FakeHostapd(ctrl_dir) as ap:
            def join_now() -> None:
                ap.before_sta_reply = None
                ap.associate(A)
            ap.before_sta_reply = join_now
            await svc.start()
            try:
                assert await svc.wait_attached(30)
                assert await until(lambda: svc.events_seen == 1)
                assert reg.get(A).status == DeviceStatus.CONNECTED
            finally:
                await svc.stop()

    asyncio.run(run())


def test_station_events_reach_the_registry(tmp_path: Path, ctrl_dir: Path) -> None:
    svc, reg = make(tmp_path, ctrl_dir)

    async def run() -> None:
        async with running(svc, ctrl_dir) as ap:
            assert await until(lambda: bool(ap.attached))
            ap.event("CTRL-EVENT-EAP-STARTED 02:00:00:00:00:01")  # not a station event
            ap.associate(A, keyid="dev1")
            assert await until(lambda: reg.get(A).status == DeviceStatus.CONNECTED)
            ap.disassociate(A)
            assert await until(lambda: reg.get(A).status == DeviceStatus.DISCONNECTED)
            ap.event("AP-STA-CONNECTED not-a-mac")
            ap.event(f"AP-STA-CONNECTED {C}")  # unknown MAC: only the event, no record
            assert await until(lambda: svc.events_seen == 3)
            assert reg.get(C) is None

    asyncio.run(run())


def test_policy_changes_drop_the_station(tmp_path: Path, ctrl_dir: Path) -> None:
    """Deny puts the MAC on the deny list; a VLAN change and a removal drop and re-admit."""
    svc, reg = make(tmp_path, ctrl_dir)
    reg.accept_mac(B, 1)

    async def run() -> None:
        async with running(svc, ctrl_dir) as ap:
            reg.deny_mac(A)
            assert await until(lambda: ap.saw(f"DEAUTHENTICATE {A}"))
            assert A in ap.deny
            reg.accept_mac(A, 2)  # allowed again, on another VLAN
            assert await until(lambda: A not in ap.deny)
            reg.accept_mac(B, 3)
            assert await until(lambda: ap.saw(f"DENY_ACL DEL_MAC {B}"))
            assert ap.saw(f"DENY_ACL ADD_MAC {B}") and B not in ap.deny
            ap.commands.clear()
            reg.remove_device(B)
            assert await until(lambda: ap.saw(f"DENY_ACL DEL_MAC {B}"))
            assert ap.saw(f"DEAUTHENTICATE {B}")

    asyncio.run(run())


def test_absent_hostapd_degrades_then_attaches_and_survives_a_restart(
        tmp_path: Path, ctrl_dir: Path) -> None:
    svc, reg = make(tmp_path, ctrl_dir)
    reg.deny_mac(A)

    async def run() -> None:
        await svc.start()
        try:
            assert not await svc.wait_attached(0.3)
            state, why = svc.health()
            assert state == "degraded" and "cannot connect" in why
            assert await svc.disconnect(A) is False  # nothing to talk to: says so
            ap = FakeHostapd(ctrl_dir).start()
            try:
                assert await until(lambda: svc.health()[0] == "ok")
                first = svc.attaches
                ap.commands.clear()
                ap.restart()  # a new hostapd: empty deny list, nobody attached
                assert await until(lambda: svc.attaches > first and bool(ap.attached))
                assert await until(lambda: A in ap.deny), "the deny list is re-sent"
            finally:
                ap.stop()
        finally:
            await svc.stop()
        assert svc.cmd is None and svc.mon is None

    asyncio.run(run())


def test_file_backend_reloads_the_psk_file(tmp_path: Path, ctrl_dir: Path) -> None:
    svc, reg = make(tmp_path, ctrl_dir, backend="file")

    async def run() -> None:
        async with running(svc, ctrl_dir) as ap:
            reg.assign_psk(A, "a-device-passphrase")
            assert await until(lambda: ap.saw("RELOAD_WPA_PSK"))
            assert "a-device-passphrase" in (tmp_path / "h.psk").read_text()

    asyncio.run(run())


def test_actions_for_one_mac_keep_their_order(tmp_path: Path, ctrl_dir: Path) -> None:
    """deny, re-accept and VLAN moves in quick succession reach hostapd in order."""
    svc, reg = make(tmp_path, ctrl_dir)

    async def run() -> None:
        async with running(svc, ctrl_dir) as ap:
            ap.commands.clear()
            for vlan in (2, 3, 1):  # no awaiting between the changes
                reg.deny_mac(A)
                reg.accept_mac(A, vlan)
            assert await until(lambda: not svc._actions)
            acl = [c for c in ap.commands if c.startswith("DENY_ACL")]
            # each deny is followed by its undeny before the next deny: never interleaved
            assert acl == [f"DENY_ACL {op}_MAC {A}" for op in ("ADD", "DEL") * 6], acl
            assert A not in ap.deny

    asyncio.run(run())


def test_stop_ends_the_keepalive_even_when_a_reattach_meets_the_cancel(
        tmp_path: Path, ctrl_dir: Path) -> None:
    """A restart signal arriving with the stop used to be swallowed by the keep-alive's
    wait (Python 3.11's wait_for), which then retried attaching forever: stop() hung
    (a CI timeout) and, after a reload, a second keep-alive would have run beside it."""
    svc, _ = make(tmp_path, ctrl_dir)

    async def run() -> None:
        await svc.start()
        assert not await svc.wait_attached(0.3)  # absent hostapd: the back-off loop runs
        task = svc._task
        assert task is not None
        before = svc._attach_failures
        svc._reattach.set()  # our child's restart, in the same loop turn as the stop
        await asyncio.wait_for(svc.stop(), 10)
        assert task.done() and svc._task is None
        assert svc._attach_failures <= before + 1, "the keep-alive went on after stop()"

    asyncio.run(run())
