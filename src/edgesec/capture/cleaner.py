"""Cleaner middleware: keep the pcap store under ``pcap_store_size`` bytes.

After every batch it sums the ``size`` column of the ``pcap`` index and,
while the store is over the bound, deletes the oldest closed files (file
and index row) first. The original deleted essentially the whole store
once 1000 KiB had accumulated and could loop forever; this one removes
only the excess, oldest first, and never the files still being written.
The bound holds as long as ``pcap_rotate_size`` is below it.
"""

from __future__ import annotations

import logging

from edgesec.capture.middleware import Batch, Context
from edgesec.capture.pcapstore import OPEN_FILES_KEY, ensure_table

log = logging.getLogger(__name__)


class CleanerMiddleware:
    """Delete the oldest pcap files while the store exceeds its bound."""

    name = "cleaner"
    needs_decode = False

    def init(self, ctx: Context) -> None:
        """Make sure the index exists."""
        self._ctx = ctx
        self._bound = ctx.options.pcap_store_size
        ensure_table(ctx.db)
        ctx.stats.setdefault("pcap_files_removed", 0)
        self.clean()

    def clean(self) -> int:
        """Enforce the bound now; returns the number of files removed."""
        db = self._ctx.db
        total = db.execute("SELECT coalesce(sum(size), 0) FROM pcap").fetchone()[0]
        if total <= self._bound:
            return 0
        busy = self._ctx.shared.get(OPEN_FILES_KEY, set())
        removed = 0
        store = self._ctx.options.store_dir
        for name, size in db.execute(
                "SELECT name, coalesce(size, 0) FROM pcap ORDER BY timestamp, name").fetchall():
            if total <= self._bound:
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

    def process(self, batch: Batch) -> None:
        """Enforce the bound after the batch was stored."""
        self.clean()

    def close(self) -> None:
        """Final pass."""
        self.clean()
