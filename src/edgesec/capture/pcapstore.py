"""Pcap middleware: raw frames into rotating pcap files plus an SQLite index.

Files live in ``pcapDirPath``, by default ``<dirname(captureDbPath)>/pcap``
(mode 0770, as the original). Unlike the original — one pcap file per frame — frames go into
one open file per interface, rotated at ``pcap_rotate_size`` bytes or
``pcap_rotate_seconds``; each file is a standard pcap readable by tcpdump.
Table ``pcap`` keeps the original's columns (``timestamp`` first frame µs,
``name`` file name, ``caplen``/``length`` summed over the file's frames) and
adds ``end_timestamp``, ``packets``, ``size`` (bytes on disk), ``ifname``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edgesec.capture.middleware import Batch, Context
from edgesec.capture.pcapfile import PcapWriter

CREATE = ("CREATE TABLE IF NOT EXISTS pcap (timestamp INTEGER NOT NULL, name TEXT NOT NULL, "
          "caplen INTEGER, length INTEGER, PRIMARY KEY (name))")
EXTRA = (("end_timestamp", "INTEGER"), ("packets", "INTEGER"), ("size", "INTEGER"),
         ("ifname", "TEXT"))
OPEN_FILES_KEY = "pcap.open"


def ensure_table(db: sqlite3.Connection) -> None:
    """Create ``pcap`` (adding our columns to an original table)."""
    db.execute(CREATE)
    have = {r[1] for r in db.execute("PRAGMA table_info(pcap)")}
    for name, kind in EXTRA:
        if name not in have:
            db.execute(f"ALTER TABLE pcap ADD COLUMN {name} {kind}")
    db.execute("CREATE INDEX IF NOT EXISTS pcap_time ON pcap (timestamp)")


@dataclass(slots=True)
class _Open:
    name: str
    writer: PcapWriter
    first: int
    last: int
    caplen: int = 0
    length: int = 0


class PcapMiddleware:
    """Write frames to rotating pcap files and index them."""

    name = "pcap"
    needs_decode = False

    def init(self, ctx: Context) -> None:
        """Create the store folder and the index table."""
        self._ctx = ctx
        self._dir: Path = ctx.options.store_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._dir, 0o770)
        self._max_size = max(ctx.options.pcap_rotate_size, 4096)
        self._max_age = ctx.options.pcap_rotate_seconds * 1_000_000
        ensure_table(ctx.db)
        self._open: dict[str, _Open] = {}
        self._seq = 0
        ctx.stats.setdefault("pcap_files", 0)
        self._shared_open: set[str] = set()
        ctx.shared[OPEN_FILES_KEY] = self._shared_open

    def _new(self, ifname: str, ts: int) -> _Open:
        self._seq += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ifname)
        name = f"{safe}-{ts}-{os.getpid()}-{self._seq}.pcap"
        fh = (self._dir / name).open("wb")
        f = _Open(name, PcapWriter(fh, self._ctx.linktype), ts, ts)
        self._open[ifname] = f
        self._shared_open.add(name)
        self._ctx.stats["pcap_files"] += 1
        self._ctx.db.execute(
            "INSERT OR REPLACE INTO pcap (timestamp, name, caplen, length, end_timestamp, "
            "packets, size, ifname) VALUES (?, ?, 0, 0, ?, 0, 24, ?)", (ts, name, ts, ifname))
        return f

    def _sync(self, f: _Open) -> None:
        f.writer.flush()
        self._ctx.db.execute(
            "UPDATE pcap SET caplen = ?, length = ?, end_timestamp = ?, packets = ?, size = ? "
            "WHERE name = ?", (f.caplen, f.length, f.last, f.writer.packets, f.writer.size, f.name))

    def _finish(self, ifname: str) -> None:
        f = self._open.pop(ifname)
        self._sync(f)
        f.writer.close()
        self._shared_open.discard(f.name)

    def process(self, batch: Batch) -> None:
        """Append the batch, rotating as needed; update the index."""
        if not batch.packets:
            return
        ifname = batch.ifname
        f = self._open.get(ifname)
        if f is None:
            f = self._new(ifname, batch.packets[0][0])
        for ts, length, data in batch.packets:
            if f.writer.packets and (f.writer.size + 16 + len(data) > self._max_size
                                     or ts - f.first >= self._max_age):
                self._finish(ifname)
                f = self._new(ifname, ts)
            f.writer.write(ts, length, data)
            f.caplen += len(data)
            f.length += length
            f.last = ts
        self._sync(f)

    def close(self) -> None:
        """Flush, index and close every open file."""
        for ifname in list(self._open):
            self._finish(ifname)
