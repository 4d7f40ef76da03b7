"""Row retention for the capture DB: oldest rows go first, by age and by size.

Used by the cleaner middleware. Frames are removed whole: the ``eth`` rows
older than a cut-off time and, in every layer table, the rows of the same
frames. Frame ids are time-ordered UUIDv7 (``decode.new_ids``), so "the
rows of those frames" is the id range up to the newest removed id, one
range delete per table on its primary key. ``flows`` rows whose
``last_seen`` is before the cut-off and ``pcap`` index rows are handled by
the cleaner itself. Deleted pages go to SQLite's free list and are reused,
so the file stops growing at about the bound instead of shrinking.
"""

from __future__ import annotations

import sqlite3

from edgesec.capture.guard import db_used_bytes
from edgesec.capture.schema import TABLE_NAMES

TRIM_AT = 0.9  # trim when the live pages pass 90 % of captureDbSize ...
TRIM_TO = 0.75  # ... down to about 75 %
MAX_ROUNDS = 8


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def delete_before(db: sqlite3.Connection, cutoff_us: int) -> int:
    """Remove every frame captured before ``cutoff_us`` (and flows last seen before).

    Returns the number of ``eth`` rows removed.
    """
    have = _tables(db)
    removed = 0
    if "eth" in have:
        newest = db.execute("SELECT max(id) FROM eth WHERE timestamp < ?",
                            (cutoff_us,)).fetchone()[0]
        if newest is not None:
            removed = db.execute("DELETE FROM eth WHERE timestamp < ?", (cutoff_us,)).rowcount
            for table in TABLE_NAMES:
                if table != "eth" and table in have:
                    db.execute(f"DELETE FROM {table} WHERE id <= ?", (newest,))
    if "flows" in have:
        db.execute("DELETE FROM flows WHERE last_seen < ?", (cutoff_us,))
    return removed


def time_span(db: sqlite3.Connection) -> tuple[int, int] | None:
    """(oldest, newest) timestamp in µs over eth and flows, or None if empty."""
    have = _tables(db)
    lo: list[int] = []
    hi: list[int] = []
    if "eth" in have:
        a, b = db.execute("SELECT min(timestamp), max(timestamp) FROM eth").fetchone()
        if a is not None:
            lo.append(a)
            hi.append(b)
    if "flows" in have:
        a, b = db.execute("SELECT min(last_seen), max(last_seen) FROM flows").fetchone()
        if a is not None:
            lo.append(a)
            hi.append(b)
    return (min(lo), max(hi)) if lo else None


def trim_to_size(db: sqlite3.Connection, limit: int) -> int:
    """Keep the DB's live pages under ``limit`` bytes, removing the oldest frames.

    Does nothing below ``TRIM_AT`` of the limit; otherwise removes the oldest
    share of the time span until under ``TRIM_TO`` (bounded rounds). Returns
    the ``eth`` rows removed.
    """
    if limit <= 0:
        return 0
    used = db_used_bytes(db)
    if used < limit * TRIM_AT:
        return 0
    removed = 0
    for _ in range(MAX_ROUNDS):
        span = time_span(db)
        if span is None or used <= limit * TRIM_TO:
            break
        oldest, newest = span
        share = max((used - limit * TRIM_TO) / used, 0.05)
        cutoff = oldest + max(int((newest - oldest) * share), 1)
        removed += delete_before(db, cutoff)
        used = db_used_bytes(db)
    return removed
