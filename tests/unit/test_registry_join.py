"""Join times: recorded at once in memory, written behind in one transaction."""

from __future__ import annotations

from pathlib import Path

from edgesec.config import parse_settings
from edgesec.registry import Registry
from edgesec.store import Store

CONFIG = """
[system]
defaultOpenVlanId = 1
[interfaces]
if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"
"""
MAC = "02:00:00:00:00:07"


def test_join_time_is_written_behind_and_survives_restart(tmp_path: Path) -> None:
    now = [1000.0]
    db = tmp_path / "conn.sqlite"
    events = []
    reg = Registry(parse_settings(CONFIG), Store(db), clock=lambda: now[0])
    reg.accept_mac(MAC, 1)
    reg.bus.subscribe(events.append)

    now[0] = 2000.0
    answer = reg.admit(MAC)
    assert answer.accept and reg.get(MAC).join_ts == 2_000_000_000
    assert events == []  # no policy changed, so nothing to reconcile
    assert Registry(parse_settings(CONFIG), Store(db)).get(MAC).join_ts == 0  # not yet written

    assert reg.flush_join_times() == 1
    assert reg.flush_join_times() == 0
    assert Registry(parse_settings(CONFIG), Store(db)).get(MAC).join_ts == 2_000_000_000


def test_a_policy_change_writes_the_pending_join_time_too(tmp_path: Path) -> None:
    db = tmp_path / "conn.sqlite"
    reg = Registry(parse_settings(CONFIG), Store(db), clock=lambda: 3000.0)
    reg.accept_mac(MAC, 1)
    reg.admit(MAC)
    reg.set_nat(MAC, True)  # a durable write of the whole row
    again = Registry(parse_settings(CONFIG), Store(db)).get(MAC)
    assert again.nat and again.join_ts == 3_000_000_000


def test_get_all_shows_a_new_join_time(tmp_path: Path) -> None:
    from edgesec.supervisor.commands import CommandTable, NetworkCommands, Request
    from edgesec.supervisor.protocol import parse_device_line

    now = [1000.0]
    reg = Registry(parse_settings(CONFIG), Store(tmp_path / "c.sqlite"), clock=lambda: now[0])
    table = CommandTable()
    NetworkCommands(reg).install(table)
    reg.accept_mac(MAC, 1)
    before = table.dispatch(Request("GET_ALL", ()))
    assert parse_device_line(before).join_ts == "0"
    now[0] = 2000.0
    reg.admit(MAC)  # join time only: no event, but GET_ALL must not be stale
    assert parse_device_line(table.dispatch(Request("GET_ALL", ()))).join_ts == "2000000000"


CONFIG_TWO = CONFIG + """if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"
[ap]
wpaPassphrase = "ap-default-pass"
"""


def test_a_cached_admission_follows_every_policy_change(tmp_path: Path) -> None:
    reg = Registry(parse_settings(CONFIG_TWO), Store(tmp_path / "c.sqlite"), clock=lambda: 5.0)
    reg.accept_mac(MAC, 1)
    first = reg.admit(MAC)
    assert (first.accept, first.vlan, first.psk) == (True, 1, "ap-default-pass")
    assert reg.admit(MAC) is first  # nothing changed: the same answer, no new record

    reg.assign_psk(MAC, "own-passphrase")
    assert reg.admit(MAC).psk == "own-passphrase"
    reg.accept_mac(MAC, 2)
    assert reg.admit(MAC).vlan == 2
    reg.set_label(MAC, "camera")
    assert reg.admit(MAC).label == "camera"
    reg.clear_psk(MAC)
    assert reg.admit(MAC).psk == "ap-default-pass"
    reg.deny_mac(MAC)
    assert not reg.admit(MAC).accept
    reg.accept_mac(MAC, 1)
    assert reg.admit(MAC).accept


def test_every_read_sees_the_latest_join_time(tmp_path: Path) -> None:
    now = [10.0]
    reg = Registry(parse_settings(CONFIG), Store(tmp_path / "c.sqlite"), clock=lambda: now[0])
    reg.accept_mac(MAC, 1)
    reg.set_ip("add", MAC, "10.0.1.7")
    for t in (20.0, 30.0, 40.0):
        now[0] = t
        reg.admit(MAC)
        expected = int(t * 1_000_000)
        assert reg.devices()[0].join_ts == expected
        assert reg.device_by_ip("10.0.1.7").join_ts == expected
        assert reg.get(MAC.upper()).join_ts == expected
    assert reg.flush_join_times() == 1
    assert Registry(parse_settings(CONFIG), Store(tmp_path / "c.sqlite")).get(MAC).join_ts \
        == 40_000_000
