"""The policy state's incremental deltas always equal the pure full derivation (hypothesis).

:class:`edgesec.net.policystate.PolicyState` takes the bus events and returns
element deltas; applied to a model of the kernel's sets they must give what
:func:`edgesec.net.policy.elements` derives from the final snapshot.

A recording stand-in for libnftables applies the element commands to an
in-memory model and refuses deleting a missing element (as nft does), so a
wrong diff fails the test.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edgesec.events import BridgeAdded, BridgeRemoved, DeviceChanged, Event, EventBus
from edgesec.net import policy as P
from edgesec.net.firewall import FirewallError, FirewallService
from edgesec.net.policystate import PolicyState
from edgesec.registry import Device

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(6)]


def Dev(mac: str, **fields: Any) -> Device:
    """A real registry record, on VLAN 1 unless told otherwise."""
    return Device(mac, **{"vlanid": 1, **fields})


class FakeRegistry:
    def __init__(self) -> None:
        self.bus = EventBus()
        self._devs: dict[str, Dev] = {}
        self._bridges: set[tuple[str, str]] = set()

    def get(self, mac: str) -> Dev | None:
        return self._devs.get(mac)

    def devices(self) -> list[Dev]:
        return list(self._devs.values())

    def bridges(self) -> list[tuple[str, str]]:
        return sorted(self._bridges)

    def bridge_partners(self, mac: str) -> list[str]:
        return [b if a == mac else a for a, b in self._bridges if mac in (a, b)]

    def put(self, dev: Dev) -> None:
        old = self._devs.get(dev.mac)
        self._devs[dev.mac] = dev
        self.bus.publish(DeviceChanged(dev.mac, old=old, new=dev))

    def bridge(self, a: str, b: str, on: bool) -> None:
        pair = (min(a, b), max(a, b))
        if on and pair not in self._bridges:
            self._bridges.add(pair)
            self.bus.publish(BridgeAdded(pair[0], peer=pair[1], reason="manual"))
        elif not on and pair in self._bridges:
            self._bridges.discard(pair)
            self.bus.publish(BridgeRemoved(pair[0], peer=pair[1], reason="manual"))


class ModelNft:
    """Applies element add/delete commands to sets in memory; full lists replace all."""

    def __init__(self) -> None:
        self.sets: dict[str, set[Any]] = {n: set() for n in P.ROW_SETS}
        self.transactions = 0

    def apply(self, cmds: list[dict[str, Any]]) -> None:
        new = {k: set(v) for k, v in self.sets.items()}
        for cmd in cmds:
            (op, body), = cmd.items()
            if "table" in body and op == "delete":
                new = {n: set() for n in P.ROW_SETS}
            if "element" not in body or body["element"]["name"] not in P.ROW_SETS:
                continue
            target = new[body["element"]["name"]]
            for e in body["element"]["elem"]:
                row = tuple(e["concat"]) if isinstance(e, dict) else e
                if op == "add":
                    target.add(row)
                elif row not in target:
                    raise FirewallError(f"no such element {row}")
                else:
                    target.discard(row)
        self.sets = new
        self.transactions += 1

    def list_table(self, table: str) -> None:
        return None


def _cfg() -> P.PolicyConfig:
    subs = tuple(P.PolicySubnet(v, f"br{v}", ipaddress.IPv4Network(f"10.0.{v}.0/24"))
                 for v in (1, 2))
    return P.PolicyConfig(subnets=subs, nat_interface="wan0")


op = st.one_of(
    st.tuples(st.just("dev"), st.sampled_from(MACS), st.booleans(), st.sampled_from([1, 2, 3]),
              st.booleans(), st.sampled_from(["", "10.0.1.7", "10.0.2.7", "10.0.1.8"]),
              st.sampled_from(["", "10.0.2.9", "10.0.1.9"])),
    st.tuples(st.just("bridge"), st.sampled_from(MACS), st.sampled_from(MACS), st.booleans()),
)


def follow(bus: EventBus, state: PolicyState, nft: ModelNft) -> None:
    """Apply ``state``'s delta for every event on ``bus`` to ``nft`` (as the firewall does)."""
    def on_event(event: Event) -> None:
        add, delete = state.apply(event)
        cmds = P.diff_commands("edgesec", add, delete)
        if cmds:
            nft.apply(cmds)

    bus.subscribe(on_event)


def running_firewall(cfg: P.PolicyConfig, reg: Any) -> tuple[FirewallService, ModelNft]:
    """A FirewallService on a ModelNft following ``reg``'s events, as when running."""
    nft = ModelNft()
    fw = FirewallService(cfg, reg, nft=nft)  # type: ignore[arg-type]
    fw._running = True
    reg.bus.subscribe(fw.on_event)
    return fw, nft


@given(st.lists(op, max_size=30))
def test_incremental_updates_equal_full_derivation(ops: list[tuple[Any, ...]]) -> None:
    reg = FakeRegistry()
    nft = ModelNft()
    state = PolicyState(_cfg())
    follow(reg.bus, state, nft)
    for o in ops:
        if o[0] == "dev":
            _, mac, allow, vlan, nat, ip1, ip2 = o
            reg.put(Dev(mac, allow=allow, vlanid=vlan, nat=nat, primary_ip=ip1,
                        secondary_ip=ip2 if ip2 != ip1 else ""))
        elif o[1] != o[2]:
            reg.bridge(o[1], o[2], o[3])
    want = P.elements(_cfg(), reg.devices(), reg.bridges())
    assert nft.sets == want
    assert state.rows() == want
    assert PolicyState(_cfg()).load(reg.devices(), reg.bridges()) == want


def test_a_change_is_one_transaction_touching_only_its_elements() -> None:
    reg = FakeRegistry()
    fw, nft = running_firewall(_cfg(), reg)
    for i, mac in enumerate(MACS):
        reg.put(Dev(mac, vlanid=1 + i % 2, primary_ip=f"10.0.{1 + i % 2}.{10 + i}"))
    fw.apply_full()
    before = nft.transactions
    reg.bridge(MACS[0], MACS[1], True)
    assert nft.transactions == before + 1
    assert nft.sets[P.BRIDGES] == {("10.0.1.10", "10.0.2.11"), ("10.0.2.11", "10.0.1.10")}
    reg.put(replace(reg.get(MACS[0]), allow=False))  # type: ignore[arg-type]
    assert nft.sets[P.BRIDGES] == set() and nft.sets[P.DENIED] == {MACS[0]}
