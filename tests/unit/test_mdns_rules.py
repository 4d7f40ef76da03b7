"""Knowledge, bridging rule, rate limiter, admission pipeline and settings."""

from __future__ import annotations

import dataclasses
import ipaddress

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.config import ConfigError, DnsSettings, Settings, parse_settings
from edgesec.events import Event
from edgesec.mdns.bridging import AutoBridger, decide
from edgesec.mdns.decoder import Limits, decode
from edgesec.mdns.knowledge import Knowledge
from edgesec.mdns.pipeline import Interface, Pipeline, service_type
from edgesec.mdns.ratelimit import RateLimiter
from edgesec.mdns.settings import MdnsSettings, parse_service_list
from edgesec.registry import Registry
from edgesec.store import Store

A, B, C, V = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0f"
CONFIG = """[system]
defaultOpenVlanId = 2
[interfaces]
if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"
if5 = "5,10.0.5.1,10.0.5.255,255.255.255.0"
if7 = "7,10.0.7.1,10.0.7.255,255.255.255.0"
[dns]
mdnsReflectIp4 = true
mdnsServiceAllow = _http._tcp, _ipp._tcp
mdnsRateLimit = 20
"""


def _answer(host: str, ip: str, ttl: int = 120, service: bool = True) -> bytes:
    text = f"id 0\nopcode QUERY\nflags QR AA\n;ANSWER\n{host}. {ttl} IN A {ip}\n"
    if service:
        inst = host.split(".")[0]
        text += (
            f"_http._tcp.local. 4500 IN PTR {inst}._http._tcp.local.\n"
            f"{inst}._http._tcp.local. 120 IN SRV 0 0 80 {host}.\n"
        )
    return dns.message.from_text(text).to_wire()


def _query(name: str, qtype: str = "A") -> bytes:
    return dns.message.make_query(name, qtype).to_wire()


@pytest.fixture
def registry():
    s = parse_settings(CONFIG)
    reg = Registry(s, Store(None))
    for mac, vlan, ip in ((A, 2, "10.0.2.10"), (B, 5, "10.0.5.10"), (C, 7, "10.0.7.10"),
                          (V, 5, "10.0.5.20")):
        reg.accept_mac(mac, vlan)
        reg.set_ip("add", mac, ip)
    return reg


def test_knowledge_learns_expires_and_goodbye():
    k = Knowledge(discovery_ttl=60)
    changed = k.learn(decode(_answer("devicea.local", "10.0.2.10")), "10.0.2.10", A, "br2", 0)
    assert {(a.type_name, a.name) for a in changed} == {
        ("A", "devicea.local"), ("PTR", "_http._tcp.local"), ("SRV", "devicea._http._tcp.local")}
    assert k.announcers_of("10.0.2.10", 1) == {A}
    assert k.names_for("10.0.2.10", 1) == {
        "devicea.local", "devicea._http._tcp.local", "_http._tcp.local"}
    # re-announcing the same thing is not "changed"
    assert k.learn(decode(_answer("devicea.local", "10.0.2.10")), "10.0.2.10", A, "br2", 1) == []
    k.expire(200)  # A and SRV (ttl 120) gone, PTR (4500) stays
    assert k.announcers_of("10.0.2.10", 200) == set()
    assert [a.type_name for a in k.announcements(200)] == ["PTR"]
    k.learn(decode(_answer("devicea.local", "10.0.2.10", ttl=0, service=False)),
            "10.0.2.10", A, "br2", 201)
    assert k.announcers_of("10.0.2.10", 201) == set()


def test_knowledge_is_bounded():
    k = Knowledge(max_entries=10)
    for i in range(50):
        k.learn(decode(_answer(f"h{i}.local", f"10.0.2.{i + 2}", service=False)),
                "10.0.2.2", "", "br2", 0)
        k.learn(decode(_query(f"h{i}.local")), "10.0.5.10", "", "br5", 0)
    assert len(k) == 10
    assert len(k._queries) == 10


def _announce_and_expose(k: Knowledge, reg: Registry, iface: str = "br5") -> None:
    k.learn(decode(_answer("devicea.local", "10.0.2.10")), "10.0.2.10", A, "br2", 0)
    k.expose(iface, "10.0.2.10", A, 0)


def test_bridge_when_answer_was_reflected_onto_b_only_if_passive(registry):
    k = Knowledge()
    _announce_and_expose(k, registry)
    d = decide(k, registry.device_by_ip, "10.0.5.10", "10.0.2.10", "br5", 1)
    assert not d.bridge and "never discovered" in d.reason
    d = decide(k, registry.device_by_ip, "10.0.5.10", "10.0.2.10", "br5", 1, passive=True)
    assert d.bridge and {d.a, d.b} == {A, B}
    assert "devicea.local" in d.reason and d.reason.startswith("mdns:")
    events: list[Event] = []
    registry.bus.subscribe(events.append)
    ab = AutoBridger(registry, expiry=0)
    assert ab.apply(d) and registry.has_bridge(A, B)
    assert not ab.apply(d)  # already there
    added = [e for e in events if e.kind == "bridge_added"]
    assert len(added) == 1 and added[0].data["reason"] == d.reason


