"""A Registry over a real SQLite file, for the unit tests of registry behaviour.

Time is an injected :class:`Clock`; every event is recorded in ``events``;
"restart" is :meth:`World.open` again on the same file.  :func:`pool_settings`
is the VLAN-pool gateway the admission tests and ``bench/devices.py`` use.
"""

from __future__ import annotations

from pathlib import Path

from edgesec.config import Settings, parse_settings
from edgesec.events import Event, EventBus
from edgesec.registry import Registry
from edgesec.store import Store


def pool_settings(open_net: bool = True, prefix: str = "10.200.0.0/24",
                  *interfaces: str) -> Settings:
    """VLAN 1 plus a pool of /28 subnets in ``prefix`` (VLANs allocated per device).

    ``open_net`` is ``allowAllConnections``; ``interfaces`` are further lines
    of the ``[interfaces]`` section.
    """
    return parse_settings("\n".join([
        "[system]", "defaultOpenVlanId = 1", f"allowAllConnections = {str(open_net).lower()}",
        "allocateVlans = true", "[ap]", "wpaPassphrase = default-pass", "[interfaces]",
        'if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"', f"vlanPoolPrefix = {prefix}",
        "vlanPoolPrefixLen = 28", *interfaces]))


class Clock:
    """A settable clock: ``clock.now += 60`` moves time on."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    """A registry on ``tmp/db_name`` with a recorded event bus and an injected clock."""

    def __init__(self, tmp: Path, cfg: Settings, db_name: str = "connections.sqlite") -> None:
        self.db = tmp / db_name
        self.cfg = cfg
        self.clock = Clock()
        self.events: list[Event] = []
        self.stores: list[Store] = []
        self.reg = self.open()

    @property
    def now(self) -> float:
        return self.clock.now

    @now.setter
    def now(self, value: float) -> None:
        self.clock.now = value

    def open(self) -> Registry:
        """A (further) Registry on the same database file: a restart."""
        store = Store(self.db)
        self.stores.append(store)
        bus = EventBus()
        bus.subscribe(self.events.append)
        return Registry(self.cfg, store, bus, clock=self.clock)

    def close(self) -> None:
        for s in self.stores:
            s.close()


def durable_groups(db: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, int]]]:
    """(memberships, access rules) as a second connection reads them from ``db``."""
    other = Store(db)
    try:
        return ([(m.group, m.mac) for m in other.load_memberships()],
                [(r.mac_from, r.mac_to, r.proto, r.port) for r in other.load_access()])
    finally:
        other.close()
