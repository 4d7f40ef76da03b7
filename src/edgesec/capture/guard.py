"""Storage guard: capture never endangers the filesystem it writes to.

Before every batch the pipeline asks :meth:`StorageGuard.check` whether it
may write. It may not when

* the free space of a filesystem capture writes to (the capture DB's folder,
  the pcap store, the EVE file) is below ``captureReserve`` plus a margin for
  what one step can still write (SQLite's page cache flushed at a commit and
  again at a checkpoint, plus one batch), or
* the capture DB holds more than ``captureDbSize`` bytes of live pages (the
  cleaner middleware trims the oldest rows before that; without it this is
  where capture stops).

A refused batch is dropped and counted by the caller; the reason is
reported (STATUS shows capture degraded) and writing resumes by itself once
the condition clears. ``statvfs`` and two PRAGMAs cost a few microseconds,
so the check runs for every batch.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from edgesec.capture.options import reserve_bytes

MIB = 1024 * 1024


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (statvfs needs one)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def db_used_bytes(db: sqlite3.Connection) -> int:
    """Bytes of the DB's pages in use (the file minus its free list)."""
    page_size: int = db.execute("PRAGMA page_size").fetchone()[0]
    pages: int = db.execute("PRAGMA page_count").fetchone()[0]
    free: int = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size


def human(n: float) -> str:
    """``12.3 MiB``."""
    return f"{n / MIB:.1f} MiB"


class StorageGuard:
    """Decide whether capture may write now; say why not."""

    def __init__(self, db: sqlite3.Connection | None, paths: Iterable[Path], *,
                 reserve: str, db_limit: int, margin: int) -> None:
        self._db = db
        self._paths = list(dict.fromkeys(_existing(p) for p in paths))
        self._reserve = reserve
        self.db_limit = db_limit
        self.margin = margin
        self.reason = ""

    def free_space(self) -> list[tuple[Path, int, int]]:
        """(path, free bytes for us, reserve bytes) per watched filesystem."""
        out = []
        seen: set[int] = set()
        for p in self._paths:
            st = os.statvfs(p)
            if st.f_fsid in seen:
                continue
            seen.add(st.f_fsid)
            out.append((p, st.f_bavail * st.f_frsize,
                        reserve_bytes(self._reserve, st.f_blocks * st.f_frsize)))
        return out

    def check(self) -> str:
        """Empty string if writing is safe, else the reason (also kept in :attr:`reason`)."""
        reason = ""
        for path, free, reserve in self.free_space():
            if free < reserve + self.margin:
                reason = (f"capture paused: {human(free)} free on {path}, "
                          f"reserve {human(reserve)} + margin {human(self.margin)}")
                break
        if not reason and self._db is not None and self.db_limit > 0:
            used = db_used_bytes(self._db)
            if used >= self.db_limit:
                reason = (f"capture paused: capture DB holds {human(used)}, its bound "
                          f"captureDbSize is {human(self.db_limit)} (add the cleaner middleware "
                          "to keep the newest rows)")
        self.reason = reason
        return reason
