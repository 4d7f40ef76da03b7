"""Quarantine as registry state: durable, audited, evented, restored exactly on release.

The store is a real SQLite file, so "restart" is a second Registry on it; the
supervisor commands run through the real command table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import registry_world
from edgesec.config import parse_settings
from edgesec.detect.commands import QuarantineCommands
from edgesec.net import policy as P
from edgesec.registry import Registry, RegistryError
from edgesec.store import Store
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable, NetworkCommands, Request

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


SETTINGS = parse_settings("\n".join([
    "[system]", "defaultOpenVlanId = 1", "[ap]", "wpaPassphrase = default-pass",
    "[nat]", "natInterface = wan0", "[interfaces]",
    *(f'if{v} = "{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0"' for v in (1, 2))]))


class World(registry_world.World):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, SETTINGS, "c.sqlite")

    def rows(self) -> P.Rows:
        cfg = P.PolicyConfig.from_settings(SETTINGS)
        return P.elements(cfg, self.reg.devices(), self.reg.bridges())


@pytest.fixture
def w(tmp_path: Path):
    world = World(tmp_path)
    r = world.reg
    r.accept_mac(A, 1)
    r.accept_mac(B, 2)
    r.set_nat(A, True)
    r.set_ip("add", A, "10.0.1.10")
    r.set_ip("add", B, "10.0.2.10")
    r.add_bridge(A, B)
    yield world
    world.close()


def test_quarantine_suspends_nat_and_bridges_and_release_restores_them(w: World) -> None:
    before = w.rows()
    assert "10.0.1.10" in before[P.NAT] and before[P.BRIDGES]
    w.reg.quarantine(A, "scan", source="port_scan", evidence='{"alert": 1}')
    during = w.rows()
    assert during[P.QUARANTINED] == {A}
    assert not during[P.NAT] and not during[P.BRIDGES]
    assert during[P.LEASES] == before[P.LEASES]  # DHCP/DNS still pass anti-spoofing
    dev = w.reg.get(A)
    assert dev.quarantined and dev.nat and w.reg.has_bridge(A, B)  # kept aside, not lost
    w.reg.release(A)
    assert w.rows() == before


def test_quarantine_survives_a_restart(w: World) -> None:
    w.reg.quarantine(A, "scan")
    reg2 = w.open()
    assert reg2.get(A).quarantined and not reg2.get(B).quarantined
    assert [q.mac for q in reg2.quarantines()] == [A]
    reg2.release(A)
    reg3 = w.open()
    assert not reg3.get(A).quarantined and reg3.quarantines() == []


def test_events_and_audit_carry_the_decision_and_its_evidence(w: World) -> None:
    w.events.clear()
    w.reg.quarantine(A, "dns tunnel", source="dns_tunnel", evidence=json.dumps({"x": 1}))
    w.reg.release(A, "operator")
    texts = [proto.event_line(e) for e in w.events]
    assert f"QUARANTINE {A} on dns_tunnel\n" in texts
    assert f"QUARANTINE {A} off operator\n" in texts
    audit = w.reg.audit(A)
    assert [(a.action, a.source) for a in audit] == [("quarantine", "dns_tunnel"),
                                                       ("release", "manual")]
    assert json.loads(audit[0].evidence) == {"x": 1}


def test_expiry_releases_and_is_audited(w: World) -> None:
    w.reg.quarantine(A, "scan", ttl=60)
    w.clock.now += 59
    assert w.reg.expire_quarantines() == 0
    w.clock.now += 2
    assert w.reg.expire_quarantines() == 1
    assert not w.reg.get(A).quarantined
    assert w.reg.audit(A)[-1].action == "expire"


def test_unknown_device_bad_reason_and_release_of_a_free_device_are_refused(w: World) -> None:
    with pytest.raises(RegistryError):
        w.reg.quarantine("02:00:00:00:00:99", "scan")
    with pytest.raises(RegistryError):
        w.reg.quarantine(A, "a,b")
    with pytest.raises(RegistryError):
        w.reg.release(A)


def test_removing_a_device_removes_its_quarantine(w: World) -> None:
    w.reg.quarantine(A, "scan")
    w.reg.remove_device(A)
    assert w.reg.quarantines() == []
    assert w.open().quarantines() == []


def test_get_map_and_get_all_are_unchanged_by_quarantine(w: World) -> None:
    table = CommandTable()
    NetworkCommands(w.reg).install(table)
    QuarantineCommands(w.reg).install(table)

    def send(*words: str) -> str:
        return table.dispatch(Request(words[0], tuple(words[1:])))

    get_map, get_all = send("GET_MAP", A), send("GET_ALL")
    assert send("QUARANTINE", A, "scan", "3600") == proto.OK
    assert send("GET_MAP", A) == get_map and send("GET_ALL") == get_all
    assert send("GET_QUARANTINE") == f"{A},scan,supervisor,1700000000,1700003600\n"
    assert send("QUARANTINE", A, "scan", "0") == proto.FAIL
    assert send("QUARANTINE", "nonsense") == proto.FAIL
    assert send("RELEASE", A) == proto.OK
    assert send("RELEASE", A) == proto.FAIL
    assert send("GET_QUARANTINE") == proto.OK


def test_mdns_never_auto_bridges_a_quarantined_device(w: World) -> None:
    from edgesec.mdns.bridging import AutoBridger, Decision

    w.reg.remove_bridge(A, B)
    w.reg.quarantine(A, "scan")
    bridger = AutoBridger(w.reg)
    assert not bridger.apply(Decision(True, A, B, "discovered"))
    assert not w.reg.has_bridge(A, B)
    w.reg.release(A)
    assert bridger.apply(Decision(True, A, B, "discovered"))


def test_mdns_does_not_reflect_onto_a_bridge_of_only_quarantined_devices(w: World) -> None:
    import socket
    from types import SimpleNamespace

    from edgesec.mdns.service import MdnsService

    svc = SimpleNamespace(registry=w.reg, settings=SETTINGS, _contained_cache=(-1, frozenset()))
    contained = MdnsService._contained.__get__(svc)  # type: ignore[attr-defined]
    assert not contained("br1") and not contained("br2")
    w.reg.quarantine(A, "scan")
    assert contained("br1") and not contained("br2")
    w.reg.release(A)
    assert not contained("br1")

    from edgesec.mdns.reflector import Reflector, _Endpoint

    refl = Reflector([], None)  # type: ignore[arg-type]
    eps = {n: _Endpoint(SimpleNamespace(name=n), socket.AF_INET, None)  # type: ignore[arg-type]
           for n in ("br1", "br2", "br3")}
    refl.endpoints = {(n, socket.AF_INET): ep for n, ep in eps.items()}
    refl.skip_target = lambda name: name == "br1"
    assert [e.iface.name for e in refl._targets(eps["br2"])] == ["br3"]


def test_a_schema_3_database_migrates_to_4_keeping_its_rows(tmp_path: Path) -> None:
    import sqlite3

    from edgesec.store import MIGRATIONS, SCHEMA_VERSION

    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    for v in (1, 2, 3):
        con.executescript(MIGRATIONS[v])
    con.execute("PRAGMA user_version=3")
    con.execute("INSERT INTO instance (id, mac, status, vlanid, primaryip, secondaryip, nat,"
                " allow, label, timestamp, pass) VALUES ('id-a', ?, 0, 1, '10.0.1.10', '', 1,"
                " 1, 'cam', 0, '')", (A,))
    con.commit()
    con.close()
    store = Store(db)
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        reg = Registry(SETTINGS, store)
        assert not reg.get(A).quarantined and reg.quarantines() == []
        reg.quarantine(A, "scan")
    finally:
        store.close()
    again = Store(db)
    try:
        assert [q.mac for q in again.load_quarantines()] == [A]
    finally:
        again.close()
