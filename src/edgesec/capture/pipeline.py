"""The capture pipeline: decode batches and run them through the middlewares.

Shared by live capture (the worker process) and ``edgesec recap``. Owns the
capture-DB connection and the middleware instances, in order. Transactions:
live capture commits by time (``commitInterval`` seconds, or sooner after
``COMMIT_PACKETS`` packets), so an idle or slow gateway writes a few pages
every few seconds instead of per batch; recap commits per batch, or once
for the whole run in single-transaction mode. Live capture also asks a
:class:`~edgesec.capture.guard.StorageGuard` before every batch and drops
(and counts) batches while it refuses. A middleware that raises is logged
and counted, never stops the others.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from edgesec.capture.checkpoint import (
    CHECKPOINT_CHANGES,
    SAFETY_AUTOCHECKPOINT,
    Checkpointer,
    wal_pages,
)
from edgesec.capture.columnar import decode_columns
from edgesec.capture.decode import decode, new_ids
from edgesec.capture.guard import MIB, StorageGuard
from edgesec.capture.middleware import Batch, Context, Middleware, load
from edgesec.capture.options import CaptureOptions
from edgesec.capture.pcapfile import Packet
from edgesec.capture.schema import WIDTHS

log = logging.getLogger(__name__)

# A live transaction is committed after this many packets at the latest: it bounds
# what one commit (pages spilled into the WAL) and the checkpoint after it (the
# same pages copied into the DB) can add to the disk between two guard checks
# (rows are well under 1 KiB per frame).
COMMIT_PACKETS = 8192
TXN_BYTES = 8 * MIB
LIVE_CACHE = 4 * MIB  # live page cache: tables grow at their end, the working set is small
BULK_CACHE = 16 * MIB
WAL_CHECKPOINT_PAGES = 1024  # 1 MiB of the live DB's 1 KiB pages (4 MiB of 4 KiB)
WAL_SIZE_LIMIT = 4 * MIB  # the WAL is truncated to this after a checkpoint


LIVE_PAGE_SIZE = 2048  # a new live DB: small pages for quiet commits, bigger for B-tree CPU (docs)
FRESH_PAGE_SIZE = 16384  # a new recap DB: fewer, fuller B-tree pages per row (bench/capture.py)


def is_fresh(path: Path) -> bool:
    """Whether ``path`` is a DB yet to be created (absent or empty, no WAL beside it)."""
    if str(path) == ":memory:":
        return False
    wal = path.with_name(path.name + "-wal")
    return (not path.exists() or (path.is_file() and path.stat().st_size == 0)) \
        and not wal.exists()


def open_fresh_db(path: Path, cache: int = BULK_CACHE) -> sqlite3.Connection:
    """Open a DB that does not exist yet for a bulk import: no journal, no syncs.

    Nothing of value is in the file before the import, so a rollback journal
    or WAL only doubles the writes (every page once into the log, once into
    the DB at the checkpoint). :func:`finish_fresh_db` turns the finished DB
    into a WAL DB like the live one and syncs it once. A killed import leaves
    a file to delete and redo, which is what the import would redo anyway.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA page_size={FRESH_PAGE_SIZE}")
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute(f"PRAGMA cache_size=-{cache // 1024}")
    return db


