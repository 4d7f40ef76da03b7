"""PolicyState follows the real registry's events: deltas == full derivation (hypothesis).

A real :class:`edgesec.registry.Registry` on an in-memory SQLite store publishes
its typed events; the pure state turns each into element deltas, applied to the
model of the kernel's sets from test_policy_incremental.py. The firewall service
built on it reads nothing back from the registry when an event arrives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_policy_incremental import ModelNft, follow, running_firewall
from test_registry import settings

from edgesec.events import DeviceChanged, Event, EventBus
from edgesec.net import policy as P
from edgesec.net.policystate import PolicyState
from edgesec.registry import Device, Registry, RegistryError
from edgesec.store import Store

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(4)]
IPS = ["10.0.1.7", "10.0.1.8", "10.0.2.7", "10.0.2.9", "10.0.3.7"]


def snapshot(reg: Registry) -> P.Rows:
    return P.elements(P.PolicyConfig.from_settings(reg.settings), reg.devices(), reg.bridges(),
                      reg.groups.memberships(), reg.groups.rules())


op = st.one_of(
    st.tuples(st.just("accept"), st.sampled_from(MACS), st.sampled_from([1, 2, 3])),
    st.tuples(st.just("deny"), st.sampled_from(MACS)),
    st.tuples(st.just("nat"), st.sampled_from(MACS), st.booleans()),
    st.tuples(st.just("ip"), st.sampled_from(["add", "old", "del"]), st.sampled_from(MACS),
              st.sampled_from(IPS)),
    st.tuples(st.just("bridge"), st.sampled_from(MACS), st.sampled_from(MACS), st.booleans()),
    st.tuples(st.just("member"), st.sampled_from(["g1", "g2"]), st.sampled_from(MACS),
              st.booleans()),
    st.tuples(st.just("access"), st.sampled_from(MACS), st.sampled_from(MACS),
              st.sampled_from([("", 0), ("tcp", 80)]), st.booleans()),
    st.tuples(st.just("remove"), st.sampled_from(MACS)),
)


def run(reg: Registry, o: tuple[Any, ...]) -> None:
    kind = o[0]
    with contextlib.suppress(RegistryError):
        if kind == "accept":
            reg.accept_mac(o[1], o[2])
        elif kind == "deny":
            reg.deny_mac(o[1])
        elif kind == "nat":
            reg.set_nat(o[1], o[2])
        elif kind == "ip":
            reg.set_ip(o[1], o[2], o[3])
        elif kind == "bridge":
            (reg.add_bridge if o[3] else reg.remove_bridge)(o[1], o[2])
        elif kind == "member":
            (reg.groups.add_member if o[3] else reg.groups.remove_member)(o[1], o[2])
        elif kind == "access":
            _, src, dst, (proto, port), on = o
            (reg.groups.add_access if on else reg.groups.remove_access)(src, dst, proto, port)
        else:
            reg.remove_device(o[1])


@contextmanager
def followed() -> Iterator[tuple[Registry, PolicyState, ModelNft]]:
    """A registry (SQLite in memory) whose events a PolicyState and a model nft follow."""
    cfg = settings(range(1, 4))
    store = Store(":memory:")
    try:
        reg = Registry(cfg, store, EventBus())
        state, nft = PolicyState(P.PolicyConfig.from_settings(cfg)), ModelNft()
        follow(reg.bus, state, nft)
        yield reg, state, nft
    finally:
        store.close()


@hsettings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_deltas_from_the_real_registry_equal_the_full_derivation(
        ops: list[tuple[Any, ...]]) -> None:
    with followed() as (reg, state, nft):
        for i, mac in enumerate(MACS):  # start from devices with addresses, as a gateway does
            reg.accept_mac(mac, 1 + i % 2)
            reg.set_ip("add", mac, f"10.0.{1 + i % 2}.{20 + i}")
        for o in ops:
            run(reg, o)
            assert nft.sets == snapshot(reg), o
        assert state.rows() == snapshot(reg)


def test_the_device_event_carries_old_and_new_records() -> None:
    store = Store(":memory:")
    try:
        reg = Registry(settings(range(1, 4)), store, EventBus())
        seen: list[Event] = []
        reg.bus.subscribe(seen.append)
        reg.accept_mac(MACS[0], 1)
        reg.set_nat(MACS[0], True)
        reg.remove_device(MACS[0])
        devs = [e for e in seen if isinstance(e, DeviceChanged)]
        assert [(e.old is None, e.new is None) for e in devs] == [
            (True, False), (False, False), (False, True)]
        assert devs[1].old == devs[0].new and devs[1].new is not None and devs[1].new.nat
        assert devs[2].old == devs[1].new and devs[2].reason == "removed"
        # the compatibility mapping (the wire formats' source) is unchanged
        assert devs[2].data == {"device": None, "removed": devs[1].new, "reason": "removed"}
        assert devs[0].data == {"device": devs[0].new}
    finally:
        store.close()


class Counting:
    """The registry, counting snapshot reads (the firewall's only registry reads)."""

    def __init__(self, reg: Registry) -> None:
        self.reg, self.bus, self.groups, self.reads = reg, reg.bus, reg.groups, 0

    def devices(self) -> list[Device]:
        self.reads += 1
        return self.reg.devices()

    def bridges(self) -> list[tuple[str, str]]:
        self.reads += 1
        return list(self.reg.bridges())


def test_the_firewall_applies_event_deltas_without_reading_the_registry() -> None:
    cfg = settings(range(1, 4))
    store = Store(":memory:")
    try:
        reg = Registry(cfg, store, EventBus())
        src = Counting(reg)
        fw, nft = running_firewall(P.PolicyConfig.from_settings(cfg), src)
        fw.apply_full()
        reads = src.reads
        reg.accept_mac(MACS[0], 1)
        reg.set_ip("add", MACS[0], "10.0.1.7")
        reg.accept_mac(MACS[1], 2)
        reg.set_ip("add", MACS[1], "10.0.2.7")
        before = nft.transactions
        reg.add_bridge(MACS[0], MACS[1])
        assert nft.transactions == before + 1
        assert nft.sets[P.BRIDGES] == {("10.0.1.7", "10.0.2.7"), ("10.0.2.7", "10.0.1.7")}
        reg.remove_device(MACS[1])
        assert nft.sets == snapshot(reg) and nft.sets[P.BRIDGES] == set()
        assert src.reads == reads  # every change came from the events alone
    finally:
        store.close()


def test_quarantine_and_release_reach_the_policy_state() -> None:
    """The registry's containment publishes device events the state follows."""
    with followed() as (reg, _, nft):
        for i, mac in enumerate(MACS[:2]):
            reg.accept_mac(mac, 1)
            reg.set_ip("add", mac, f"10.0.1.{20 + i}")
        reg.add_bridge(MACS[0], MACS[1])
        reg.quarantine(MACS[0], "scanning")
        assert nft.sets[P.QUARANTINED] == {MACS[0]} and nft.sets[P.BRIDGES] == set()
        assert nft.sets == snapshot(reg)
        reg.release(MACS[0])
        assert nft.sets[P.QUARANTINED] == set() and len(nft.sets[P.BRIDGES]) == 2
        assert nft.sets == snapshot(reg)


def test_an_untyped_device_event_is_followed_too() -> None:
    """A publisher still sending Event("device", mac, {"device": ...}) is not ignored."""
    state = PolicyState(P.PolicyConfig.from_settings(settings(range(1, 4))))
    dev = Device(MACS[0], allow=False, vlanid=1)
    add, delete = state.apply(Event("device", dev.mac, {"device": dev}))
    assert add[P.DENIED] == {dev.mac} and not any(delete.values())
    add, delete = state.apply(Event("device", dev.mac, {"device": None, "removed": dev}))
    assert delete[P.DENIED] == {dev.mac} and not any(add.values())
