"""Name -> address knowledge learned from mDNS traffic, with TTLs.

Owns three bounded, expiring tables:

* **announcements** — (name, type, value) -> who announced it (device MAC,
  source IP, interface) and until when (the record's TTL; TTL 0 is a goodbye
  and removes the entry);
* **queries** — which device address asked for which name, kept for the
  discovery window;
* **exposures** — which announced address was reflected onto which bridge
  (and whose it is), kept for the discovery window; this is what lets the
  bridging rule know that device B "received the reflected answer".

Pure data structure: time is passed in, nothing here touches sockets or the
registry.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from edgesec.mdns.decoder import TYPE_A, TYPE_AAAA, TYPE_PTR, TYPE_SRV, Message

__all__ = ["Announcement", "Knowledge"]

_TYPE_NAMES = {TYPE_A: "A", TYPE_AAAA: "AAAA", TYPE_PTR: "PTR", TYPE_SRV: "SRV"}
_KEPT_TYPES = frozenset(_TYPE_NAMES)


@dataclass(frozen=True, slots=True)
class Announcement:
    """One learned record and who announced it."""

    name: str
    rtype: int
    value: str
    mac: str  # "" when the announcer's address is not a known device
    ip: str
    interface: str
    expires: float

    @property
    def type_name(self) -> str:
        """Record type as text (A, AAAA, PTR, SRV)."""
        return _TYPE_NAMES.get(self.rtype, str(self.rtype))


class _Expiring(OrderedDict):
    """Insertion-ordered dict capped at ``cap`` entries (oldest evicted)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def put(self, key: object, value: object) -> None:
        if key in self:
            self.move_to_end(key)
        self[key] = value
        while len(self) > self.cap:
            self.popitem(last=False)


class Knowledge:
    """Bounded store of announcements, queries and exposures."""

    def __init__(self, discovery_ttl: float = 600.0, max_entries: int = 8192) -> None:
        self.discovery_ttl = discovery_ttl
        self._ann: _Expiring = _Expiring(max_entries)
        self._queries: _Expiring = _Expiring(max_entries)
        self._exposed: _Expiring = _Expiring(max_entries)

    # -- learning -----------------------------------------------------------
    def learn(
        self, msg: Message, ip: str, mac: str, interface: str, now: float
    ) -> list[Announcement]:
        """Record queries and answers of ``msg`` sent by ``ip``; return new/changed entries."""
        changed: list[Announcement] = []
        if not msg.is_response:
            for q in msg.questions:
                self._queries.put((ip, q.name), now + self.discovery_ttl)
        for r in msg.records:
            if r.rtype not in _KEPT_TYPES or not r.value:
                continue
            key = (r.name, r.rtype, r.value)
            if r.ttl == 0:
                self._ann.pop(key, None)
                continue
            old = self._ann.get(key)
            ann = Announcement(r.name, r.rtype, r.value, mac, ip, interface, now + r.ttl)
            self._ann.put(key, ann)
            if old is None or (old.mac, old.ip) != (mac, ip):
                changed.append(ann)
        return changed

    def expose(self, interface: str, address: str, mac: str, now: float) -> None:
        """Note that ``address`` (announced by ``mac``) was reflected onto ``interface``."""
        self._exposed.put((interface, address), (mac, now + self.discovery_ttl))

    # -- queries ------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Drop everything past its expiry."""
        for table, when in (
            (self._ann, lambda v: v.expires),
            (self._queries, lambda v: v),
            (self._exposed, lambda v: v[1]),
        ):
            for key in [k for k, v in table.items() if when(v) <= now]:
                del table[key]

    def announcements(self, now: float) -> list[Announcement]:
        """Unexpired announcements, sorted by name."""
        return sorted(
            (a for a in self._ann.values() if a.expires > now),
            key=lambda a: (a.name, a.rtype, a.value),
        )

    def announcers_of(self, address: str, now: float) -> set[str]:
        """MACs that announced an A/AAAA record with value ``address``."""
        return {
            a.mac
            for a in self._ann.values()
            if a.rtype in (TYPE_A, TYPE_AAAA) and a.value == address and a.mac and a.expires > now
        }

    def names_for(self, address: str, now: float) -> set[str]:
        """Host names resolving to ``address`` plus services/instances pointing at them."""
        live = [a for a in self._ann.values() if a.expires > now]
        names = {a.name for a in live if a.rtype in (TYPE_A, TYPE_AAAA) and a.value == address}
        instances = {
            a.name for a in live if a.rtype == TYPE_SRV and a.value.rsplit(" ", 1)[-1] in names
        }
        services = {a.name for a in live if a.rtype == TYPE_PTR and a.value in instances}
        return names | instances | services

    def queried(self, ip: str, names: set[str], now: float) -> bool:
        """Did ``ip`` ask for any of ``names`` within the discovery window?"""
        return any(self._queries.get((ip, n), 0.0) > now for n in names)

    def exposed_to(self, interface: str, address: str, now: float) -> str | None:
        """MAC of the announcer whose ``address`` was reflected onto ``interface``, if live."""
        entry = self._exposed.get((interface, address))
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def __len__(self) -> int:
        return len(self._ann)