def finish_fresh_db(db: sqlite3.Connection, path: Path) -> None:
    """After a fresh import: WAL mode as every capture DB, then one fsync."""
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_db(path: Path, cache: int = BULK_CACHE, page_size: int = 0) -> sqlite3.Connection:
    """Open the capture DB: WAL, synchronous=NORMAL, 5 s busy timeout, bounded WAL.

    Capture data is telemetry: NORMAL keeps every committed batch across a
    process crash and loses at most the last commit on power loss, at a
    fraction of FULL's fsync cost. The WAL is checkpointed every 1 MiB and
    truncated to 4 MiB (``journal_size_limit``), so it cannot grow far
    beyond one transaction next to the DB. ``page_size`` applies to a new
    file only (live capture uses 1 KiB: a commit of a few packets rewrites
    the last page of each table and index it touched, so smaller pages mean
    fewer bytes written per packet on a quiet gateway).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    if page_size:
        db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{cache // 1024}")
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    return db


def storage_guard(options: CaptureOptions, db: sqlite3.Connection,
                  middlewares: Sequence[str]) -> StorageGuard:
    """The live guard over every place the configured middlewares write to."""
    paths = [options.capture_db_path.parent]
    if "pcap" in middlewares:
        paths.append(options.store_dir)
    if "eve" in middlewares:
        paths.append(options.eve_file.parent)
    # margin: the page cache (flushed at a commit, again at a checkpoint), one
    # transaction and the WAL the checkpoint thread may leave behind
    return StorageGuard(db, paths, reserve=options.capture_reserve,
                        db_limit=options.capture_db_size,
                        margin=2 * LIVE_CACHE + TXN_BYTES + SAFETY_AUTOCHECKPOINT + MIB)


class Pipeline:
    """Decode packets and hand them to the middlewares in order."""

    def __init__(self, options: CaptureOptions, middlewares: Sequence[str | Middleware],
                 *, transaction: bool = False, linktype: int = 1, bulk: bool = False,
                 live: bool = False) -> None:
        self.options = options
        # a bulk import into a new file needs no journal (see open_fresh_db)
        self.fresh = bulk and not live and is_fresh(options.capture_db_path)
        self.checkpointer: Checkpointer | None = None
        if live:
            self.db = open_db(options.capture_db_path, LIVE_CACHE, LIVE_PAGE_SIZE)
            # checkpoints on their own thread; the connection's own is a safety net
            page: int = self.db.execute("PRAGMA page_size").fetchone()[0]
            self.db.execute(f"PRAGMA wal_autocheckpoint={wal_pages(page)}")
            self.checkpointer = Checkpointer(options.capture_db_path, WAL_SIZE_LIMIT)
            self._ckpt_mark = 0
        elif self.fresh:
            self.db = open_fresh_db(options.capture_db_path, BULK_CACHE)
        else:
            self.db = open_db(options.capture_db_path, BULK_CACHE)
        self.ctx = Context(db=self.db, options=options, linktype=linktype,
                           transaction=transaction, bulk=bulk)
        self.middlewares: list[Middleware] = []
        self.packets = 0
        self.rows = 0
        self.errors = 0
        self.storage_drops = 0
        self.commit_interval = options.commit_interval if live else 0.0
        self.pending = 0  # packets in the open transaction (live/per-batch mode)
        self._txn_since: float | None = None
        names = [m if isinstance(m, str) else m.name for m in middlewares]
        self.guard = storage_guard(options, self.db, names) if live else None
        if live and "pcap" in names and "cleaner" not in names:
            log.warning("capture: middleware pcap runs without cleaner; the pcap store is "
                        "bounded only by the free-space reserve (captureReserve)")
        try:
            for mw in middlewares:
                inst = load(mw) if isinstance(mw, str) else mw
                self.db.execute("BEGIN IMMEDIATE")
                inst.init(self.ctx)
                self.db.execute("COMMIT")
                self.middlewares.append(inst)
        except BaseException:
            if self.checkpointer is not None:
                self.checkpointer.close()
            self.db.close()
            raise
        if transaction:
            self.db.execute("BEGIN IMMEDIATE")
        # pcap/cleaner-only pipelines skip decoding (middlewares opt out
        # with ``needs_decode = False``)
        self.decoding = any(getattr(m, "needs_decode", True) for m in self.middlewares)
        # a bulk import whose decoding middlewares all take per-table columns
        # (header) skips the per-frame dicts (see columnar.py); so does live
        # capture when header is its only decoding middleware (header,cleaner)
        self.columnar = (bulk or live) and self.decoding and all(
            getattr(m, "columnar", False) for m in self.middlewares
            if getattr(m, "needs_decode", True))

    def feed(self, ifname: str, packets: list[Packet]) -> Batch | None:
        """Decode ``packets`` (captured on ``ifname``) and process them.

        Returns None (the batch dropped and counted in :attr:`storage_drops`)
        while the storage guard refuses writing.
        """
        return self._store(Batch(ifname=ifname, packets=packets, frames=[]))

    def decode_batch(self, ifname: str, packets: list[Packet]) -> Batch:
        """Decode ``packets`` into a batch without storing it (live: the worker's main thread).

        :meth:`store` then runs it through the middlewares (the store thread).
        """
        frames = []
        columns = None
        if self.columnar:
            columns = decode_columns(packets, ifname, new_ids(len(packets)))
        elif self.decoding:
            ids = new_ids(len(packets))
            frames = [decode(data, ts, length, ifname, uid)
                      for (ts, length, data), uid in zip(packets, ids, strict=True)]
        return Batch(ifname=ifname, packets=packets, frames=frames, columns=columns)

    def store(self, batch: Batch) -> bool:
        """Store a batch from :meth:`decode_batch` (decoding it here if it was not).

        Returns False (the batch dropped and counted in :attr:`storage_drops`)
        while the storage guard refuses writing.
        """
        return self._store(batch) is not None

    def _store(self, batch: Batch) -> Batch | None:
        """The batch as stored (decoded once the guard allows writing), or None."""
        if self.check_storage():
            if self._txn_since is not None:
                self.commit()
            self.storage_drops += len(batch.packets)
            return None
        if self.decoding and batch.packets and not batch.frames and batch.columns is None:
            batch = self.decode_batch(batch.ifname, batch.packets)
        self.packets += len(batch.packets)
        if batch.columns is not None:
            self.rows += sum(len(v) // WIDTHS[t] for t, v in batch.columns.items())
        else:
            self.rows += sum(map(len, batch.frames))
        self.process(batch)
        return batch

    def check_storage(self) -> str:
        """Ask the guard (live only); logs once when capture pauses and when it resumes.

        While paused the reason's figures change with every check (free space moves);
        only the transitions are logged.
        """
        if self.guard is None:
            return ""
        was_paused = bool(self.guard.reason)
        if bool(self.guard.check()) != was_paused:
            if self.guard.reason:
                log.warning("%s", self.guard.reason)
            else:
                log.warning("capture resumed: storage is within its bounds again "
                            "(%d packets were not stored so far)", self.storage_drops)
        return self.guard.reason

    def process(self, batch: Batch) -> None:
        """Run one decoded batch through every middleware; commit when due."""
        own_txn = not self.ctx.transaction
        if own_txn and self._txn_since is None:
            self.db.execute("BEGIN IMMEDIATE")
            self._txn_since = time.monotonic()
        try:
            for mw in self.middlewares:
                try:
                    mw.process(batch)
                except Exception:
                    self.errors += 1
                    log.exception("capture middleware %s failed on a batch", mw.name)
        finally:
            if own_txn:
                self.pending += len(batch.packets)
                due = self.due()
                if due is not None and due <= 0:
                    self.commit()

    def due(self) -> float | None:
        """Seconds until the open transaction must be committed (None: none open)."""
        if self._txn_since is None:
            return None
        if self.pending >= COMMIT_PACKETS:
            return 0.0
        return self._txn_since + self.commit_interval - time.monotonic()

    def commit(self) -> None:
        """Let middlewares flush (``on_commit``), then commit the open transaction."""
        if self._txn_since is None:
            return
        for mw in self.middlewares:
            hook = getattr(mw, "on_commit", None)
            if hook is not None:
                try:
                    hook()
                except Exception:
                    self.errors += 1
                    log.exception("capture middleware %s failed to flush", mw.name)
        self._txn_since = None
        self.pending = 0
        self.db.execute("COMMIT")
        ckpt = self.checkpointer
        if ckpt is not None:
            changes = self.db.total_changes
            if changes - self._ckpt_mark >= CHECKPOINT_CHANGES:
                self._ckpt_mark = changes
                ckpt.kick()
            ckpt.bound()

    def rollback(self) -> int:
        """Abandon the open transaction after a storage error; returns packets lost."""
        lost = self.pending
        self._txn_since = None
        self.pending = 0
        for mw in self.middlewares:  # no statement may still run on another thread
            drain = getattr(mw, "drain", None)
            if drain is not None:
                drain()
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        return lost

    def close(self) -> None:
        """Close every middleware (reverse order) and commit."""
        if not self.ctx.transaction and self._txn_since is None:
            self.db.execute("BEGIN IMMEDIATE")
        for mw in reversed(self.middlewares):
            try:
                mw.close()
            except Exception:
                self.errors += 1
                log.exception("capture middleware %s failed to close", mw.name)
        try:
            self.db.execute("COMMIT")
        finally:
            if self.checkpointer is not None:
                self.checkpointer.close()
        if self.fresh:
            finish_fresh_db(self.db, self.options.capture_db_path)
        else:
            self.db.close()
