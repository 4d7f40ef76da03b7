"""A Registry over a real SQLite file, for the unit tests of registry behaviour.

Time is an injected :class:`Clock`; every event is recorded in ``events``;
"restart" is :meth:`World.open` again on the same file.
"""

from __future__ import annotations

from pathlib import Path

from edgesec.config import Settings
from edgesec.events import Event, EventBus
from edgesec.registry import Registry
from edgesec.store import Store


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
