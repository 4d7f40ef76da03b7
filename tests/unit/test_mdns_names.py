"""Name ownership: hijacked mDNS names are neither reflected nor bridged; auto-bridge lifetime."""

from __future__ import annotations

import ipaddress

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.config import parse_settings
from edgesec.mdns.bridging import AutoBridger, decide
from edgesec.mdns.decoder import decode
from edgesec.mdns.knowledge import Knowledge
from edgesec.mdns.names import NameOwners, host_label, identity_key, lease_hostnames
from edgesec.mdns.pipeline import Interface
from edgesec.mdns.service import MdnsService
from edgesec.registry import Registry
from edgesec.store import Store

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
IPS = {A: "10.0.2.10", B: "10.0.5.10", C: "10.0.2.11"}
CONFIG = """[system]
defaultOpenVlanId = 2
[interfaces]
if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"
if5 = "5,10.0.5.1,10.0.5.255,255.255.255.0"
[dhcp]
dhcpLeasefilePath = "{leases}"
[dns]
mdnsReflectIp4 = true
"""
IP = ipaddress.ip_address


def _answer(host: str, ip: str, ttl: int = 120) -> bytes:
    return dns.message.from_text(
        f"id 0\nopcode QUERY\nflags QR AA\n;ANSWER\n{host}. {ttl} IN A {ip}\n").to_wire()


def _query(name: str) -> bytes:
    return dns.message.make_query(name, "A").to_wire()


def _iface(name: str, net: str, gw: str, idx: int) -> Interface:
    return Interface(name, idx, ipaddress.IPv4Address(gw), ipaddress.IPv4Network(net))


BR2 = _iface("br2", "10.0.2.0/24", "10.0.2.1", 2)
BR5 = _iface("br5", "10.0.5.0/24", "10.0.5.1", 5)


# -- the pure ownership rule -----------------------------------------------------------
def test_first_seen_owner_keeps_its_name_for_the_hold():
    o = NameOwners(hold=60, window=30)
    assert o.claim("dev3.local", A, 120, 0) is None
    c = o.claim("dev3.local", C, 120, 1)
    assert c is not None and (c.owner, c.claimant, c.why) == (A, C, "first seen")
    assert o.claim("dev3.local", A, 120, 100) is None  # the owner extends: until 280
    assert o.claim("dev3.local", A, 120, 105) is None  # +5 s only: not written
    assert o.claim("dev3.local", C, 120, 279) is not None
    o.expire(281)
    assert o.claim("dev3.local", C, 120, 281) is None and o.owners("dev3.local", 282)[0] == {C}


def test_a_record_still_pointing_at_the_owner_is_no_takeover():
    o = NameOwners()
    o.claim("mac.local", A, 120, 0)
    assert o.claim("mac.local", C, 120, 1, points_to=A) is None  # a sleep proxy for A
    assert o.owners("mac.local", 2)[0] == {A}  # and it gains nothing
    assert o.claim("mac.local", C, 120, 1, points_to=C) is not None


def test_goodbye_and_unknown_sources_never_take_ownership():
    o = NameOwners()
    assert o.claim("x.local", A, 0, 0) is None  # a goodbye claims nothing
    assert o.claim("x.local", "", 120, 0) is None  # not a known device: free, not owned
    assert o.owners("x.local", 1) == (frozenset(), "")
    o.claim("x.local", A, 120, 0)
    assert o.claim("x.local", "", 0, 1) is not None  # nor says goodbye for another


