"""The policy's set elements, kept current from bus events: pure (no I/O, no registry).

:class:`PolicyState` holds a model of what the policy depends on (device
records, bridges, group memberships, access rules), the rows each device
contributes (:func:`edgesec.net.policy.device_rows`) and, per element, how
many devices contribute it. :meth:`PolicyState.apply` takes one event and
returns the element differences ``(to_add, to_delete)``; the firewall turns
them into one nftables transaction. :meth:`PolicyState.load` derives
everything from a snapshot (start-up, heal, reload); at any time
:meth:`PolicyState.rows` equals :func:`edgesec.net.policy.elements` of the
snapshot the events describe (property-tested).

Events carry everything needed: the device event its new record, the group
event the group's members after the change, the access event the rule, so
nothing is read back from the registry.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

from edgesec.events import (
    AccessAdded,
    AccessRemoved,
    BridgeAdded,
    BridgeRemoved,
    DeviceChanged,
    Event,
    GroupChanged,
)
from edgesec.net.policy import (
    ROW_SETS,
    AccessLike,
    DeviceLike,
    PolicyConfig,
    Row,
    Rows,
    device_rows,
    empty_rows,
)

Delta = tuple[Rows, Rows]  # (to_add, to_delete)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PolicyState:
    """Contribution-counted policy elements, updated one event at a time."""

    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg
        self._reset()

    def _reset(self) -> None:
        self._devices: dict[str, DeviceLike] = {}
        self._partners: dict[str, set[str]] = {}
        self._members: dict[str, frozenset[str]] = {}  # group -> macs
        self._groups_of: dict[str, set[str]] = {}
        self._rules_of: dict[str, set[AccessLike]] = {}
        self._by_mac: dict[str, Rows] = {}
        self._count: dict[str, dict[Row, int]] = {n: {} for n in ROW_SETS}

    # -- reads -----------------------------------------------------------------
    def rows(self) -> Rows:
        """The elements the kernel should hold now."""
        return {n: set(c) for n, c in self._count.items()}

    def related(self, mac: str) -> set[str]:
        """Devices whose rows depend on ``mac``'s record (bridges, groups, access rules)."""
        out = set(self._partners.get(mac, ()))
        for g in self._groups_of.get(mac, ()):
            out |= self._members[g]
        for r in self._rules_of.get(mac, ()):
            out.add(r.dst if r.src == mac else r.src)
        out.discard(mac)
        return out

    def _rows_of(self, mac: str) -> Rows:
        dev = self._devices.get(mac)
        if dev is None:
            return empty_rows()
        devs = self._devices
        partners = [devs[p] for p in self._partners.get(mac, ()) if p in devs]
        peers: set[str] = set()
        for g in self._groups_of.get(mac, ()):
            peers |= self._members[g]
        members = [devs[m] for m in peers if m != mac and m in devs]
        access = [(r, devs[o]) for r in self._rules_of.get(mac, ())
                  if (o := r.dst if r.src == mac else r.src) in devs]
        return device_rows(self.cfg, dev, partners, members, access)

    # -- full derivation -------------------------------------------------------
    def load(self, devices: Iterable[DeviceLike], bridges: Iterable[tuple[str, str]],
             memberships: Iterable[tuple[str, str]] = (),
             access: Iterable[AccessLike] = ()) -> Rows:
        """Forget everything and derive the state from a snapshot; returns :meth:`rows`."""
        self._reset()
        self._devices = {d.mac: d for d in devices}
        for a, b in bridges:
            self._partners.setdefault(a, set()).add(b)
            self._partners.setdefault(b, set()).add(a)
        groups: dict[str, set[str]] = {}
        for group, mac in memberships:
            groups.setdefault(group, set()).add(mac)
        for group, macs in groups.items():
            self._set_members(group, frozenset(macs))
        for r in access:
            self._add_rule(r)
        self._update(self._devices)
        return self.rows()

    # -- events ----------------------------------------------------------------
    def apply(self, event: Event) -> Delta:
        """Take one event into the model; the elements to add and to delete.

        Kinds the policy does not depend on (and untyped events) change nothing.
        """
        if type(event) is Event and event.kind == "device":
            # an untyped device event (a publisher not migrated yet): follow it all the
            # same, so the policy never lags a change it was told about
            event = DeviceChanged(event.mac, new=event.data.get("device"),
                                  old=event.data.get("removed"))
        if isinstance(event, DeviceChanged):
            macs = {event.mac} | self.related(event.mac)
            if event.new is None:
                self._devices.pop(event.mac, None)
            else:
                self._devices[event.mac] = event.new
            return self._update(macs)
        if isinstance(event, BridgeAdded | BridgeRemoved):
            a, b = event.mac, event.peer
            if isinstance(event, BridgeAdded):
                self._partners.setdefault(a, set()).add(b)
                self._partners.setdefault(b, set()).add(a)
            else:
                _discard(self._partners, a, b)
                _discard(self._partners, b, a)
            return self._update({a, b})
        if isinstance(event, GroupChanged):
            before = self._members.get(event.group, frozenset())
            after = frozenset(event.members)
            self._set_members(event.group, after)
            return self._update({event.mac} | before | after)
        if isinstance(event, AccessAdded | AccessRemoved):
            r = event.rule
            if isinstance(event, AccessAdded):
                self._add_rule(r)
            else:
                _discard(self._rules_of, r.src, r)
                _discard(self._rules_of, r.dst, r)
            return self._update({r.src, r.dst})
        return empty_rows(), empty_rows()

    def _set_members(self, group: str, macs: frozenset[str]) -> None:
        for mac in self._members.get(group, frozenset()) - macs:
            _discard(self._groups_of, mac, group)
        for mac in macs:
            self._groups_of.setdefault(mac, set()).add(group)
        if macs:
            self._members[group] = macs
        else:
            self._members.pop(group, None)

    def _add_rule(self, r: AccessLike) -> None:
        for mac in (r.src, r.dst):
            self._rules_of.setdefault(mac, set()).add(r)

    def _update(self, macs: Iterable[str]) -> Delta:
        """Re-derive the rows of ``macs``; the elements whose count rose from / fell to 0."""
        add, delete = empty_rows(), empty_rows()
        for mac in set(macs):
            new = self._rows_of(mac)
            old = self._by_mac.pop(mac, None) or empty_rows()
            if any(new.values()):
                self._by_mac[mac] = new
            for name in ROW_SETS:
                c = self._count[name]
                for row in old[name] - new[name]:
                    n = c[row] - 1
                    if n:
                        c[row] = n
                    else:
                        del c[row]
                        delete[name].add(row)
                for row in new[name] - old[name]:
                    n = c.get(row, 0) + 1
                    c[row] = n
                    if n == 1:
                        add[name].add(row)
        for name in ROW_SETS:
            both = add[name] & delete[name]
            add[name] -= both
            delete[name] -= both
        return add, delete


def _discard(index: dict[K, set[V]], key: K, value: V) -> None:
    """Remove ``value`` from ``index[key]``, dropping the key when its set empties."""
    got = index.get(key)
    if got is None:
        return
    got.discard(value)
    if not got:
        del index[key]