def test_bridge_when_b_queried_the_name(registry):
    k = Knowledge()
    k.learn(decode(_answer("devicea.local", "10.0.2.10")), "10.0.2.10", A, "br2", 0)
    k.learn(decode(_query("devicea._http._tcp.local", "SRV")), "10.0.7.10", C, "br7", 0)
    d = decide(k, registry.device_by_ip, "10.0.7.10", "10.0.2.10", "br7", 1)
    assert d.bridge and d.b == C and "queried" in d.reason


def test_no_bridge_for_device_that_never_discovered(registry):
    k = Knowledge()
    _announce_and_expose(k, registry, iface="br7")
    k.learn(decode(_query("other.local")), "10.0.7.10", C, "br7", 0)
    d = decide(k, registry.device_by_ip, "10.0.7.10", "10.0.2.10", "br7", 1)
    assert not d.bridge and "never discovered" in d.reason


def test_announcing_a_victims_address_is_not_bridged(registry):
    # A announces V's leased address as its own name; B then connects to V.
    k = Knowledge()
    k.learn(decode(_answer("evil.local", "10.0.5.20")), "10.0.2.10", A, "br2", 0)
    k.expose("br7", "10.0.5.20", A, 0)
    k.learn(decode(_query("evil.local")), "10.0.7.10", C, "br7", 0)
    d = decide(k, registry.device_by_ip, "10.0.7.10", "10.0.5.20", "br7", 1)
    assert not d.bridge and "not announced by its owner" in d.reason
    # and an address nobody leased is refused too
    k.learn(decode(_answer("ghost.local", "10.0.2.99")), "10.0.2.10", A, "br2", 0)
    d = decide(k, registry.device_by_ip, "10.0.7.10", "10.0.2.99", "br7", 1)
    assert not d.bridge and "leased" in d.reason


def test_switch_off_expiry_and_window(registry):
    k = Knowledge(discovery_ttl=30)
    _announce_and_expose(k, registry)
    k.learn(decode(_query("devicea.local")), "10.0.5.10", B, "br5", 0)
    assert not decide(k, registry.device_by_ip, "10.0.5.10", "10.0.2.10", "br5", 1,
                      enabled=False).bridge
    assert not decide(k, registry.device_by_ip, "10.0.5.10", "10.0.2.10", "br5", 31).bridge
    clock = [1000.0]
    registry.clock = lambda: clock[0]
    ab = AutoBridger(registry, expiry=60)
    assert ab.apply(decide(k, registry.device_by_ip, "10.0.5.10", "10.0.2.10", "br5", 1))
    clock[0] += 30
    assert ab.expire() == 0 and registry.has_bridge(A, B)
    clock[0] += 31
    assert ab.expire() == 1 and not registry.has_bridge(A, B)


def test_rate_limiter_refills_and_bounds_keys():
    rl = RateLimiter(rate=10, burst=5, max_keys=3)
    assert [rl.allow("x", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert rl.allow("y", 0.0)  # other keys unaffected
    assert rl.allow("x", 0.1)  # one token refilled
    assert not rl.allow("x", 0.1)
    for i in range(10):
        rl.allow(i, 0.2)
    assert len(rl) == 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 0.05), min_size=1, max_size=300))
def test_rate_limiter_never_exceeds_budget(gaps):
    rl = RateLimiter(rate=100, burst=10)
    now, allowed = 0.0, 0
    for g in gaps:
        now += g
        allowed += rl.allow("k", now)
    assert allowed <= 10 + 100 * now + 1e-6


def _iface(name="br5", net="10.0.5.0/24", gw="10.0.5.1", idx=5) -> Interface:
    return Interface(name, idx, ipaddress.IPv4Address(gw), ipaddress.IPv4Network(net),
                     (ipaddress.IPv6Network("fd00:5::/64"),),
                     (ipaddress.IPv6Address("fe80::1"), ipaddress.IPv6Address("fd00:5::1")))


def _pipe(rate=1000.0, burst=1000, allow=frozenset()) -> Pipeline:
    return Pipeline(Limits(), RateLimiter(rate, burst), frozenset(allow))


IP = ipaddress.ip_address


