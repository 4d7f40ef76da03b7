"""Groups and one-way access in the pure policy: set elements, rules, explain, and the
firewall's incremental deltas (hypothesis: delta == full derivation; explain == the
computed sets' verdict).

The registry side is the real :class:`~edgesec.groups.GroupPolicy` on an in-memory
SQLite store; devices and bridges are a plain stand-in, as in
test_policy_incremental.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_policy_incremental import FakeRegistry, ModelNft, follow, running_firewall

from edgesec.groups import Access, GroupPolicy
from edgesec.net import policy as P
from edgesec.net.evaluator import Packet, Ruleset
from edgesec.net.explain import PolicyView, accepts, answers, explain
from edgesec.net.policystate import PolicyState
from edgesec.registry import Device, RegistryError
from edgesec.store import Store

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(5)]
A, B, C, D = MACS[:4]


def cfg() -> P.PolicyConfig:
    subs = tuple(P.PolicySubnet(v, f"br{v}", ipaddress.IPv4Network(f"10.0.{v}.0/24"))
                 for v in (1, 2))
    return P.PolicyConfig(subnets=subs, nat_interface="wan0")


class GroupRegistry(FakeRegistry):
    """Devices and bridges in dicts, groups and access rules in the real GroupPolicy."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store(None)
        self.groups = GroupPolicy(self.store, self.bus, lambda m: m in self._devs)


def ip_of(i: int, vlan: int) -> str:
    return f"10.0.{vlan}.{10 + i}"


def bed(n: int = 4) -> GroupRegistry:
    reg = GroupRegistry()
    for i, mac in enumerate(MACS[:n]):
        reg.put(Device(mac, vlanid=1 + i % 2, primary_ip=ip_of(i, 1 + i % 2)))
    return reg


def rows_of(reg: GroupRegistry) -> P.Rows:
    return P.elements(cfg(), reg.devices(), reg.bridges(), reg.groups.memberships(),
                      reg.groups.rules())


IA, IB, IC, ID = (ip_of(i, 1 + i % 2) for i in range(4))


# -- elements and rules -----------------------------------------------------------------


def test_group_members_reach_each_other_and_nobody_else() -> None:
    reg = bed()
    reg.groups.add_member("cams", A)
    reg.groups.add_member("cams", B)
    reg.groups.add_member("cams", C)
    rows = rows_of(reg)
    assert rows[P.GROUPS] == {(x, y) for x in (IA, IB, IC) for y in (IA, IB, IC) if x != y}
    assert rows[P.BRIDGES] == set() and rows[P.ACCESS] == set()
    assert accepts(rows, IA, IC) == "group" and answers(rows, IA, IC) == "group"
    assert accepts(rows, ID, IA) is None and accepts(rows, IA, ID) is None


def test_a_device_in_two_groups_bridges_neither_group_to_the_other() -> None:
    reg = bed()
    for g, m in (("cams", A), ("cams", B), ("door", B), ("door", C)):
        reg.groups.add_member(g, m)
    rows = rows_of(reg)
    assert accepts(rows, IA, IB) and accepts(rows, IB, IC)
    assert accepts(rows, IA, IC) is None and accepts(rows, IC, IA) is None


def test_access_opens_one_direction_and_only_answers_come_back() -> None:
    reg = bed()
    reg.groups.add_access(A, B, "tcp", 80)
    reg.groups.add_access(C, D)
    rows = rows_of(reg)
    assert rows[P.ACCESS] == {(IA, IB, "tcp", "80")}
    assert rows[P.ACCESS_ANY] == {(IC, ID)}
    assert accepts(rows, IA, IB, "tcp", 80) == "access"
    assert answers(rows, IA, IB, "tcp", 80) == "access-reply"
    assert accepts(rows, IA, IB, "tcp", 81) is None and accepts(rows, IA, IB, "udp", 80) is None
    assert accepts(rows, IA, IB) is None  # ICMP: no port, no path
    assert accepts(rows, IB, IA, "tcp", 80) is None  # never the reverse
    assert accepts(rows, IC, ID, "udp", 5) == "access-any" and accepts(rows, IC, ID) == "access-any"
    assert accepts(rows, ID, IC) is None
    assert answers(rows, IC, ID) == "access-any-reply"


