"""Per-device traffic of the last hour and "last seen", from the capture database.

The capture worker (another process) owns the database; this module only
reads it: a read-only SQLite connection (``mode=ro``, ``query_only``), in a
thread so the control loop never waits on it, and the answer is kept for
:data:`CACHE_S` seconds whatever the dashboard asks. Two grouped queries over
the last hour of ``eth`` use its ``(timestamp, id)`` primary key; nothing is
read when capture is off or its database is missing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

CACHE_S = 30.0
WINDOW_S = 3600
BUSY_TIMEOUT_MS = 200


@dataclass(frozen=True, slots=True)
class Traffic:
    sent_packets: int = 0
    sent_bytes: int = 0
    received_packets: int = 0
    received_bytes: int = 0
    last_seen_us: int = 0  # the last frame the device sent, 0 if none in the window


def read(db: Path, now: float | None = None) -> dict[str, Traffic]:
    """MAC -> traffic of the last hour (empty when the database cannot be read)."""
    since = int(((now or time.time()) - WINDOW_S) * 1_000_000)
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error:
        return {}
    try:
        conn.execute("PRAGMA query_only = 1")
        sent = conn.execute(
            "SELECT ether_shost, COUNT(*), COALESCE(SUM(length), 0), MAX(timestamp) FROM eth "
            "WHERE timestamp >= ? GROUP BY ether_shost", (since,)).fetchall()
        received = conn.execute(
            "SELECT ether_dhost, COUNT(*), COALESCE(SUM(length), 0) FROM eth "
            "WHERE timestamp >= ? GROUP BY ether_dhost", (since,)).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    out: dict[str, list[int]] = {}
    for mac, packets, octets, last in sent:
        out.setdefault(str(mac).lower(), [0, 0, 0, 0, 0])[0:2] = [packets, octets]
        out[str(mac).lower()][4] = int(last or 0)
    for mac, packets, octets in received:
        out.setdefault(str(mac).lower(), [0, 0, 0, 0, 0])[2:4] = [packets, octets]
    return {mac: Traffic(*v) for mac, v in out.items()}


class TrafficCache:
    """The last answer of :func:`read`, refreshed in a thread at most every CACHE_S."""

    def __init__(self, db: Path | None) -> None:
        self.db = db
        self._at = 0.0
        self._value: dict[str, Traffic] = {}
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Traffic]:
        if self.db is None:
            return {}
        async with self._lock:
            if time.monotonic() - self._at >= CACHE_S:
                self._value = await asyncio.to_thread(read, self.db)
                self._at = time.monotonic()
        return self._value
