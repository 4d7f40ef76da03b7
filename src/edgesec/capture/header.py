"""Header middleware: decoded rows into the original's SQLite tables.

Tables and columns are the original's (``schema.py``); rows are written per
batch with one prepared ``executemany`` per table inside the pipeline's
transaction (the original prepared one INSERT per row and autocommitted),
and indexes on time and MAC make per-device queries cheap (built once at
the end of a bulk import, which is cheaper than maintaining them row by row).

Live, the inserts run on a writer thread: SQLite releases the GIL while it
executes a statement, so the B-tree work of one batch overlaps the decoding
of the next on a second core (a bulk import inserts on the pipeline's
thread instead, see ``init``). The hand-over queue holds two batches (so
memory stays bounded and a slow disk slows the decoder down instead of
piling up rows); ``on_commit``/``close`` wait until every queued batch is
in, so a commit holds exactly the rows processed before it, and a failed
insert is raised again on the pipeline's thread (where it is counted).
"""

from __future__ import annotations

import queue
import sqlite3
import threading

from edgesec.capture.columnar import Columns, new_columns
from edgesec.capture.middleware import Batch, Context
from edgesec.capture.schema import (
    INDEXES,
    TABLE_NAMES,
    TABLES,
    WIDTHS,
    create_statement,
    insert_statement,
)

QUEUE_BATCHES = 2
# Rows per INSERT statement: one statement step per 32 rows instead of one per
# row costs ~30% less CPU (fewer VDBE runs, fewer GIL hand-overs); well under
# SQLite's 999 bound variables for the widest table (13 columns).
ROWS_PER_INSERT = 32


def multi_insert_statement(table: str, rows: int) -> str:
    """INSERT of ``rows`` rows at once for ``table``."""
    one = "(" + ", ".join("?" for _ in TABLES[table]) + ")"
    return insert_statement(table).split(" VALUES ")[0] + " VALUES " + ", ".join([one] * rows)


class HeaderMiddleware:
    """Write every decoded layer row to its header table."""

    name = "header"
    columnar = True  # takes Batch.columns (bulk import) as well as Batch.frames

    def init(self, ctx: Context) -> None:
        """Create the tables and indexes if absent; start the writer thread (live)."""
        self._db = ctx.db
        for table in TABLE_NAMES:
            ctx.db.execute(create_statement(table))
        self._bulk = ctx.bulk
        if not ctx.bulk:
            for stmt in INDEXES:
                ctx.db.execute(stmt)
        self._inserts = [(t, WIDTHS[t], insert_statement(t),
                          multi_insert_statement(t, ROWS_PER_INSERT)) for t in TABLE_NAMES]
        self._queue: queue.Queue[Columns | None] = queue.Queue(QUEUE_BATCHES)
        self._error: BaseException | None = None
        # A bulk import (recap) inserts on the pipeline's thread: binding the
        # values holds the GIL for about half of the insert time, so a writer
        # thread overlapped little and cost ~10% more CPU in GIL hand-overs.
        self._thread: threading.Thread | None = None
        if not ctx.bulk:
            self._thread = threading.Thread(target=self._write_loop, name="capture-header",
                                            daemon=True)
            self._thread.start()

    def _write(self, cols: Columns) -> None:
        """Insert one batch: each table's flat values, one slice per statement."""
        execmany = self._db.executemany
        k = ROWS_PER_INSERT
        for table, width, one, many in self._inserts:
            values = cols[table]
            end = len(values)
            if end % width:  # a row of the wrong size would shift every later one
                raise sqlite3.ProgrammingError(
                    f"{table}: {end} values are not rows of {width} columns")
            step = k * width
            full = end - end % step
            if full:
                execmany(many, [values[j:j + step] for j in range(0, full, step)])
            if full < end:
                execmany(one, [values[j:j + width] for j in range(full, end, width)])

    def _write_loop(self) -> None:
        while True:
            cols = self._queue.get()
            try:
                if cols is None:
                    return
                if self._error is None:
                    self._write(cols)
            except BaseException as exc:  # raised again on the pipeline's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_error(self) -> None:
        exc, self._error = self._error, None
        if exc is not None:
            raise exc

    def process(self, batch: Batch) -> None:
        """Queue the batch's rows, per table, for the writer (bulk: insert them)."""
        self._raise_error()
        cols = batch.columns
        if cols is None:  # per-frame rows: flatten them per table
            cols = new_columns()
            extends = {t: values.extend for t, values in cols.items()}
            for rows in batch.frames:
                for table, row in rows.items():
                    extends[table](row)
        if self._thread is None:
            self._write(cols)
        else:
            self._queue.put(cols)

    def on_commit(self) -> None:
        """Wait until every queued row is inserted (the commit follows)."""
        self._queue.join()
        self._raise_error()

    def drain(self) -> None:
        """Wait for the writer and forget its error (before a rollback)."""
        self._queue.join()
        self._error = None

    def close(self) -> None:
        """Stop the writer; build the secondary indexes after a bulk import."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._raise_error()
        if self._bulk:
            # the sort behind CREATE INDEX takes up to the page cache again: keep it small
            self._db.execute("PRAGMA cache_size=-4096")
            for stmt in INDEXES:
                self._db.execute(stmt)