def test_the_interpreted_ruleset_opens_one_way_only() -> None:
    """Asked of the computed rules (edgesec.net.evaluator), not of set contents."""
    reg = bed()
    reg.groups.add_access(A, B, "tcp", 80)
    rules = Ruleset.from_policy(P.skeleton(cfg()).commands, rows_of(reg))
    a, b = reg.get(A), reg.get(B)
    assert a is not None and b is not None

    def passes(**kw: Any) -> str:
        v = rules.verdict(Packet(**kw))  # type: ignore[arg-type]
        return v.rule if v.accepted else ""

    ab = {"iif": "br1", "src_mac": A, "src_ip": IA, "dst_ip": IB, "oif": "br2"}
    ba = {"iif": "br2", "src_mac": B, "src_ip": IB, "dst_ip": IA, "oif": "br1"}
    assert passes(**ab, dport=80) == "edgesec:from_device:access"
    assert passes(**ab, dport=81) == "" and passes(**ab, l4proto="udp", dport=80) == ""
    assert passes(**ba, sport=80, dport=5000, ct_state="established",
                  ct_direction="reply") == "edgesec:from_device:access-reply"
    # the other end never opens anything, not even from the allowed port
    assert passes(**ba, sport=80, dport=5000) == ""
    assert passes(**ba, dport=80) == ""
    # an answer-looking packet of a connection B opened is no answer
    assert passes(**ba, sport=80, dport=5000, ct_state="established") == ""


def test_a_denied_end_or_an_address_outside_the_subnet_contributes_nothing() -> None:
    reg = bed()
    reg.groups.add_member("g", A)
    reg.groups.add_member("g", B)
    reg.groups.add_access(A, C, "udp", 53)
    reg.put(replace(reg.get(B), allow=False))  # type: ignore[arg-type]
    reg.put(replace(reg.get(C), primary_ip="10.0.1.99"))  # C is on VLAN 1, so 10.0.1.x is fine
    rows = rows_of(reg)
    assert rows[P.GROUPS] == set()
    assert rows[P.ACCESS] == {(IA, "10.0.1.99", "udp", "53")}
    reg.put(replace(reg.get(C), primary_ip="10.0.2.99"))  # wrong subnet for VLAN 1
    assert rows_of(reg)[P.ACCESS] == set()


def test_rules_check_spoofing_first_and_tie_access_to_the_connection_direction() -> None:
    rules = [x["add"]["rule"] for x in P.skeleton(cfg()).commands
             if "rule" in x.get("add", {}) and x["add"]["rule"]["chain"] == "from_device"]
    names = [r["comment"].rsplit(":", 1)[1] for r in rules]
    assert names.index("spoof") < names.index("group") < names.index("access") < names.index(
        "access-reply") < names.index("drop")
    by = dict(zip(names, rules, strict=True))

    def ct(rule: dict[str, Any]) -> dict[str, Any]:
        return {e["match"]["left"]["ct"]["key"]: e["match"]["right"]
                for e in rule["expr"] if "ct" in e.get("match", {}).get("left", {})}

    assert ct(by["access"]) == {"direction": "original"}
    assert ct(by["access-any"]) == {"direction": "original"}
    assert ct(by["access-reply"]) == {"direction": "reply", "state": ["established"]}
    assert ct(by["access-any-reply"]) == {"direction": "reply", "state": ["established"]}
    assert ct(by["group"]) == {}  # stateless, both directions are elements
    key = by["access-reply"]["expr"][2]["match"]["left"]["concat"]
    assert [k.get("payload", k.get("meta")) for k in key] == [
        {"protocol": "ip", "field": "daddr"}, {"protocol": "ip", "field": "saddr"},
        {"key": "l4proto"}, {"protocol": "th", "field": "sport"}]
    assert P.SET_TYPES[P.ACCESS] == ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"]


# -- explain ----------------------------------------------------------------------------