def test_identity_beats_first_seen():
    o = NameOwners()
    assert o.claim("dev3.local", C, 120, 0) is None  # C was first ...
    o.set_identities([], [(A, "dev3")])  # ... but A's DHCP hostname is dev3
    assert o.claim("dev3.local", C, 120, 1).why == "DHCP hostname"
    assert o.claim("dev3.local", A, 120, 1) is None
    o.set_identities([(B, "Dev 3")], [(A, "dev3")])  # an administrator's label wins
    assert identity_key("Dev 3") == "dev-3" and o.claim("dev-3.local", A, 120, 2) is not None
    o.set_identities([(B, "dev3")], [(A, "dev3")])
    c = o.claim("dev3.local", A, 120, 2)
    assert c is not None and (c.owner, c.why) == (B, "registry label")
    # the same DHCP hostname on two devices: the one that announced first keeps it
    o = NameOwners()
    o.set_identities([], [(A, "cam"), (C, "cam")])
    assert o.claim("cam.local", C, 120, 0) is None
    assert o.claim("cam.local", A, 120, 1).why == "DHCP hostname, first seen"
    # identity covers plain host names only; instances are first-seen
    assert host_label("cam._http._tcp.local") == "" and host_label("Cam.local") == "cam"


def test_a_flooding_device_only_evicts_its_own_names():
    o = NameOwners(max_entries=10_000, per_owner=8)
    o.claim("victim.local", A, 120, 0)
    for i in range(1000):
        o.claim(f"junk{i}.local", C, 120, 0)
    assert len(o) == 9 and o.owners("victim.local", 1)[0] == {A}
    full = NameOwners(max_entries=4, per_owner=8)
    for i in range(6):
        full.claim(f"n{i}.local", A, 120, 0)
    assert len(full) == 4 and full.unrecorded == 2


def test_lease_hostnames():
    text = ("1700000000 02:00:00:00:00:0A 10.0.2.10 dev3 01:02:00:00:00:00:0a\n"
            "1700000000 02:00:00:00:00:0b 10.0.2.11 * *\n"
            "duid 00:01:00:01\n1700000000 1234 fd00::1 host6 00:01\ngarbage\n")
    assert lease_hostnames(text) == [(A, "dev3")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a.local", "b.local", "s._http._tcp.local"]),
                          st.sampled_from([A, B, C, ""]), st.integers(0, 300),
                          st.integers(0, 100)), max_size=60))
def test_no_claim_is_accepted_against_a_live_owner(claims):
    """Model check: while a device's hold on a name lives, nobody else's claim passes."""
    o = NameOwners(hold=50, window=10)
    model: dict[str, tuple[str, float]] = {}
    now = 0.0
    for name, who, ttl, step in claims:
        now += step
        o.expire(now)
        owner, until = model.get(name, ("", 0.0))
        held = until > now and owner
        conflict = o.claim(name, who, ttl, now)
        assert (conflict is not None) == bool(held and owner != who)
        # a free name is taken; its owner extends the hold by more than a quarter
        extends = not held or now + ttl + 50 > until + 50 / 4
        if conflict is None and who and ttl > 0 and extends:
            model[name] = (who, now + ttl + 50)


# -- the service: a hijacking answer is not reflected, the connection is not bridged --------
@pytest.fixture
def svc(tmp_path):
    leases = tmp_path / "dnsmasq.leases"
    s = parse_settings(CONFIG.format(leases=leases))
    reg = Registry(s, Store(None))
    for mac, vlan in ((A, 2), (B, 5), (C, 2)):
        reg.accept_mac(mac, vlan)
        reg.set_ip("add", mac, IPS[mac])
    service = MdnsService(s, reg)
    service.reflector.clock = lambda: 3.0  # the times the tests pass to the pipeline
    reg.bus.subscribe(service._on_registry_event)  # as start() does
    service.refresh_identities()
    return service


def _process(svc: MdnsService, data: bytes, src: str, iface: Interface, now: float):
    v = svc.pipeline.process(data, IP(src), 5353, 255, iface, now)
    if v.reflect:
        svc._on_packet(v.message, src, iface, [BR5 if iface is BR2 else BR2])
    return v


