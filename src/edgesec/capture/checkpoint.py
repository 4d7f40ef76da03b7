"""WAL checkpoints of the live capture DB on a thread of their own.

A checkpoint copies the pages committed to the WAL into the DB file and
syncs both (``synchronous=NORMAL``). Run by SQLite's auto-checkpoint it
happens inside the COMMIT of the capture pipeline, so decoding and
inserting stopped for its reads, writes and two fsyncs (about a third of
the commit's time at high rates, bench/capture.py). The
:class:`Checkpointer` runs it on its own connection and thread instead:
SQLite lets a ``PASSIVE`` checkpoint proceed while the pipeline's
connection keeps writing, and the thread holds no GIL while SQLite works.

The pipeline kicks it after a commit once about
:data:`CHECKPOINT_CHANGES` rows were written since the last kick (about
1 MiB of pages, what the auto-checkpoint waited for; an idle gateway is not
woken). The WAL stays bounded: the pipeline's connection keeps a larger
auto-checkpoint as a safety net, and :meth:`Checkpointer.bound` makes the
committing thread wait for a checkpoint when the WAL file passes
:data:`WAL_HARD_LIMIT` anyway. Idle, the thread sleeps on an event (no
timeout).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

MIB = 1024 * 1024
CHECKPOINT_CHANGES = 8192  # rows written between two checkpoints (~1 MiB of pages)
SAFETY_AUTOCHECKPOINT = 4 * MIB  # the writing connection checkpoints itself beyond this
WAL_HARD_LIMIT = 16 * MIB  # beyond this WAL file size the committer waits for a checkpoint


class Checkpointer:
    """Run ``PRAGMA wal_checkpoint(PASSIVE)`` on a thread when kicked."""

    def __init__(self, path: Path, wal_size_limit: int) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self.runs = 0
        self.errors = 0
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA cache_size=-256")  # it copies WAL frames, caches nothing
        self._db.execute(f"PRAGMA journal_size_limit={wal_size_limit}")
        self._kick = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="capture-checkpoint",
                                        daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Ask for a checkpoint (returns at once)."""
        self._idle.clear()
        self._kick.set()

    def bound(self, timeout: float = 30.0) -> None:
        """If the WAL file is over :data:`WAL_HARD_LIMIT`, checkpoint and wait for it."""
        try:
            size = self.wal.stat().st_size
        except OSError:
            return
        if size > WAL_HARD_LIMIT:
            self.kick()
            self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._kick.wait()
            self._kick.clear()
            if self._stop:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.runs += 1
            except sqlite3.Error as exc:  # e.g. busy: the next kick tries again
                self.errors += 1
                log.debug("capture checkpoint failed: %s", exc)
            if not self._kick.is_set():
                self._idle.set()

    def close(self) -> None:
        """Stop the thread and close its connection."""
        self._stop = True
        self._kick.set()
        self._thread.join()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def wal_pages(page_size: int, size: int = SAFETY_AUTOCHECKPOINT) -> int:
    """``wal_autocheckpoint`` pages for ``size`` bytes of WAL."""
    return max(1, size // max(page_size, 512))

