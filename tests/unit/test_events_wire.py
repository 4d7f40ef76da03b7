"""The exact wire text of typed events: supervisor ``SUBSCRIBE_EVENTS`` lines and SSE.

Every typed event derives its wire mapping from its dataclass fields
(``edgesec.events.payload``); these tables pin the bytes subscribers get, so
reordering or renaming a field cannot change a wire format unnoticed.  The
quarantine and alert rows come from the real publishers (a Registry over
SQLite and DetectService.handle_alert), the others from constructed events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesec.api.views import sse_message
from edgesec.config import parse_settings
from edgesec.detect.alerts import Alert
from edgesec.detect.service import DetectService
from edgesec.events import (
    AccessAdded,
    AlertRaised,
    ApStatus,
    BridgeRemoved,
    Event,
    EventBus,
    FirewallHealed,
    GroupChanged,
    IpChanged,
    MdnsAnnounced,
    MdnsBridge,
    PolicyChanged,
    QuarantineChanged,
    payload,
)
from edgesec.groups import Access
from edgesec.registry import Registry
from edgesec.store import Store
from edgesec.supervisor.protocol import event_line

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
TS = 1_700_000_000.0
STAMP = '{"ts": "2023-11-14T22:13:20+00:00", '


def sse(event: Event) -> str:
    return sse_message(event, TS).decode()


def published(tmp: Path) -> list[Event]:
    """Quarantine, alert (with containment) and release from the real publishers."""
    settings = parse_settings("\n".join([
        "[system]", "defaultOpenVlanId = 1", "[detect]", "enabled = true",
        "containment = quarantine", "[interfaces]",
        'if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"']), base=tmp)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    reg = Registry(settings, Store(tmp / "c.sqlite"), bus)
    reg.accept_mac(A, 1)
    DetectService(settings, reg).handle_alert(
        Alert(TS, A, "port_scan", 3, "22 ports in 2 s", "10.0.1.10", "198.51.100.2", 6))
    reg.release(A, "looks fine now", source="operator")
    return [e for e in events if e.kind in ("alert", "quarantine")]


def test_quarantine_and_alert_events_are_typed_with_their_exact_wire_text(
        tmp_path: Path) -> None:
    alert, on, off = published(tmp_path)
    assert alert == AlertRaised(A, alert="port_scan", severity=3, message="22 ports in 2 s")
    assert on == QuarantineChanged(A, on=True, reason="port_scan", source="detect:port_scan")
    assert off == QuarantineChanged(A, on=False, reason="looks fine now", source="operator")
    assert [event_line(e) for e in (alert, on, off)] == [
        f"ALERT {A} port_scan 3\n",
        f"QUARANTINE {A} on port_scan\n",
        f"QUARANTINE {A} off looks_fine_now\n",
    ]
    assert [sse(e) for e in (alert, on, off)] == [
        f'data: {STAMP}"kind": "alert", "mac": "{A}", "data": {{"kind": "port_scan", '
        '"severity": 3, "message": "22 ports in 2 s"}}\n\n',
        f'data: {STAMP}"kind": "quarantine", "mac": "{A}", "data": {{"on": true, '
        '"reason": "port_scan", "source": "detect:port_scan"}}\n\n',
        f'data: {STAMP}"kind": "quarantine", "mac": "{A}", "data": {{"on": false, '
        '"reason": "looks fine now", "source": "operator"}}\n\n',
    ]


def test_an_alert_about_no_device_names_none() -> None:
    e = AlertRaised("", alert="new device flood", severity=2, message="x")
    assert event_line(e) == "ALERT - new_device_flood 2\n"
    assert e.data == {"kind": "new device flood", "severity": 2, "message": "x"}


RULE = Access(A, B, "tcp", 80)


@pytest.mark.parametrize(("event", "line", "data"), [
    (IpChanged(A, ip="10.0.1.5", type=1, primary=1), f"IP {A} 10.0.1.5 1 1\n",
     '{"ip": "10.0.1.5", "type": 1, "primary": 1}'),
    (ApStatus(A, status=2), f"AP {A} 2\n", '{"status": 2}'),
    (BridgeRemoved(A, peer=B, reason="mdns expired"),
     f"BRIDGE_REMOVED {A} {B} mdns_expired\n",
     f'{{"peer": "{B}", "reason": "mdns expired"}}'),
    (GroupChanged(A, group="cams", action="added", members=(A,)),
     f"GROUP_CHANGED cams {A} added\n",
     f'{{"group": "cams", "action": "added", "members": ["{A}"]}}'),
    (GroupChanged(A, group="cams", action="removed", reason="manual", members=()),
     f"GROUP_CHANGED cams {A} removed\n",
     '{"group": "cams", "action": "removed", "reason": "manual", "members": []}'),
    (AccessAdded(A, rule=RULE, reason="manual"), f"ACCESS_ADDED {A} {B} tcp/80 manual\n",
     f'{{"peer": "{B}", "proto": "tcp", "port": 80, "service": "tcp/80", "rule": '
     f'{{"src": "{A}", "dst": "{B}", "proto": "tcp", "port": 80}}, "reason": "manual"}}'),
    (FirewallHealed("", table="edgesec", heals=2, reason="table deleted"),
     "FIREWALL_HEALED inet edgesec 2 table_deleted\n",
     '{"family": "inet", "table": "edgesec", "heals": 2, "reason": "table deleted"}'),
    (PolicyChanged(A, ts=1.5, command="ADD_NAT", args=[A], source="api"),
     f"POLICY 1.500 api ADD_NAT {A}\n",
     f'{{"ts": 1.5, "command": "ADD_NAT", "args": ["{A}"], "source": "api"}}'),
    (MdnsAnnounced(A, name="p.local", type="A", value="10.0.1.5", ip="10.0.1.5",
                   interface="br1", ttl=120), None,
     '{"action": "announce", "name": "p.local", "type": "A", "value": "10.0.1.5", '
     '"ip": "10.0.1.5", "interface": "br1", "ttl": 120}'),
    (MdnsBridge(A, peer=B, reason="query"), None,
     f'{{"action": "bridge", "peer": "{B}", "reason": "query"}}'),
])
def test_every_typed_event_keeps_its_wire_text(event: Event, line: str | None,
                                               data: str) -> None:
    assert event_line(event) == line
    assert sse(event) == (f'data: {STAMP}"kind": "{event.kind}", "mac": "{event.mac}", '
                          f'"data": {data}}}\n\n')
    assert dict(event.data) == payload(event)  # the compatibility view cannot drift


def test_an_untyped_event_is_still_carried_by_its_data() -> None:
    e = Event("ap", A, {"status": 1})
    assert event_line(e) == f"AP {A} 1\n" and payload(e) == {"status": 1}
