"""Registry semantics: MACs, SET_IP slots, tickets, admission, VLAN allocation, restart.

Time is an injected clock so ticket expiry is tested without sleeping; the
store is a real SQLite file so "restart" is a second Registry on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesec.config import Settings, parse_settings
from edgesec.registry import (
    STATUS_CONNECTED,
    TICKET_LIFETIME_S,
    RegistryError,
    normalise_mac,
    sdbm_hash,
)
from registry_world import World

A, B, C = "11:22:33:44:55:66", "aa:bb:cc:dd:ee:ff", "00:01:02:03:04:05"


def settings(vlans: range = range(1, 6), **system: object) -> Settings:
    lines = ["[system]", *(f"{k} = {v}" for k, v in system.items()),
             "[ap]", "wpaPassphrase = default-pass", "[interfaces]",
             *(f'if{v} = "{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0"' for v in vlans)]
    if "defaultOpenVlanId" not in system:
        lines.insert(1, f"defaultOpenVlanId = {vlans[0]}")
    return parse_settings("\n".join(lines))


@pytest.fixture
def world(make_world) -> World:
    return make_world(settings())


# -- MAC normalisation ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["11:22:33:44:55:66", "11-22-33-44-55-66", "112233445566",
                                  "1122.3344.5566", "11:22:33:44:55:66".upper()])
def test_mac_notations_normalise(text: str) -> None:
    assert normalise_mac(text) == A
    assert normalise_mac(text.upper()) == A


@pytest.mark.parametrize("text", ["", "11:22:33:44:55", "11:22:33:44:55:66:77",
                                  "11:22:33:44:55:6", "11:22:33:44:55:6z", "11:22-33:44:55:66",
                                  "11:22:33:44:55:66 ", "1:2:3:4:5:6", "11::22:33:44:55:66",
                                  "\uff11\uff11:22:33:44:55:66"])
def test_bad_macs_are_refused(text: str) -> None:
    with pytest.raises(RegistryError, match="invalid MAC"):
        normalise_mac(text)


@given(st.text(max_size=20))
def test_normalise_mac_fuzz(text: str) -> None:
    try:
        mac = normalise_mac(text)
    except RegistryError:
        return
    assert normalise_mac(mac) == mac and len(mac) == 17 and mac == mac.lower()


def test_same_device_under_any_notation(world: World) -> None:
    world.reg.accept_mac("11-22-33-44-55-66", 2)
    world.reg.set_nat("1122.3344.5566", True)
    assert [d.mac for d in world.reg.devices()] == [A]
    assert world.reg.get("112233445566").nat


# -- SET_IP -------------------------------------------------------------------------------


def _ip_events(world: World) -> list[tuple]:
    return [(e.mac, e.data["ip"], e.data["type"], e.data["primary"])
            for e in world.events if e.kind == "ip"]


def test_set_ip_fills_primary_then_secondary(world: World) -> None:
    r = world.reg
    r.set_ip("add", A, "10.0.1.10")
    r.set_ip("old", A, "10.0.2.10")
    d = r.get(A)
    assert (d.primary_ip, d.secondary_ip) == ("10.0.1.10", "10.0.2.10")
    assert r.device_by_ip("10.0.2.10").mac == A
    assert _ip_events(world) == [(A, "10.0.1.10", 1, 1), (A, "10.0.2.10", 2, 0)]


def test_set_ip_same_address_again_is_a_no_op(world: World) -> None:
    world.reg.set_ip("add", A, "10.0.1.10")
    world.events.clear()
    world.reg.set_ip("old", A, "10.0.1.10")
    assert world.events == []


def test_set_ip_third_address_replaces_secondary(world: World) -> None:
    r = world.reg
    for ip in ("10.0.1.10", "10.0.1.11", "10.0.1.12"):
        r.set_ip("add", A, ip)
    d = r.get(A)
    assert (d.primary_ip, d.secondary_ip) == ("10.0.1.10", "10.0.1.12")
    assert r.device_by_ip("10.0.1.11") is None


def test_set_ip_del_clears_the_matching_slot(world: World) -> None:
    r = world.reg
    r.set_ip("add", A, "10.0.1.10")
    r.set_ip("add", A, "10.0.1.11")
    r.set_ip("del", A, "10.0.1.10")
    d = r.get(A)
    assert (d.primary_ip, d.secondary_ip) == ("", "10.0.1.11")
    assert _ip_events(world)[-1] == (A, "10.0.1.10", 3, 1)
    r.set_ip("del", A, "10.0.1.99")  # not held: nothing cleared
    assert r.get(A).secondary_ip == "10.0.1.11"


def test_set_ip_moves_an_address_between_devices(world: World) -> None:
    r = world.reg
    r.set_ip("add", A, "10.0.1.10")
    r.set_ip("add", B, "10.0.1.10")
    assert r.get(A).primary_ip == "" and r.get(B).primary_ip == "10.0.1.10"
    assert r.device_by_ip("10.0.1.10").mac == B


def test_set_ip_arp_and_bad_input(world: World) -> None:
    r = world.reg
    assert r.set_ip("arp", A, "junk") is None
    assert r.devices() == []
    for kind, ip in [("tftp", "10.0.1.2"), ("add", "10.9.9.9"), ("add", "10.0.1.300"),
                     ("add", "::1")]:
        with pytest.raises(RegistryError):
            r.set_ip(kind, A, ip)
    assert r.devices() == []


def test_set_ip_of_unknown_device_is_not_allowed_when_closed(world: World) -> None:
    d = world.reg.set_ip("add", A, "10.0.1.4")
    assert not d.allow and d.vlanid == 1
    assert world.reg.admit(A).accept is False


# -- VLAN changes and PSKs ---------------------------------------------------------------


def test_accept_mac_to_another_vlan_forgets_old_addresses(world: World) -> None:
    r = world.reg
    r.accept_mac(A, 1)
    r.set_ip("add", A, "10.0.1.10")
    r.accept_mac(A, 1)
    assert r.get(A).primary_ip == "10.0.1.10"
    r.accept_mac(A, 2)
    assert r.get(A).ips == () and r.device_by_ip("10.0.1.10") is None
    with pytest.raises(RegistryError, match="VLAN 9"):
        r.accept_mac(A, 9)
    assert r.get(A).vlanid == 2


@pytest.mark.parametrize(("psk", "ok"), [("12345678", True), ("x" * 63, True),
                                         ("ab" * 32, True), ("1234567", False),
                                         ("x" * 64, False), ("caf\u00e9-pass", False),
                                         ("tab\tpass1", False)])
def test_psk_rules(world: World, psk: str, ok: bool) -> None:
    if ok:
        assert world.reg.assign_psk(A, psk).psk == psk
    else:
        with pytest.raises(RegistryError):
            world.reg.assign_psk(A, psk)
        assert world.reg.get(A) is None


# -- tickets --------------------------------------------------------------------------------


def test_ticket_is_single_use_and_bound_to_the_first_device(world: World) -> None:
    r = world.reg
    t = r.register_ticket(A, "camera", 3)
    assert len(t.passphrase) == 16 and t.passphrase.isdigit()
    adm = r.admit(B, t.passphrase)
    assert adm.accept and adm.vlan == 3 and adm.psk == t.passphrase and adm.label == "camera"
    d = r.get(B)
    assert d.allow and d.vlanid == 3 and d.psk == t.passphrase and d.label == "camera"
    # used: nobody else gets in with it
    assert not r.admit(C, t.passphrase).accept
    assert not r.admit(C).accept
    # the bound device keeps its passphrase on later joins
    assert r.admit(B).psk == t.passphrase


def test_ticket_expires_after_its_lifetime(world: World) -> None:
    r = world.reg
    t = r.register_ticket(A, "late", 2)
    world.clock.now += TICKET_LIFETIME_S + 1
    assert not r.admit(B, t.passphrase).accept
    assert r.get(B) is None and r.tickets() == []


def test_ticket_just_before_expiry_still_works(world: World) -> None:
    t = world.reg.register_ticket(A, "ok", 2)
    world.clock.now += TICKET_LIFETIME_S - 1
    assert world.reg.admit(B, t.passphrase).accept


def test_several_open_tickets_each_admit_one_device(world: World) -> None:
    r = world.reg
    t1 = r.register_ticket(A, "one", 2)
    world.clock.now += 1
    t2 = r.register_ticket(A, "two", 3)
    assert r.admit(B, t2.passphrase).vlan == 3
    assert r.admit(C).vlan == 2  # no passphrase given: the oldest open ticket is offered
    assert r.get(C) is None  # ... and bound only once C completes the handshake
    r.set_status(C, STATUS_CONNECTED)
    assert r.get(C).label == "one" and r.get(C).psk == t1.passphrase
    assert r.tickets() == []


def test_ticket_input_checks(world: World) -> None:
    with pytest.raises(RegistryError):
        world.reg.register_ticket("nonsense", "x", 2)
    with pytest.raises(RegistryError):
        world.reg.register_ticket(A, "x", 42)
    with pytest.raises(RegistryError):
        world.reg.register_ticket(A, "l" * 255, 2)
    assert world.reg.tickets() == []


# -- admission ---------------------------------------------------------------------------------


def test_closed_network_rejects_unknown_devices(world: World) -> None:
    adm = world.reg.admit(A)
    assert not adm.accept and "unknown" in adm.reason
    assert world.reg.get(A) is None


def test_known_device_is_admitted_with_its_vlan_and_psk(world: World) -> None:
    r = world.reg
    r.accept_mac(A, 4)
    adm = r.admit(A)
    assert (adm.accept, adm.vlan, adm.psk) == (True, 4, "default-pass")
    r.assign_psk(A, "own-passphrase")
    assert r.admit(A).psk == "own-passphrase"
    assert r.get(A).join_ts == int(world.clock.now * 1_000_000)


def test_denied_device_is_rejected_in_every_mode(make_world) -> None:
    for open_net in (False, True):
        w = make_world(settings(allowAllConnections=str(open_net).lower()))
        w.reg.deny_mac(A)
        t = w.reg.register_ticket(B, "x", 2)
        assert not w.reg.admit(A).accept
        assert not w.reg.admit(A, t.passphrase).accept


def test_open_network_admits_unknown_devices(make_world) -> None:
    w = make_world(settings(allowAllConnections="true", allowAllNat="true",
                            defaultOpenVlanId=2))
    adm = w.reg.admit(A)
    assert adm.accept and adm.vlan == 2 and adm.psk == "default-pass"
    d = w.reg.get(A)
    assert d.allow and d.nat and d.vlanid == 2 and d.id


def test_status_of_known_and_unknown_devices(world: World) -> None:
    world.reg.accept_mac(A, 1)
    world.reg.set_status(A, STATUS_CONNECTED)
    assert world.reg.get(A).status == STATUS_CONNECTED
    assert world.reg.set_status(B, STATUS_CONNECTED) is None
    assert world.reg.get(B) is None
    aps = [(e.mac, e.data["status"]) for e in world.events if e.kind == "ap"]
    assert aps == [(A, 1), (B, 1)]


# -- VLAN allocation ------------------------------------------------------------------------------


def test_sdbm_vectors_of_the_original() -> None:
    assert sdbm_hash("04:f0:21:5a:f4:c4") % 11 == 10
    assert sdbm_hash("00:01:02:03:04:05") % 11 == 2


@pytest.mark.parametrize(("mac", "vlan"), [("04:f0:21:5a:f4:c4", 10), ("00:01:02:03:04:05", 2)])
def test_allocate_vlans_by_hash_over_eleven_vlans(make_world, mac: str, vlan: int) -> None:
    w = make_world(settings(range(0, 11), allowAllConnections="true", allocateVlans="true",
                            defaultOpenVlanId=0))
    assert w.reg.allocate_vlan(mac) == vlan
    assert w.reg.admit(mac).vlan == vlan


def test_without_allocate_vlans_the_default_vlan_is_used(make_world) -> None:
    w = make_world(settings(range(0, 11), allowAllConnections="true", defaultOpenVlanId=7))
    assert w.reg.admit("04:f0:21:5a:f4:c4").vlan == 7


@pytest.mark.slow  # 1000 fsynced admissions
def test_vlan_pool_gives_each_of_1000_devices_its_own_vlan(tmp_path: Path) -> None:
    cfg = parse_settings("\n".join([
        "[system]", "allowAllConnections = true", "allocateVlans = true",
        "defaultOpenVlanId = 1",
        "[interfaces]", 'if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"',
        "vlanPoolPrefix = 10.128.0.0/16", "vlanPoolPrefixLen = 28", "vlanPoolFirstVlan = 100",
    ]))
    w = World(tmp_path, cfg)
    try:
        vlans = [w.reg.admit(f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}").vlan
                 for i in range(1000)]
        assert len(set(vlans)) == 1000
        assert all(cfg.interfaces.subnet_for_vlan(v) is not None for v in vlans)
        assert min(vlans) >= 100 and 1 not in vlans
        # a returning device keeps its VLAN
        assert w.reg.admit("02:00:00:00:00:05").vlan == vlans[5]
        # after a restart the next device still gets an unused VLAN
        again = w.open()
        assert again.admit("02:00:00:00:ff:ff").vlan not in set(vlans)
    finally:
        w.close()


# -- bridges ---------------------------------------------------------------------------------------


def test_bridges_are_unordered_pairs(world: World) -> None:
    r = world.reg
    r.add_bridge(B, A)
    r.add_bridge(A, B)
    assert r.bridges() == [(A, B)] and r.has_bridge(B, A)
    assert r.bridge_partners(A) == [B] and r.bridge_partners(B) == [A]
    with pytest.raises(RegistryError):
        r.add_bridge(A, A.upper())
    assert r.remove_bridge(B, A) and not r.remove_bridge(B, A)


def test_expiring_bridges(world: World) -> None:
    r = world.reg
    r.add_bridge(A, B, reason="mdns", ttl=30)
    r.add_bridge(A, C)
    world.clock.now += 31
    assert r.expire_bridges() == 1
    assert r.bridges() == [tuple(sorted((A, C)))]


# -- restart ---------------------------------------------------------------------------------------


def test_restart_restores_devices_bridges_and_tickets(world: World) -> None:
    r = world.reg
    r.accept_mac(A, 2)
    r.set_nat(A, True)
    r.assign_psk(A, "passphrase-a")
    r.set_ip("add", A, "10.0.2.10")
    r.set_ip("add", A, "10.0.2.11")
    r.set_label(A, "thermostat")
    r.deny_mac(B)
    r.add_bridge(A, B)
    r.add_bridge(A, C, reason="mdns", ttl=600)
    t = r.register_ticket(A, "pending", 4)
    before = {d.mac: d for d in r.devices()}

    again = world.open()
    assert {d.mac: d for d in again.devices()} == before
    assert [d.mac for d in again.devices()] == [d.mac for d in r.devices()]
    assert sorted(again.bridges()) == sorted(r.bridges())
    reasons = {(b.a, b.b): (b.reason, b.expires) for b in again.bridge_records()}
    assert reasons == {(b.a, b.b): (b.reason, b.expires) for b in r.bridge_records()}
    assert reasons[tuple(sorted((A, C)))] == ("mdns", int(world.clock.now) + 600)
    assert again.device_by_ip("10.0.2.11").mac == A
    assert [x.passphrase for x in again.tickets()] == [t.passphrase]
    assert again.admit("02:00:00:00:00:01", t.passphrase).vlan == 4


def test_used_ticket_stays_used_after_restart(world: World) -> None:
    t = world.reg.register_ticket(A, "once", 2)
    assert world.reg.admit(B, t.passphrase).accept
    again = world.open()
    assert not again.admit(C, t.passphrase).accept
    assert again.get(B).psk == t.passphrase
