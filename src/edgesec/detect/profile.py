"""Per-device behaviour profiles: what a device normally does (pure, bounded).

A profile holds the external destinations, destination ports, DNS names and
IP protocols a device used, the hours of the day it was active and its peak
upload per ``uploadWindow``.  During the learning window (``learningWindow``
seconds from the first packet) everything is learned; after it, only the
upload peak keeps learning (slowly) and new destinations or names raise
low-severity alerts (then join the profile, so each alerts once).

Bound: at most MAX_DESTS destinations, MAX_DOMAINS names, MAX_PORTS ports:
about 80 KiB in memory and 28 KiB on disk when every bound is reached with
long names, ~3 KiB for a typical device (``bench/detect.py``); at most
MAX_PROFILES devices are kept (the least recently active go first), and only
registry devices get one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MAX_DESTS = 256
MAX_DOMAINS = 256
MAX_PORTS = 128
MAX_PROFILES = 1024


@dataclass(slots=True)
class Profile:
    first_seen: float
    last_seen: float = 0.0
    dests: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    protos: set[int] = field(default_factory=set)
    hours: int = 0  # bit h set: active during hour h (UTC)
    upload_peak: int = 0  # bytes per upload window
    packets: int = 0
    dirty: bool = False

    def learning(self, now: float, window: float) -> bool:
        return now - self.first_seen < window

    def learn_dest(self, ip: str) -> bool:
        """Add ``ip``; False when the profile is full."""
        if ip in self.dests:
            return True
        if len(self.dests) >= MAX_DESTS:
            return False
        self.dests.add(ip)
        self.dirty = True
        return True

    def learn_domain(self, name: str) -> bool:
        if name in self.domains:
            return True
        if len(self.domains) >= MAX_DOMAINS:
            return False
        self.domains.add(name[:254])
        self.dirty = True
        return True

    def learn_port(self, port: int) -> None:
        if port not in self.ports and len(self.ports) < MAX_PORTS:
            self.ports.add(port)
            self.dirty = True

    def to_json(self) -> str:
        return json.dumps({
            "first_seen": self.first_seen, "last_seen": self.last_seen,
            "dests": sorted(self.dests), "domains": sorted(self.domains),
            "ports": sorted(self.ports), "protos": sorted(self.protos), "hours": self.hours,
            "upload_peak": self.upload_peak, "packets": self.packets})

    @classmethod
    def from_json(cls, text: str) -> Profile:
        d = json.loads(text)
        return cls(first_seen=float(d["first_seen"]), last_seen=float(d.get("last_seen", 0)),
                   dests=set(d.get("dests", [])[:MAX_DESTS]),
                   domains=set(d.get("domains", [])[:MAX_DOMAINS]),
                   ports=set(d.get("ports", [])[:MAX_PORTS]), protos=set(d.get("protos", [])),
                   hours=int(d.get("hours", 0)), upload_peak=int(d.get("upload_peak", 0)),
                   packets=int(d.get("packets", 0)))


def parent_domain(name: str) -> str:
    """The registrable-ish part of a name: its last two labels (``a.b.example.com`` ->
    ``example.com``), so a CDN's many hosts count as one name."""
    labels = name.rstrip(".").lower().split(".")
    return ".".join(labels[-2:])
