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
registry.  Every operation is O(1) or O(matches) (indexes by record value and
an expiry heap), so a device filling the tables cannot make the reflector
stall: the tables are capped and expiry pops only what is due.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

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


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Expiring(OrderedDict[_K, _V]):
    """Insertion-ordered dict capped at ``cap`` entries (oldest evicted)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def put(self, key: _K, value: _V) -> None:
        if key in self:
            self.move_to_end(key)
        self[key] = value
        while len(self) > self.cap:
            self.popitem(last=False)

    def expire_front(self, deadline: Callable[[_V], float], now: float, budget: int) -> None:
        """Pop up to ``budget`` entries from the front while they are past ``now``."""
        while self and budget > 0 and deadline(next(iter(self.values()))) <= now:
            self.popitem(last=False)
            budget -= 1


Key = tuple[str, int, str]


class Knowledge:
    """Bounded store of announcements, queries and exposures."""

    def __init__(self, discovery_ttl: float = 600.0, max_entries: int = 8192) -> None:
        self.discovery_ttl = discovery_ttl
        self.max_entries = max_entries
        self._ann: OrderedDict[Key, Announcement] = OrderedDict()
        self._by_value: dict[str, set[Key]] = {}  # A/AAAA address, SRV target, PTR target
        self._heap: list[tuple[float, Key]] = []
        # (ip, name) -> until; ordered by expiry (fixed ttl)
        self._queries: _Expiring[tuple[str, str], float] = _Expiring(max_entries)
        # (interface, address) -> (mac, until)
        self._exposed: _Expiring[tuple[str, str], tuple[str, float]] = _Expiring(max_entries)

    # -- announcement table ---------------------------------------------------
    @staticmethod
    def _index_value(ann: Announcement) -> str:
        return ann.value.rsplit(" ", 1)[-1] if ann.rtype == TYPE_SRV else ann.value

    def _drop(self, key: Key) -> None:
        ann = self._ann.pop(key, None)
        if ann is None:
            return
        keys = self._by_value.get(self._index_value(ann))
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_value[self._index_value(ann)]

    def _put(self, ann: Announcement) -> None:
        key = (ann.name, ann.rtype, ann.value)
        self._drop(key)
        self._ann[key] = ann
        self._by_value.setdefault(self._index_value(ann), set()).add(key)
        heapq.heappush(self._heap, (ann.expires, key))
        while len(self._ann) > self.max_entries:
            self._drop(next(iter(self._ann)))
        if len(self._heap) > 4 * self.max_entries:  # lazy deletions piled up
            self._heap = [(a.expires, k) for k, a in self._ann.items()]
            heapq.heapify(self._heap)

    def _live(self, value: str, now: float, limit: int = 64) -> list[Announcement]:
        """Unexpired entries indexed under ``value`` (at most ``limit``: bounded work)."""
        out: list[Announcement] = []
        for k in self._by_value.get(value, ()):
            a = self._ann[k]
            if a.expires > now:
                out.append(a)
                if len(out) >= limit:
                    break
        return out

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
            old = self._ann.get(key)
            if r.ttl == 0:
                # only its announcer (same address or same device) says goodbye
                if old is not None and (old.ip == ip or (mac and old.mac == mac)):
                    self._drop(key)
                continue
            ann = Announcement(r.name, r.rtype, r.value, mac, ip, interface, now + r.ttl)
            self._put(ann)
            if old is None or (old.mac, old.ip) != (mac, ip):
                changed.append(ann)
        return changed

    def expose(self, interface: str, address: str, mac: str, now: float) -> None:
        """Note that ``address`` (announced by ``mac``) was reflected onto ``interface``."""
        self._exposed.put((interface, address), (mac, now + self.discovery_ttl))

    # -- queries ------------------------------------------------------------
    def expire(self, now: float, budget: int = 2048) -> None:
        """Drop what is past its expiry, at most ``budget`` entries per table per call
        (expired entries are ignored by every lookup anyway)."""
        heap = self._heap
        n = budget
        while heap and heap[0][0] <= now and n > 0:
            n -= 1
            when, key = heapq.heappop(heap)
            ann = self._ann.get(key)
            if ann is not None and ann.expires == when:
                self._drop(key)
        self._queries.expire_front(lambda until: until, now, budget)
        self._exposed.expire_front(lambda entry: entry[1], now, budget)

    def announcements(self, now: float) -> list[Announcement]:
        """Unexpired announcements, sorted by name."""
        return sorted(
            (a for a in self._ann.values() if a.expires > now),
            key=lambda a: (a.name, a.rtype, a.value),
        )

    def announcers_of(self, address: str, now: float) -> set[str]:
        """MACs that announced an A/AAAA record with value ``address``."""
        return {a.mac for a in self._live(address, now)
                if a.rtype in (TYPE_A, TYPE_AAAA) and a.mac}

    def names_for(self, address: str, now: float) -> set[str]:
        """Host names resolving to ``address`` plus services/instances pointing at them."""
        hosts = {a.name for a in self._live(address, now) if a.rtype in (TYPE_A, TYPE_AAAA)}
        instances = {a.name for h in hosts for a in self._live(h, now) if a.rtype == TYPE_SRV}
        services = {a.name for i in instances for a in self._live(i, now)
                    if a.rtype == TYPE_PTR}
        return hosts | instances | services

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
