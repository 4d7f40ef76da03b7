"""Device lifecycle under attack: removal, pool reclaim, lease reports, labels, ticket offers.

A real SQLite file (restart = a second Registry on it) and an injected clock.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import registry_world
from edgesec.config import Settings
from edgesec.reclaim import reclaimable
from edgesec.registry import STATUS_CONNECTED, Device, Registry, RegistryError
from edgesec.supervisor.commands import CommandTable, NetworkCommands
from edgesec.supervisor.server import SupervisorServer
from registry_world import World

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def pool_settings(open_net: bool = True) -> Settings:
    """Four pool VLANs from 100, given back after 600 s unseen."""
    return registry_world.pool_settings(
        open_net, "10.200.0.0/26", 'if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"',
        "vlanPoolFirstVlan = 100", "vlanPoolLifetime = 600")


@pytest.fixture
def world(make_world) -> World:
    return make_world(pool_settings())


@pytest.fixture
def closed(make_world) -> World:
    return make_world(pool_settings(open_net=False))


# -- the pool ----------------------------------------------------------------------------


def test_pool_is_exhausted_by_strangers_and_a_deny_frees_a_vlan(world: World) -> None:
    r = world.reg
    macs = [f"02:00:00:00:01:{i:02x}" for i in range(5)]
    vlans = [r.admit(m).vlan for m in macs[:4]]
    assert sorted(vlans) == [100, 101, 102, 103]
    assert not r.admit(macs[4]).accept  # exhausted: rejected (policy error in RADIUS)
    r.deny_mac(macs[1])
    assert r.admit(macs[4]).vlan == vlans[1]  # the denied squatter held its VLAN no longer
    assert not r.admit(macs[1]).accept  # and stays out


def test_remove_device_frees_everything_durably_and_says_so(world: World) -> None:
    r = world.reg
    r.admit(A)
    r.accept_mac(B, 1)
    r.set_ip("add", A, "10.200.0.2")
    r.add_bridge(A, B)
    world.events.clear()
    removed = r.remove_device(A)
    assert removed.mac == A and r.get(A) is None and r.device_by_ip("10.200.0.2") is None
    assert r.bridges() == [] and r.bridge_partners(B) == []
    kinds = [(e.kind, e.mac, e.data.get("device")) for e in world.events]
    assert ("bridge_removed", A, None) in kinds or ("bridge_removed", B, None) in kinds
    assert kinds[-1] == ("device", A, None) and world.events[-1].data["removed"] == removed
    again = world.open()  # durable: a restart does not bring it back
    assert again.get(A) is None and again.bridges() == [] and again.get(B) is not None
    assert again.admit(C).vlan == removed.vlanid  # its pool VLAN is free
    with pytest.raises(RegistryError, match="no device"):
        r.remove_device(A)


def test_remove_device_removes_its_ticket_binding(closed: World) -> None:
    r = closed.reg
    t = r.register_ticket(B, "cam", 2)
    assert r.admit(A, t.passphrase).accept
    r.remove_device(A)
    rows = closed.stores[0].load_tickets()
    assert [row for row in rows if row.used_by == A] == []
    assert not r.admit(A).accept  # removed means unknown: the spent ticket is gone too


def test_reclaim_after_the_lifetime_only_of_unseen_anonymous_pool_devices(world: World) -> None:
    r = world.reg
    for mac in (A, B, C):
        r.admit(mac)
    r.set_label(B, "printer")  # administrator intent pins it
    r.set_ip("add", C, "10.200.0.34", "br102")  # holds a lease
    world.now += 599
    assert r.reclaim_pool_vlans(600) == []
    world.now += 2
    assert [d.mac for d in r.reclaim_pool_vlans(600)] == [A]
    assert r.get(A) is None and r.get(B) is not None and r.get(C) is not None
    r.set_ip("del", C, "10.200.0.34", "br102")  # lease expired: seen now, reclaimed later
    world.now += 599
    assert r.reclaim_pool_vlans(600) == []
    world.now += 2
    assert [d.mac for d in r.reclaim_pool_vlans(600)] == [C]
    assert world.open().get(C) is None
    assert r.reclaim_pool_vlans(0) == []  # 0 switches reclaiming off


def test_reclaim_rule_leaves_connected_and_never_joined_devices() -> None:
    pool = frozenset({100})
    t = 1_000_000.0
    old = int((t - 10_000) * 1_000_000)
    devs = [Device(A, vlanid=100, join_ts=old, status=STATUS_CONNECTED),
            Device(B, vlanid=100, join_ts=0),  # ACCEPT_MAC'd, never joined
            Device(C, vlanid=100, join_ts=old),
            Device("02:00:00:00:00:0d", vlanid=1, join_ts=old),  # not a pool VLAN
            Device("02:00:00:00:00:0e", vlanid=100, join_ts=old, psk="own-passphrase"),
            Device("02:00:00:00:00:0f", vlanid=100, join_ts=old, allow=False)]
    assert reclaimable(devs, pool, {}, t, 600) == [C]
    assert reclaimable(devs, pool, {C: t - 5}, t, 600) == []  # a recent lease report


# -- lease reports (SET_IP with an interface) ---------------------------------------------


def test_lease_reports_for_unknown_macs_create_nothing(closed: World) -> None:
    r = closed.reg
    for i in range(20):
        with pytest.raises(RegistryError, match="unknown device"):
            r.set_ip("add", f"02:99:00:00:00:{i:02x}", "10.0.1.50", "br1")
    assert r.devices() == [] and closed.stores[0].load_devices() == []
    t = r.register_ticket(B, "thermostat", 2)
    assert r.admit(A, t.passphrase).accept  # the victim still joins with its ticket


def test_lease_report_must_match_the_device_vlan_and_bridge(world: World) -> None:
    r = world.reg
    r.accept_mac(A, 1)
    r.deny_mac(B)
    with pytest.raises(RegistryError, match="VLAN 2"):
        r.set_ip("add", A, "10.0.2.7", "br2")
    with pytest.raises(RegistryError, match="came in on br2"):
        r.set_ip("add", A, "10.0.1.7", "br2")
    with pytest.raises(RegistryError, match="came in on br2"):
        r.set_ip("del", A, "10.0.1.7", "br2")  # a forged release from elsewhere
    with pytest.raises(RegistryError, match="denied"):
        r.set_ip("add", B, "10.0.1.8", "br1")
    assert r.get(A).ips == () and r.get(B).ips == ()
    assert r.set_ip("add", A, "10.0.1.7", "br1").primary_ip == "10.0.1.7"
    assert r.set_ip("old", A, "10.0.1.7", "-").primary_ip == "10.0.1.7"  # old at start-up
    # the administrator's three-word SET_IP keeps the original's meaning
    assert r.set_ip("add", C, "10.0.2.9").primary_ip == "10.0.2.9"


# -- tickets are bound after the handshake -----------------------------------------------


def test_an_offered_ticket_is_not_burnt_by_a_station_that_never_connects(closed: World) -> None:
    r = closed.reg
    t = r.register_ticket(C, "camera", 2)
    for i in range(50):  # strangers associating: each is offered the ticket
        adm = r.admit(f"02:66:00:00:00:{i:02x}")
        assert adm.accept and adm.vlan == 2 and adm.psk == t.passphrase
    assert r.devices() == [] and [x.passphrase for x in r.tickets()] == [t.passphrase]
    assert r.admit(A).accept
    r.set_status(A, STATUS_CONNECTED)  # A knew the passphrase: its handshake completed
    d = r.get(A)
    assert d.allow and d.vlanid == 2 and d.label == "camera" and d.status == STATUS_CONNECTED
    assert r.tickets() == []
    r.set_status("02:66:00:00:00:01", STATUS_CONNECTED)  # too late: the ticket is bound
    assert r.get("02:66:00:00:00:01") is None
    assert not r.admit(B).accept
    assert closed.open().get(A).psk == t.passphrase


def test_offer_table_is_bounded(closed: World) -> None:
    r = closed.reg
    r.register_ticket(C, "x", 2)
    for i in range(1100):
        r.admit(f"02:77:00:00:{i >> 8:02x}:{i & 255:02x}")
    assert len(r._offers) == 1024


# -- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["a,b", "line\nbreak", "tab\there", "nul\0", "\u2028",
                                   "rtl\u202eoverride", "del\x7f", "c1\x85"])
def test_labels_that_would_break_a_get_all_line_are_refused(world: World, label: str) -> None:
    with pytest.raises(RegistryError):
        world.reg.register_ticket(A, label, 1)
    with pytest.raises(RegistryError):
        world.reg.set_label(A, label)
    assert world.reg.tickets() == [] and world.reg.get(A) is None


def _server(reg: Registry) -> SupervisorServer:
    table = CommandTable()
    NetworkCommands(reg).install(table)
    return SupervisorServer(table, reg.bus, None)


@hsettings(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_any_label_is_refused_or_round_trips_as_one_field(closed: World, label: str) -> None:
    """Through the supervisor: REGISTER_TICKET answers FAIL or a passphrase, and the
    device the ticket admits has an 11-field GET_ALL line carrying the label as is."""
    srv = _server(closed.reg)
    raw = f"REGISTER_TICKET {C} {label} 2".encode("utf-8", "surrogatepass")
    reply = (srv.handle(raw, "\0c", "unix") or b"").decode()
    if reply == "FAIL\n":
        return
    passphrase = reply.strip()
    assert passphrase.isdigit(), reply
    mac = "02:55:00:00:00:01"
    closed.reg.remove_device(mac) if closed.reg.is_known(mac) else None
    assert closed.reg.admit(mac, passphrase).accept
    line = srv.handle(f"GET_MAP {mac}".encode(), "\0c", "unix").decode()
    fields = line.rstrip("\n").split(",")
    assert len(fields) == 11 and line.count("\n") == 1
    assert fields[6] == label.rstrip("\t\n\v\f\r ")
