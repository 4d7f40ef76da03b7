"""Cleaner middleware: bound the pcap store and the capture DB, oldest first.

After every batch it sums the ``size`` column of the ``pcap`` index and,
while the store is over ``pcap_store_size``, deletes the oldest closed files
(file and index row) first. The original deleted essentially the whole store
once 1000 KiB had accumulated and could loop forever; this one removes
only the excess, oldest first, and never the files still being written.
The bound holds as long as ``pcap_rotate_size`` is below it.

It also keeps the capture DB within ``capture_db_size`` (the header and
flows rows of the oldest frames, :mod:`edgesec.capture.retention`) and,
once a minute, removes frames, flows and closed pcap files older than
``capture_max_age`` seconds (0: no age limit).
"""

from __future__ import annotations

import logging
import time

from edgesec.capture.middleware import Batch, Context
from edgesec.capture.pcapstore import OPEN_FILES_KEY, ensure_table
from edgesec.capture.retention import delete_before, trim_to_size

AGE_CHECK_S = 60.0

log = logging.getLogger(__name__)


class CleanerMiddleware:
    """Delete the oldest pcap files while the store exceeds its bound."""

    name = "cleaner"
    needs_decode = False

    def init(self, ctx: Context) -> None:
        """Make sure the index exists."""
        self._ctx = ctx
        self._bound = ctx.options.pcap_store_size
        self._db_limit = ctx.options.capture_db_size
        self._max_age = ctx.options.capture_max_age
        self._next_age_check = 0.0
        ensure_table(ctx.db)
        ctx.stats.setdefault("pcap_files_removed", 0)
        ctx.stats.setdefault("frames_removed", 0)
        self.clean()

    def clean(self, older_than_us: int | None = None) -> int:
        """Enforce the bound now (and remove files started before ``older_than_us``);
        returns the number of files removed."""
        db = self._ctx.db
        total = db.execute("SELECT coalesce(sum(size), 0) FROM pcap").fetchone()[0]
        if total <= self._bound and older_than_us is None:
            return 0
        busy = self._ctx.shared.get(OPEN_FILES_KEY, set())
        removed = 0
        store = self._ctx.options.store_dir
        for name, size, end in db.execute(
                "SELECT name, coalesce(size, 0), coalesce(end_timestamp, timestamp) FROM pcap "
                "ORDER BY timestamp, name").fetchall():
            if total <= self._bound and (older_than_us is None or end >= older_than_us):
                break
            if name in busy:
                continue
            try:
                (store / name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot remove %s: %s", store / name, exc)
                continue
            db.execute("DELETE FROM pcap WHERE name = ?", (name,))
            total -= size
            removed += 1
        self._ctx.stats["pcap_files_removed"] += removed
        return removed

    def retain(self) -> None:
        """Size bound of the DB every call; the age bound once a minute."""
        db = self._ctx.db
        stats = self._ctx.stats
        stats["frames_removed"] += trim_to_size(db, self._db_limit)
        now = time.monotonic()
        if self._max_age > 0 and not self._ctx.bulk and now >= self._next_age_check:
            self._next_age_check = now + AGE_CHECK_S
            cutoff = int((time.time() - self._max_age) * 1_000_000)
            stats["frames_removed"] += delete_before(db, cutoff)
            self.clean(cutoff)

    def process(self, batch: Batch) -> None:
        """Enforce the bounds after the batch was stored."""
        self.clean()
        self.retain()

    def close(self) -> None:
        """Final pass."""
        self.clean()