def test_hijacked_name_is_not_reflected_nor_bridged(svc):
    # A owns dev3.local; C announces its own name, then dev3.local at its own address
    assert _process(svc, _answer("dev3.local", IPS[A]), IPS[A], BR2, 0).reflect
    assert _process(svc, _answer("devc.local", IPS[C]), IPS[C], BR2, 0).reflect
    v = _process(svc, _answer("dev3.local", IPS[C]), IPS[C], BR2, 1)
    assert not v.reflect and v.reason == "name-conflict"
    assert "dev3.local" not in {a.name for a in svc.knowledge.announcements(2)
                                if a.value == IPS[C]}
    # B asks for dev3.local and connects to C's address: refused, with the reason
    assert _process(svc, _query("dev3.local"), IPS[B], BR5, 2).reflect
    assert not svc.first_packet(IPS[B], IPS[C], 5)
    assert svc.refusals == {"name-conflict": 1} and not svc.registry.has_bridge(B, C)
    d = decide(svc.knowledge, svc.registry.device_by_ip, IPS[B], IPS[C], "br5", 3,
               owners=svc.names)
    assert d.code == "name-conflict" and A in d.reason and "dev3.local" in d.reason
    status = svc.status()
    assert "name-conflict=1" in status and "1 refused (name-conflict 1)" in status
    # the rightful owner is still bridged when B connects to it
    assert svc.first_packet(IPS[B], IPS[A], 5) and svc.registry.has_bridge(A, B)


def test_dhcp_hostname_protects_a_name_never_announced(svc, tmp_path):
    (tmp_path / "dnsmasq.leases").write_text(f"1700000000 {A} {IPS[A]} dev3 *\n")
    svc.refresh_identities()
    v = _process(svc, _answer("dev3.local", IPS[C]), IPS[C], BR2, 0)
    assert v.reason == "name-conflict"
    assert svc.names.refused_at(IPS[C], 1)["dev3.local"].why == "DHCP hostname"


def test_goodbye_from_another_source_does_not_remove_a_record():
    k = Knowledge()
    k.learn(decode(_answer("dev3.local", IPS[A])), IPS[A], A, "br2", 0)
    k.learn(decode(_answer("dev3.local", IPS[A], ttl=0)), IPS[C], C, "br2", 1)
    assert k.announcers_of(IPS[A], 2) == {A}
    k.learn(decode(_answer("dev3.local", IPS[A], ttl=0)), IPS[A], A, "br2", 3)
    assert k.announcers_of(IPS[A], 4) == set()


# -- auto-bridge lifetime ----------------------------------------------------------------
def test_auto_bridges_expire_by_default_and_new_connections_extend_them(svc):
    reg = svc.registry
    clock = [1000.0]
    reg.clock = lambda: clock[0]
    assert svc.mdns.bridge_expiry == 3600
    k = svc.knowledge
    k.learn(decode(_answer("dev3.local", IPS[A])), IPS[A], A, "br2", 0)
    k.learn(decode(_query("dev3.local")), IPS[B], B, "br5", 0)
    d = decide(k, reg.device_by_ip, IPS[B], IPS[A], "br5", 1)
    ab = AutoBridger(reg, expiry=60)
    assert ab.apply(d) and reg.bridge(A, B).expires == 1060
    clock[0] += 10
    assert not ab.apply(d) and ab.refreshed == 0  # fresh enough: no write
    clock[0] += 10
    assert not ab.apply(d) and ab.refreshed == 1 and reg.bridge(A, B).expires == 1080
    clock[0] = 1081
    assert ab.expire() == 1 and not reg.has_bridge(A, B)
    # a permanent (manual) bridge is never given a lifetime
    reg.add_bridge(A, B)
    assert not ab.apply(d) and reg.bridge(A, B).expires == 0


def test_registry_label_protects_a_name_and_follows_label_changes(svc):
    svc.registry.set_label(A, "Front Door")  # a device event marks the identities stale
    svc.refresh_identities()
    v = _process(svc, _answer("front-door.local", IPS[C]), IPS[C], BR2, 0)
    assert v.reason == "name-conflict"
    assert svc.names.refused_at(IPS[C], 1)["front-door.local"].why == "registry label"
    assert _process(svc, _answer("front-door.local", IPS[A]), IPS[A], BR2, 0).reflect
    svc.registry.set_label(A, "")
    svc.refresh_identities()  # A still holds the name it announced first
    assert _process(svc, _answer("front-door.local", IPS[C]), IPS[C], BR2, 1).reason == (
        "name-conflict")