def test_explain_names_what_allows_and_what_would_allow() -> None:
    reg = bed()
    reg.groups.add_member("cams", A)
    reg.groups.add_member("cams", B)
    reg.groups.add_access(C, A, "tcp", 80)
    reg.bridge(A, D, True)
    view = PolicyView.from_registry(reg)
    e = explain(cfg(), view, A, B, "tcp", 22)
    assert e.allowed and e.reasons == ("allowed by group cams (both are members)",)
    assert explain(cfg(), view, D, A).reasons == (f"allowed by bridge {A} <-> {D}",)
    assert explain(cfg(), view, C, A, "tcp", 80).reasons == (
        f"allowed by access rule {C} -> {A} tcp/80",)
    e = explain(cfg(), view, A, C, "tcp", 80)
    assert not e.allowed
    assert any("one-way" in r and f"{C} -> {A} tcp/80" in r for r in e.reasons), e
    e = explain(cfg(), view, C, A, "tcp", 443)
    assert not e.allowed and any("would allow tcp/80 only" in r for r in e.reasons), e
    e = explain(cfg(), view, C, B)
    assert not e.allowed and any("group cams would allow it" in r for r in e.reasons), e
    reg.put(replace(reg.get(B), allow=False))  # type: ignore[arg-type]
    e = explain(cfg(), PolicyView.from_registry(reg), A, B)
    assert not e.allowed
    assert e.reasons == (f"blocked: {B} is denied", "group cams (both are members) would allow it")
    assert explain(cfg(), view, A, IB).allowed  # by leased address too
    assert explain(cfg(), view, A, A).allowed
    assert explain(cfg(), view, A, "02:00:00:00:00:ee").reasons == (
        "blocked: 02:00:00:00:00:ee is not a known device",)


# -- hypothesis: incremental == full, explain == sets ---------------------------------------

SERVICES = [("", 0), ("tcp", 80), ("udp", 53)]
# few devices and groups, so that sequences touching the same ones are common
OPS_MACS = MACS[:4]
op = st.one_of(
    st.tuples(st.just("dev"), st.integers(0, 4), st.booleans(), st.sampled_from([1, 1, 2, 3]),
              st.sampled_from([0, 1, 1, 2]), st.booleans()),
    st.tuples(st.just("bridge"), st.sampled_from(OPS_MACS), st.sampled_from(OPS_MACS),
              st.booleans()),
    st.tuples(st.just("member"), st.sampled_from(["g1", "g2"]), st.sampled_from(OPS_MACS),
              st.booleans()),
    st.tuples(st.just("member"), st.sampled_from(["g1", "g2"]), st.sampled_from(OPS_MACS),
              st.booleans()),
    st.tuples(st.just("access"), st.sampled_from(OPS_MACS), st.sampled_from(OPS_MACS),
              st.sampled_from(SERVICES), st.booleans()),
    st.tuples(st.just("forget"), st.sampled_from(MACS)),
)


def apply_op(reg: GroupRegistry, o: tuple[Any, ...]) -> None:
    kind = o[0]
    if kind == "dev":
        _, i, allow, vlan, which, second = o
        ips = ["", ip_of(i, 1), ip_of(i, 2)]
        reg.put(Device(MACS[i], allow=allow, vlanid=vlan, primary_ip=ips[which],
                       secondary_ip=f"10.0.1.{100 + i}" if second else ""))
    elif kind == "bridge":
        if o[1] != o[2]:
            reg.bridge(o[1], o[2], o[3])
    elif kind == "forget":
        reg.groups.forget(o[1])
    else:
        with contextlib.suppress(RegistryError):  # unknown device, duplicate, missing
            if kind == "member":
                (reg.groups.add_member if o[3] else reg.groups.remove_member)(o[1], o[2])
            else:
                _, src, dst, (proto, port), on = o
                (reg.groups.add_access if on else reg.groups.remove_access)(src, dst, proto, port)


@hsettings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=40))
def test_incremental_updates_equal_full_derivation(ops: list[tuple[Any, ...]]) -> None:
    reg = bed(5)
    nft = ModelNft()
    state = PolicyState(cfg())
    nft.apply(P.element_commands("edgesec", "add", state.load(
        reg.devices(), reg.bridges(), reg.groups.memberships(), reg.groups.rules())))
    follow(reg.bus, state, nft)
    for o in ops:
        apply_op(reg, o)
    want = rows_of(reg)
    assert nft.sets == want
    assert state.rows() == want
    # and a heal (a load from the snapshot) re-derives the same
    assert PolicyState(cfg()).load(reg.devices(), reg.bridges(), reg.groups.memberships(),
                                   reg.groups.rules()) == want


def packet(src: Device, sip: str, dst: Device, dip: str, proto: str, port: int,
           reply: bool = False) -> Packet:
    """A forwarded packet src -> dst: a new connection's first packet, or an answer."""
    c = cfg()
    return Packet(iif=c.subnet(src.vlanid).bridge, src_mac=src.mac,  # type: ignore[union-attr]
                  src_ip=sip, dst_ip=dip, oif=c.subnet(dst.vlanid).bridge,  # type: ignore[union-attr]
                  l4proto=proto or "icmp", dport=0 if reply else port,
                  sport=port if reply else 40000,
                  ct_state="established" if reply else "new",
                  ct_direction="reply" if reply else "original")


