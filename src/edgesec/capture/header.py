"""Header middleware: decoded rows into the original's SQLite tables.

Tables and columns are the original's (``schema.py``); rows are written per
batch with one prepared ``executemany`` per table inside the pipeline's
transaction (the original prepared one INSERT per row and autocommitted),
and indexes on time and MAC make per-device queries cheap (built once at
the end of a bulk import, which is cheaper than maintaining them row by row).
"""

from __future__ import annotations

from edgesec.capture.decode import Row
from edgesec.capture.middleware import Batch, Context
from edgesec.capture.schema import INDEXES, TABLE_NAMES, create_statement, insert_statement


class HeaderMiddleware:
    """Write every decoded layer row to its header table."""

    name = "header"

    def init(self, ctx: Context) -> None:
        """Create the tables and indexes if absent."""
        self._db = ctx.db
        for table in TABLE_NAMES:
            ctx.db.execute(create_statement(table))
        self._bulk = ctx.bulk
        if not ctx.bulk:
            for stmt in INDEXES:
                ctx.db.execute(stmt)
        self._inserts = {t: insert_statement(t) for t in TABLE_NAMES}

    def process(self, batch: Batch) -> None:
        """Insert the batch's rows, one executemany per table."""
        lists: dict[str, list[Row]] = {t: [] for t in TABLE_NAMES}
        appends = {t: lst.append for t, lst in lists.items()}
        for rows in batch.frames:
            for table, row in rows.items():
                appends[table](row)
        execmany = self._db.executemany
        for table, lst in lists.items():
            if lst:
                execmany(self._inserts[table], lst)

    def close(self) -> None:
        """Build the secondary indexes after a bulk import."""
        if self._bulk:
            # the sort behind CREATE INDEX takes up to the page cache again: keep it small
            self._db.execute("PRAGMA cache_size=-4096")
            for stmt in INDEXES:
                self._db.execute(stmt)
