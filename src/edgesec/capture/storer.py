"""The storing half of the capture worker, on a thread of its own.

The worker's main thread parses ring blocks and decodes them; every other
step of a batch — the storage guard, the middlewares (the header
middleware hands its inserts on to its own writer thread), the commits by
time and their errors — runs here, in arrival order. So a commit no longer
stops decoding: while SQLite writes the WAL (without the GIL) the main
thread decodes the next blocks, up to :data:`STORE_QUEUE` batches ahead
(bounded: a slow disk slows the decoder, and the ring backlog behind it
holds the rest or the kernel counts the drops). All capture-DB statements
of the pipeline's connection come from this thread (and the header
writer it waits for), so transactions stay exactly as before: a commit
holds the batches stored before it.

Honest counters: a batch the pipeline fails to store (BEGIN or COMMIT
failed) is rolled back and counted in :attr:`Storer.own_drops` with the
rest of its transaction, as the worker did before. Idle, the thread sleeps
on its queue without a timeout unless a commit is due or storage is paused
(then it looks again every few seconds, to notice space coming back).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from edgesec.capture.middleware import Batch
from edgesec.capture.pipeline import Pipeline
from edgesec.ratelog import RateLimitedLog

log = logging.getLogger("edgesec.capture.worker")
STORE_QUEUE = 2  # decoded batches waiting for the store thread (memory bound)
PAUSED_RECHECK_S = 5.0  # while storage is refused, look again this often


class Storer:
    """Run :meth:`Pipeline.store` and commits on a thread; see the module docstring."""

    def __init__(self, pipeline: Pipeline, wake: Callable[[], None]) -> None:
        self.pipeline = pipeline
        self.wake = wake  # tells the main loop a counter changed (status line)
        self.packets = 0
        self.batches = 0
        self.own_drops = 0
        self._queue: queue.Queue[Batch | None] = queue.Queue(STORE_QUEUE)
        self._drop_log = RateLimitedLog(log, "dropped-batch errors", level=logging.ERROR)
        self._thread = threading.Thread(target=self._run, name="capture-store", daemon=True)
        self._started = False

    def start(self) -> None:
        """Start the thread."""
        self._started = True
        self._thread.start()

    def put(self, batch: Batch, timeout: float | None = None) -> bool:
        """Queue a decoded batch (waits while the queue is full); False on timeout."""
        try:
            self._queue.put(batch, timeout=timeout)
        except queue.Full:
            return False
        return True

    def finish(self) -> None:
        """Store what is queued, then stop the thread (idempotent)."""
        if self._started and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _timeout(self) -> float | None:
        pipe = self.pipeline
        waits = [d for d in (pipe.due(),
                             PAUSED_RECHECK_S if pipe.guard is not None and pipe.guard.reason
                             else None) if d is not None]
        return max(0.0, min(waits)) if waits else None

    def _run(self) -> None:
        pipe = self.pipeline
        while True:
            try:
                item = self._queue.get(timeout=self._timeout())
            except queue.Empty:
                item = Batch(ifname="", packets=[], frames=[])  # a turn: commit or recheck
            if item is None:
                return
            try:
                if item.packets:
                    self._store(item)
                    if self._queue.empty():
                        self.wake()  # the main loop reports what was stored
                else:
                    paused = pipe.guard is not None and pipe.guard.reason
                    if paused:
                        pipe.check_storage()  # notice space coming back, even idle
                        self.wake()
                due = pipe.due()
                if due is not None and due <= 0:
                    self._commit()
            except Exception:  # never let the thread die: count and go on
                log.exception("capture store thread failed")

    def _store(self, batch: Batch) -> None:
        try:
            if self.pipeline.store(batch):
                self.packets += len(batch.packets)
                self.batches += 1
        except Exception as exc:
            self._lose(len(batch.packets), exc)

    def _lose(self, count: int, exc: Exception) -> None:
        """A storage error: the open transaction and this batch are lost, counted."""
        try:
            lost = self.pipeline.rollback()
        except Exception:
            lost = 0
        self.own_drops += count + lost
        self.packets -= lost
        self._drop_log.log("dropping %d packets: %s", count + lost, exc)
        self.wake()

    def _commit(self) -> None:
        try:
            self.pipeline.commit()
        except Exception as exc:
            self._lose(0, exc)