def test_pipeline_checks_each_rule():
    p, br5 = _pipe(), _iface()
    pkt = _answer("b.local", "10.0.5.10")
    assert p.process(pkt, IP("10.0.5.10"), 5353, 255, br5, 0).reflect
    assert p.process(pkt, IP("10.0.2.10"), 5353, 255, br5, 0).reason == "off-link"
    assert p.process(pkt, IP("10.0.5.255"), 5353, 255, br5, 0).reason == "off-link"
    assert p.process(pkt, IP("10.0.5.1"), 5353, 255, br5, 0).reason == "own"
    assert p.process(pkt, IP("10.0.5.10"), 5353, 64, br5, 0).reason == "ttl"
    assert p.process(pkt, IP("10.0.5.10"), 40000, 255, br5, 0).reason == "legacy-port"
    assert p.process(b"\x00" * 5, IP("10.0.5.10"), 5353, 255, br5, 0).reason == "malformed"
    assert p.process(pkt, IP("fe80::99"), 5353, 255, br5, 0).reflect
    assert p.process(pkt, IP("fd00:5::7"), 5353, 255, br5, 0).reflect
    assert p.process(pkt, IP("fd00:6::7"), 5353, 255, br5, 0).reason == "off-link"
    assert p.process(pkt, IP("fe80::1"), 5353, 255, br5, 0).reason == "own"
    assert p.counters["reflected"] == 3


def test_pipeline_echo_of_own_reflection_is_dropped():
    p, br5 = _pipe(), _iface()
    pkt = _answer("a.local", "10.0.2.10")
    p.note_sent(pkt, 10.0)
    assert p.process(pkt, IP("10.0.5.10"), 5353, 255, br5, 10.5).reason == "echo"
    assert p.process(pkt, IP("10.0.5.10"), 5353, 255, br5, 11.5).reflect


def test_pipeline_rate_limit_is_per_source():
    p, br5 = _pipe(rate=1, burst=3), _iface()
    pkt = _query("x.local")
    got = [p.process(pkt, IP("10.0.5.10"), 5353, 255, br5, 0).reflect for _ in range(10)]
    assert got.count(True) == 3
    assert p.process(pkt, IP("10.0.5.11"), 5353, 255, br5, 0).reflect
    assert p.counters["rate"] == 7


def test_pipeline_allow_list_and_qu_rewrite():
    p, br5 = _pipe(allow={"_http._tcp.local"}), _iface()
    ok = _answer("b.local", "10.0.5.10")
    assert p.process(ok, IP("10.0.5.10"), 5353, 255, br5, 0).reflect
    bad = _query("_ssh._tcp.local", "PTR")
    assert p.process(bad, IP("10.0.5.10"), 5353, 255, br5, 0).reason == "service-not-allowed"
    qu = bytearray(_query("b.local"))
    qu[-2] |= 0x80  # unicast-response bit on the only question
    v = p.process(bytes(qu), IP("10.0.5.10"), 5353, 255, br5, 0)
    assert v.reflect and v.payload[-2] & 0x80 == 0 and v.message.questions[0].unicast_response


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 255))
def test_pipeline_never_raises_and_reflects_only_decodable(data, ttl):
    p, br5 = _pipe(), _iface()
    v = p.process(data, IP("10.0.5.10"), 5353, ttl, br5, 0)
    if v.reflect:
        assert ttl == 255 and decode(v.payload) is not None


def test_service_type():
    assert service_type("web._http._tcp.local") == "_http._tcp.local"
    assert service_type("x._sub._http._tcp.local") == "_http._tcp.local"
    assert service_type("devicea.local") is None
    assert service_type("_services._dns-sd._udp.local") == "_dns-sd._udp.local"


def test_settings_from_config():
    m = MdnsSettings.from_settings(parse_settings(CONFIG))
    assert m.reflect_ip4 and m.auto_bridge and m.rate_limit == 20
    assert m.service_allow == ("_http._tcp.local", "_ipp._tcp.local")
    with pytest.raises(ValueError, match="service type"):
        parse_service_list("http")
    with pytest.raises(ConfigError, match="mdnsServiceAllow"):
        parse_settings("[dns]\nmdnsServiceAllow = http\n")
    with pytest.raises(ValueError):
        dataclasses.replace(m, rate_limit=0)


def test_mdns_defaults_are_the_loaders():
    """Without ``[dns]`` keys the reflector runs with DnsSettings' defaults (the original's)."""
    m = MdnsSettings.from_settings(Settings())
    dns = DnsSettings()
    assert (m.reflect_ip4, m.reflect_ip6) == (dns.mdns_reflect_ip4, dns.mdns_reflect_ip6) \
        == (False, False)
    assert (m.auto_bridge, m.rate_limit, m.rate_burst, m.max_packet, m.log_group) == (
        dns.mdns_auto_bridge, dns.mdns_rate_limit, dns.mdns_rate_burst, dns.mdns_max_packet,
        dns.mdns_log_group)
