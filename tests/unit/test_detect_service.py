"""DetectService's decisions on alerts: record, publish, and contain by the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesec.config import parse_settings
from edgesec.detect.alerts import Alert, AlertStore
from edgesec.detect.service import DetectService
from edgesec.events import EventBus
from edgesec.registry import Registry
from edgesec.store import Store
from edgesec.supervisor import protocol as proto

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def make(tmp: Path, **detect: object) -> tuple[DetectService, Registry, list]:
    keys = {"enabled": "true", "containment": "quarantine", **detect}
    text = "\n".join([
        "[system]", "defaultOpenVlanId = 1", "[ap]", "wpaPassphrase = default-pass",
        "[detect]", *(f"{k} = {v}" for k, v in keys.items()), "[interfaces]",
        *(f'if{v} = "{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0"' for v in (1, 2, 3))])
    settings = parse_settings(text, base=tmp)
    events: list = []
    bus = EventBus()
    bus.subscribe(events.append)
    reg = Registry(settings, Store(tmp / "c.sqlite"), bus)
    for mac, vlan in ((A, 1), (B, 2), (C, 3)):
        reg.accept_mac(mac, vlan)
        reg.set_ip("add", mac, f"10.0.{vlan}.10")
    return DetectService(settings, reg), reg, events


def alert(mac: str, severity: int = 3, kind: str = "port_scan") -> Alert:
    return Alert(1_700_000_000.0, mac, kind, severity, "test", "10.0.1.10", "198.51.100.2", 6,
                 50000, 22, "1:abc=", 42, "br1")


def test_a_severe_alert_quarantines_with_the_alert_as_evidence(tmp_path: Path) -> None:
    svc, reg, events = make(tmp_path)
    svc.handle_alert(alert(A))
    assert reg.get(A).quarantined
    q = reg.quarantine_of(A)
    assert q.source == "detect:port_scan" and json.loads(q.evidence)["flow_id"] == 42
    texts = [proto.event_line(e) for e in events]
    assert f"ALERT {A} port_scan 3\n" in texts and f"QUARANTINE {A} on port_scan\n" in texts
    rows = AlertStore(tmp_path / "detect.sqlite").list()
    assert [(r.mac, r.kind, r.community_id) for r in rows] == [(A, "port_scan", "1:abc=")]
    eve = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    assert eve[0]["event_type"] == "alert" and eve[0]["flow_id"] == 42
    assert eve[0]["community_id"] == "1:abc=" and eve[0]["alert"]["severity"] == 2


@pytest.mark.parametrize("detect,mac,severity,held", [
    ({}, A, 2, False),  # below quarantineSeverity
    ({"quarantineSeverity": 2}, A, 2, True),
    ({"containment": "alert"}, A, 4, False),  # record only
    ({"containment": "alert", "quarantineDevices": A}, A, 3, True),  # per-device override
    ({"alertOnlyDevices": A}, A, 4, False),
    ({"exemptDevices": A}, A, 4, False),
    ({}, "02:00:00:00:00:99", 4, False),  # unknown device: nothing to contain
    ({}, "", 4, False),  # an alert about no device (new-device flood)
])
def test_containment_policy(tmp_path: Path, detect: dict, mac: str, severity: int,
                            held: bool) -> None:
    svc, reg, _ = make(tmp_path, **detect)
    svc.handle_alert(alert(mac, severity))
    assert [q.mac for q in reg.quarantines()] == ([mac] if held else [])
    assert svc.alerts == 1


def test_the_gateway_own_address_is_never_quarantined(tmp_path: Path) -> None:
    svc, reg, _ = make(tmp_path)
    reg.set_ip("add", B, "10.0.2.1")  # a record claiming a gateway address
    svc.handle_alert(alert(B, 4))
    assert reg.quarantines() == []


def test_quarantine_lifetime_from_config(tmp_path: Path) -> None:
    svc, reg, _ = make(tmp_path, quarantineSeconds=600)
    svc.handle_alert(alert(A))
    q = reg.quarantine_of(A)
    assert q.expires - q.created == 600


def test_world_lists_devices_nat_and_bridge_peers(tmp_path: Path) -> None:
    svc, reg, _ = make(tmp_path)
    reg.set_nat(A, True)
    reg.add_bridge(A, B)
    world = svc.world()
    assert world["gateway_ips"] == ["10.0.1.1", "10.0.2.1", "10.0.3.1"]
    devs = {d["mac"]: d for d in world["devices"]}
    assert devs[A]["nat"] and devs[A]["peers"] == ["10.0.2.10"]
    assert devs[B]["peers"] == ["10.0.1.10"] and devs[C]["peers"] == []
    json.dumps(world)


def test_world_counts_group_peers_and_access_openers_as_allowed(tmp_path: Path) -> None:
    """Traffic a group or an access rule allows is not a blocked attempt (no lateral alert)."""
    svc, reg, _ = make(tmp_path)
    reg.groups.add_member("cams", A)
    reg.groups.add_member("cams", B)
    reg.groups.add_access(C, A, "tcp", 80)
    devs = {d["mac"]: d for d in svc.world()["devices"]}
    assert devs[A]["peers"] == ["10.0.2.10"] and devs[B]["peers"] == ["10.0.1.10"]
    assert devs[C]["peers"] == ["10.0.1.10"]  # the opener; A only answers C