@hsettings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=30))
def test_explain_agrees_with_the_computed_sets(ops: list[tuple[Any, ...]]) -> None:
    reg = bed(5)
    for o in ops:
        apply_op(reg, o)
    rows, view = rows_of(reg), PolicyView.from_registry(reg)
    rules = Ruleset.from_policy(P.skeleton(cfg()).commands, rows)
    devs = reg.devices()
    for a in devs:
        for b in devs:
            if a.mac == b.mac:
                continue
            for proto, port in [("", 0), ("tcp", 80), ("udp", 53), ("tcp", 22)]:
                verdict = explain(cfg(), view, a.mac, b.mac, proto, port)
                got = {accepts(rows, x, y, proto, port) is not None
                       for x in P.valid_ips(cfg(), a) for y in P.valid_ips(cfg(), b)}
                assert got <= {verdict.allowed}, (a, b, proto, port, verdict)
                # ... and the interpreted ruleset (what the kernel runs) agrees
                ran = {rules.verdict(packet(a, x, b, y, proto, port)).accepted
                       for x in P.valid_ips(cfg(), a) for y in P.valid_ips(cfg(), b)}
                assert ran == got, (a, b, proto, port, verdict)
                answered = {rules.verdict(packet(b, y, a, x, proto, port, reply=True)).accepted
                            for x in P.valid_ips(cfg(), a) for y in P.valid_ips(cfg(), b)}
                if verdict.allowed:
                    assert answered == {True}
                if verdict.allowed:
                    assert got == {True}
                    # and the answers of an allowed connection come back
                    assert all(answers(rows, x, y, proto, port)
                               for x in P.valid_ips(cfg(), a) for y in P.valid_ips(cfg(), b))


def test_group_change_is_one_transaction_for_its_members_only() -> None:
    reg = bed()
    fw, nft = running_firewall(cfg(), reg)
    fw.apply_full()
    reg.groups.add_member("g", A)
    before = nft.transactions
    reg.groups.add_member("g", B)
    assert nft.transactions == before + 1
    assert nft.sets[P.GROUPS] == {(IA, IB), (IB, IA)}
    reg.groups.add_access(C, A, "tcp", 80)
    assert nft.transactions == before + 2
    assert nft.sets[P.ACCESS] == {(IC, IA, "tcp", "80")}
    reg.groups.remove_member("g", A)
    reg.groups.remove_access(C, A, "tcp", 80)
    assert nft.sets[P.GROUPS] == set() and nft.sets[P.ACCESS] == set()
    assert Access(C, A, "tcp", 80) not in reg.groups.rules()


def test_a_quarantined_device_loses_its_group_and_access_pairs_and_gets_them_back() -> None:
    """Quarantine (edgesec.detect) suspends groups and one-way access like bridges/NAT."""
    reg = bed()
    reg.groups.add_member("cams", A)
    reg.groups.add_member("cams", B)
    reg.groups.add_member("cams", C)
    reg.groups.add_access(D, A, "tcp", 80)
    reg.groups.add_access(A, D)
    before = rows_of(reg)
    reg.put(replace(reg.get(A), quarantined=True))
    during = rows_of(reg)
    assert during[P.QUARANTINED] == {A}
    assert not any(IA in pair for pair in during[P.GROUPS] | during[P.ACCESS_ANY])
    assert not any(IA in r[:2] for r in during[P.ACCESS])
    assert during[P.GROUPS] == {(IB, IC), (IC, IB)}  # the others keep their group
    reg.put(replace(reg.get(A), quarantined=False))
    assert rows_of(reg) == before


def test_explain_names_a_quarantine_as_the_blocker() -> None:
    reg = bed()
    reg.bridge(A, B, True)
    reg.put(replace(reg.get(A), quarantined=True))
    view = PolicyView.from_registry(reg)
    why = explain(cfg(), view, A, B, "tcp", 80)
    assert not why.allowed and any("quarantined" in r for r in why.reasons), why
    rows = rows_of(reg)
    assert accepts(rows, IA, IB) is None and accepts(rows, IB, IA) is None
