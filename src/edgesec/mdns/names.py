"""Who owns an mDNS name, so one device cannot take over another's (pure).

Owns the rule "a host name or a service-instance name belongs to one device"
and the memory of refused take-overs:

* **identity** — a host name ``<label>.local`` belongs to the device whose
  registry label is ``<label>`` (set by the administrator, strongest), or else
  to the device(s) whose DHCP lease hostname is ``<label>``; when several
  devices sent the same DHCP hostname, the one that announced the name first
  keeps it;
* **first seen** — any other host or instance name belongs to the first device
  that announced it (an A/AAAA or SRV record in a response), for as long as its
  record lives and ``hold`` seconds after (a reboot does not free it; the
  hold is extended when a re-announcement moves it by more than a quarter).

A response record for a name owned by another device is a :class:`Conflict`:
the reflector does not reflect that packet, and the refused claim is kept for
the discovery window so the bridging rule can explain why a connection to the
claimant is not bridged.  Claimants are device MACs; a source that is not a
known device may claim free names but never becomes an owner.

Bounds: at most ``per_owner`` first-seen names per device (its own oldest go
first, so a device flooding names only evicts itself), ``max_entries`` in all
(new names are then left unowned and counted in ``unrecorded``), and at most
16 refused names remembered per claimed address.  Time is passed in.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Conflict", "NameOwners", "host_label", "identity_key"]

MAX_REFUSED_PER_ADDRESS = 16


def identity_key(text: str) -> str:
    """A registry label or DHCP hostname as the host label it stands for."""
    return "-".join(text.strip().lower().split())


def host_label(name: str) -> str:
    """``dev3`` for ``dev3.local`` (a plain host name), else ""."""
    labels = name.lower().rstrip(".").split(".")
    return labels[0] if len(labels) == 2 and labels[1] == "local" else ""


@dataclass(frozen=True, slots=True)
class Conflict:
    """A refused claim: ``claimant`` announced ``name``, which ``owner`` holds."""

    name: str
    claimant: str
    owner: str
    why: str  # "registry label", "DHCP hostname", "first seen"
    expires: float = 0.0


@dataclass(frozen=True, slots=True)
class _Identity:
    labels: frozenset[str]
    hosts: frozenset[str]


class NameOwners:
    """Owners of host and instance names, and the claims refused against them."""

    def __init__(self, hold: float = 600.0, window: float = 600.0,
                 max_entries: int = 8192, per_owner: int = 128) -> None:
        self.hold = hold
        self.window = window
        self.max_entries = max_entries
        self.per_owner = per_owner
        self.unrecorded = 0
        self._first: dict[str, tuple[str, float]] = {}  # name -> (owner, expires)
        self._by_owner: dict[str, OrderedDict[str, None]] = {}
        self._heap: list[tuple[float, str]] = []
        self._identity: dict[str, _Identity] = {}
        self._refused: OrderedDict[str, dict[str, Conflict]] = OrderedDict()

    # -- identities (registry labels, DHCP hostnames) ---------------------------
    def set_identities(self, labels: Iterable[tuple[str, str]],
                       hostnames: Iterable[tuple[str, str]]) -> None:
        """Replace the identity table from ``(mac, label)`` and ``(mac, hostname)`` pairs."""
        by_label: dict[str, set[str]] = {}
        by_host: dict[str, set[str]] = {}
        for table, pairs in ((by_label, labels), (by_host, hostnames)):
            for mac, text in pairs:
                key = identity_key(text)
                if mac and key and key != "*":
                    table.setdefault(key, set()).add(mac)
        self._identity = {
            k: _Identity(frozenset(by_label.get(k, ())), frozenset(by_host.get(k, ())))
            for k in by_label.keys() | by_host.keys()}

    # -- ownership ----------------------------------------------------------------
    def _first_owner(self, name: str, now: float) -> str:
        entry = self._first.get(name)
        return entry[0] if entry is not None and entry[1] > now else ""

    def owners(self, name: str, now: float) -> tuple[frozenset[str], str]:
        """``(owners, why)`` of ``name``; no owners when it is free."""
        label = host_label(name) if self._identity else ""
        ident = self._identity.get(label) if label else None
        if ident is not None and ident.labels:
            return ident.labels, "registry label"
        first = self._first_owner(name, now)
        if ident is not None and ident.hosts:
            if len(ident.hosts) > 1 and first in ident.hosts:
                return frozenset((first,)), "DHCP hostname, first seen"
            return ident.hosts, "DHCP hostname"
        return (frozenset((first,)), "first seen") if first else (frozenset(), "")

    def claim(self, name: str, claimant: str, ttl: float, now: float,
              points_to: str = "") -> Conflict | None:
        """``claimant`` announces ``name`` for ``ttl`` s: a conflict, or None (recorded).

        ``points_to`` is the device whose leased address an A/AAAA record
        carries: a record that still points at the owner (a sleep proxy
        answering for it) is no take-over.
        """
        owners, why = self.owners(name, now)
        if owners and claimant not in owners:
            if points_to and points_to in owners:
                return None
            return Conflict(name, claimant, min(owners), why, now + self.window)
        if claimant and ttl > 0:
            self._record(name, claimant, now + ttl + self.hold, now)
        return None

    def _record(self, name: str, owner: str, until: float, now: float) -> None:
        old = self._first.get(name)
        if old is not None and old[1] > now:
            if old[0] != owner or until <= old[1] + self.hold / 4:
                return  # held by another (an identity owner re-claiming), or not much news
        else:
            if old is not None:
                self._forget(name)  # expired
            self.expire(now, budget=64)
            if len(self._first) >= self.max_entries:
                self.unrecorded += 1
                return
        self._first[name] = (owner, until)
        names = self._by_owner.setdefault(owner, OrderedDict())
        names[name] = None
        names.move_to_end(name)
        while len(names) > self.per_owner:
            self._forget(next(iter(names)))
        heapq.heappush(self._heap, (until, name))
        if len(self._heap) > 4 * self.max_entries:
            self._heap = [(u, n) for n, (_o, u) in self._first.items()]
            heapq.heapify(self._heap)

    def _forget(self, name: str) -> None:
        entry = self._first.pop(name, None)
        if entry is None:
            return
        names = self._by_owner.get(entry[0])
        if names is not None:
            names.pop(name, None)
            if not names:
                del self._by_owner[entry[0]]

    def expire(self, now: float, budget: int = 2048) -> None:
        """Free names whose hold is over and forget old refusals (bounded work per call)."""
        heap = self._heap
        while heap and heap[0][0] <= now and budget > 0:
            budget -= 1
            _until, name = heapq.heappop(heap)
            entry = self._first.get(name)
            if entry is not None and entry[1] <= now:
                self._forget(name)
        while self._refused and budget > 0:
            first = next(iter(self._refused.values()))
            if max(c.expires for c in first.values()) > now:
                break
            self._refused.popitem(last=False)
            budget -= 1

    # -- refused claims ---------------------------------------------------------------
    def note_refused(self, conflict: Conflict, addresses: Iterable[str]) -> None:
        """Remember that ``conflict.name`` was refused to the claimant at ``addresses``."""
        for addr in addresses:
            names = self._refused.pop(addr, {})
            names.pop(conflict.name, None)
            names[conflict.name] = conflict
            while len(names) > MAX_REFUSED_PER_ADDRESS:
                del names[next(iter(names))]
            self._refused[addr] = names
            while len(self._refused) > self.max_entries:
                self._refused.popitem(last=False)

    def refused_at(self, address: str, now: float) -> Mapping[str, Conflict]:
        """Live refused claims made for ``address``: name -> conflict."""
        names = self._refused.get(address, {})
        return {n: c for n, c in names.items() if c.expires > now}

    @property
    def identities(self) -> int:
        """How many host labels have an identity owner (label or DHCP hostname)."""
        return len(self._identity)

    def __len__(self) -> int:
        return len(self._first)


MAX_LEASE_BYTES = 1 << 20


def lease_hostnames(text: str) -> list[tuple[str, str]]:
    """``(mac, hostname)`` of each IPv4 lease in dnsmasq's lease-file text.

    A line is ``<expiry> <mac> <ip> <hostname|*> <client-id>``; IPv6 lines
    (``duid``, or an address with ':') and malformed lines are skipped.
    """
    out: list[tuple[str, str]] = []
    for line in text[:MAX_LEASE_BYTES].splitlines():
        f = line.split()
        if len(f) >= 4 and f[1].count(":") == 5 and ":" not in f[2] and f[3] != "*":
            out.append((f[1].lower(), f[3]))
    return out
