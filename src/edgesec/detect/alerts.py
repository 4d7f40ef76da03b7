"""The one alert record type, and where alerts go: SQLite, EVE JSON, the event bus.

An :class:`Alert` is produced by the detection engine (in the detect worker
process) and recorded by :class:`AlertSink` in the daemon: a row in the
``alerts`` table of the detect DB, a Suricata-shaped ``event_type: "alert"``
line in the EVE file, and an ``alert`` event (``ALERT <mac> <kind>
<severity>`` to supervisor subscribers).

Severity: 1 low, 2 medium, 3 high, 4 critical (higher is worse, the
``quarantineSeverity`` threshold compares against it).  Suricata numbers the
other way round (1 is the highest), so EVE carries ``5 - severity`` clipped
to 1..3 (critical and high both 1).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEVERITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "critical"}
MAX_ALERT_ROWS = 100_000  # the oldest rows are deleted beyond this
# Stable signature ids per kind (EVE ``alert.signature_id``), in a private range.
SIGNATURE_IDS = {
    "port_scan": 9_160_001, "lateral_probe": 9_160_002, "dns_tunnel": 9_160_003,
    "nxdomain_burst": 9_160_004, "upload_volume": 9_160_005, "arp_spoof": 9_160_006,
    "rogue_dhcp": 9_160_007, "ip_spoof": 9_160_008, "mac_change": 9_160_009,
    "new_device_flood": 9_160_010, "new_destination": 9_160_011, "new_domain": 9_160_012,
    "beacon": 9_160_013,
}


@dataclass(frozen=True, slots=True)
class Alert:
    """One detection: who, what, how bad, and the packet evidence."""

    ts: float  # unix seconds
    mac: str  # the device it is about ("" when none, e.g. a new-device flood)
    kind: str
    severity: int
    message: str
    src_ip: str = ""
    dst_ip: str = ""
    proto: int = 0
    src_port: int | None = None
    dst_port: int | None = None
    community_id: str = ""
    flow_id: int = 0
    in_iface: str = ""
    count: int = 1  # alerts of this kind for this device aggregated into this one
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def eve_alert(a: Alert) -> dict[str, Any]:
    """Suricata's ``alert`` event shape for one alert."""
    proto = {1: "ICMP", 6: "TCP", 17: "UDP"}.get(a.proto, str(a.proto) if a.proto else "")
    ev: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(a.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
        "event_type": "alert",
        "in_iface": a.in_iface,
        "src_ip": a.src_ip, "dest_ip": a.dst_ip, "proto": proto,
        "alert": {
            "action": "allowed", "gid": 1,
            "signature_id": SIGNATURE_IDS.get(a.kind, 9_160_000),
            "rev": 1, "signature": f"EDGESEC {a.kind}: {a.message}",
            "category": a.kind, "severity": max(1, min(3, 5 - a.severity)),
            "metadata": {"edgesec_severity": [str(a.severity)], "count": [str(a.count)]},
        },
        "ether": {"src_mac": a.mac} if a.mac else {},
    }
    if a.flow_id:
        ev["flow_id"] = a.flow_id
    if a.community_id:
        ev["community_id"] = a.community_id
    if a.src_port is not None:
        ev["src_port"] = a.src_port
    if a.dst_port is not None:
        ev["dest_port"] = a.dst_port
    return ev


CREATE = (
    "CREATE TABLE IF NOT EXISTS alerts (ts REAL NOT NULL, mac TEXT NOT NULL, kind TEXT NOT NULL,"
    " severity INTEGER NOT NULL, message TEXT NOT NULL, community_id TEXT, flow_id INTEGER,"
    " data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts)",
)


def open_db(path: Path | str) -> sqlite3.Connection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    for stmt in CREATE:
        db.execute(stmt)
    return db


class AlertStore:
    """The ``alerts`` table (bounded to MAX_ALERT_ROWS) and the EVE file."""

    def __init__(self, db_path: Path | str, eve_path: Path | None = None) -> None:
        self.db = open_db(db_path)
        self.eve_path = eve_path
        self.written = 0

    def add(self, alert: Alert) -> None:
        cur = self.db.execute(
            "INSERT INTO alerts (ts, mac, kind, severity, message, community_id, flow_id, data)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (alert.ts, alert.mac, alert.kind, alert.severity, alert.message,
             alert.community_id, alert.flow_id, alert.to_json()))
        if cur.lastrowid and cur.lastrowid % 1000 == 0:
            self.db.execute("DELETE FROM alerts WHERE rowid <= ?",
                            (cur.lastrowid - MAX_ALERT_ROWS,))
        if self.eve_path is not None:
            line = json.dumps(eve_alert(alert), separators=(",", ":")) + "\n"
            # one write(2) of one line with O_APPEND: lines from the capture
            # worker's EVE middleware never interleave inside it
            fd = os.open(self.eve_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        self.written += 1

    def list(self, since: float = 0.0, limit: int = 1000) -> list[Alert]:
        rows = self.db.execute(
            "SELECT data FROM alerts WHERE ts >= ? ORDER BY rowid DESC LIMIT ?", (since, limit))
        return [Alert.from_dict(json.loads(r[0])) for r in rows][::-1]

    def close(self) -> None:
        self.db.close()


def now() -> float:
    return time.time()
