"""The capture pipeline: decode batches and run them through the middlewares.

Shared by live capture (the worker process) and ``edgesec recap``. Owns the
capture-DB connection (WAL, one transaction per batch, or one for the whole
run in single-transaction mode) and the middleware instances, in order.
A middleware that raises is logged and counted, never stops the others.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from edgesec.capture.decode import decode, new_ids
from edgesec.capture.middleware import Batch, Context, Middleware, load
from edgesec.capture.options import CaptureOptions
from edgesec.capture.pcapfile import Packet

log = logging.getLogger(__name__)


def open_db(path: Path) -> sqlite3.Connection:
    """Open the capture DB: WAL, synchronous=NORMAL, 5 s busy timeout.

    Capture data is telemetry: NORMAL keeps every committed batch across a
    process crash and loses at most the last batches on power loss, at a
    fraction of FULL's fsync cost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-32768")
    db.execute("PRAGMA wal_autocheckpoint=16384")
    return db


class Pipeline:
    """Decode packets and hand them to the middlewares in order."""

    def __init__(self, options: CaptureOptions, middlewares: Sequence[str | Middleware],
                 *, transaction: bool = False, linktype: int = 1, bulk: bool = False) -> None:
        self.options = options
        self.db = open_db(options.capture_db_path)
        self.ctx = Context(db=self.db, options=options, linktype=linktype,
                           transaction=transaction, bulk=bulk)
        self.middlewares: list[Middleware] = []
        self.packets = 0
        self.rows = 0
        self.errors = 0
        try:
            for mw in middlewares:
                inst = load(mw) if isinstance(mw, str) else mw
                self.db.execute("BEGIN IMMEDIATE")
                inst.init(self.ctx)
                self.db.execute("COMMIT")
                self.middlewares.append(inst)
        except BaseException:
            self.db.close()
            raise
        if transaction:
            self.db.execute("BEGIN IMMEDIATE")
        # pcap/cleaner-only pipelines skip decoding (middlewares opt out
        # with ``needs_decode = False``)
        self.decoding = any(getattr(m, "needs_decode", True) for m in self.middlewares)

    def feed(self, ifname: str, packets: list[Packet]) -> Batch:
        """Decode ``packets`` (captured on ``ifname``) and process them."""
        frames = []
        if self.decoding:
            ids = new_ids(len(packets))
            frames = [decode(data, ts, length, ifname, uid)
                      for (ts, length, data), uid in zip(packets, ids, strict=True)]
        batch = Batch(ifname=ifname, packets=packets, frames=frames)
        self.packets += len(packets)
        self.rows += sum(map(len, frames))
        self.process(batch)
        return batch

    def process(self, batch: Batch) -> None:
        """Run one decoded batch through every middleware."""
        own_txn = not self.ctx.transaction
        if own_txn:
            self.db.execute("BEGIN IMMEDIATE")
        try:
            for mw in self.middlewares:
                try:
                    mw.process(batch)
                except Exception:
                    self.errors += 1
                    log.exception("capture middleware %s failed on a batch", mw.name)
        finally:
            if own_txn:
                self.db.execute("COMMIT")

    def close(self) -> None:
        """Close every middleware (reverse order) and commit."""
        if not self.ctx.transaction:
            self.db.execute("BEGIN IMMEDIATE")
        for mw in reversed(self.middlewares):
            try:
                mw.close()
            except Exception:
                self.errors += 1
                log.exception("capture middleware %s failed to close", mw.name)
        self.db.execute("COMMIT")
        self.db.close()
