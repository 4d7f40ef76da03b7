"""Capture worker process: rings -> pipeline, status lines on stdout.

Run as ``python -m edgesec.capture.worker --options JSON --interface IF ...``
(the :class:`~edgesec.capture.service.CaptureService` does this). It opens
one TPACKET_V3 ring per interface; a reader thread
(:class:`~edgesec.capture.backlog.RingReader`) copies ready ring blocks into
a bounded backlog so a burst does not overflow the ring, and the main
thread parses, decodes and feeds every batch to the middleware pipeline. It
prints a JSON status line when its counters changed, at most once a second
(and a ``{"ready": true}`` line once capturing, or ``{"error": ...}`` and
exit 2). Idle, both threads sleep in poll() until a ring block is ready, a
transaction is due or a signal arrives (signal wake-up fd): no periodic
wake-ups. A socket error (POLLERR, e.g. the bridge went down) is
read and cleared (SO_ERROR), counted and reported, so it cannot spin the
loop. SIGTERM/SIGINT stop it cleanly: the last batches are stored and the
middlewares closed. A batch the pipeline fails to store is dropped and
counted as an own drop; the capture keeps running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from edgesec.capture.backlog import RingReader
from edgesec.capture.middleware import Batch
from edgesec.capture.options import BLOCK_SIZE, CaptureOptions
from edgesec.capture.pcapfile import Packet
from edgesec.capture.pipeline import Pipeline
from edgesec.capture.ring import CaptureError, Ring, parse_block
from edgesec.capture.storer import Storer
from edgesec.supervisor.ratelog import RateLimitedLog

log = logging.getLogger("edgesec.capture.worker")
STATUS_EVERY_S = 1.0  # at most one status line per second, and only on change
BACKLOG_RINGS = 4  # the in-memory backlog holds up to this many rings' worth of blocks
BACKLOG_MAX = 64 << 20  # ... and never more than this many bytes
STOP_DRAIN_S = 6.0  # at stop, store the backlog for at most this long (the service waits 10 s)
TURN_BLOCKS = 16  # blocks decoded between two looks at the status line


class Worker:
    """The capture loop over several rings."""

    def __init__(self, options: CaptureOptions, interfaces: list[str]) -> None:
        self.options = options
        self.rings: list[Ring] = []
        try:
            for ifname in interfaces:
                self.rings.append(Ring(
                    ifname, filter_expr=options.filter, promiscuous=options.promiscuous,
                    immediate=options.immediate, buffer_timeout=options.buffer_timeout,
                    buffer_size=options.ring_bytes))
            self.pipeline = Pipeline(options, options.middlewares, live=True)
        except BaseException:
            self.close_rings()
            raise
        self.stop = False
        self.own_drops = 0  # backlog left at stop (the store thread counts its own)
        self.errors: dict[str, int] = {r.ifname: 0 for r in self.rings}
        self.last_error = ""
        self.last_error_at = 0.0  # wall clock, for "N s ago"
        self._errors_seen = self._errors_sent = 0  # socket errors counted / reported
        self._err_log = RateLimitedLog(log, "socket errors")
        self._sent_state: tuple[int, int, int, str] = (-1, 0, 0, "")
        limit = min(BACKLOG_RINGS * sum(r.nblocks for r in self.rings) * BLOCK_SIZE,
                    BACKLOG_MAX)
        self.reader = RingReader(self.rings, limit, self._socket_error)
        self.storer = Storer(self.pipeline, self.reader.wake)

    @property
    def packets(self) -> int:
        """Packets stored."""
        return self.storer.packets

    def close_rings(self) -> None:
        """Close every ring."""
        for ring in self.rings:
            ring.close()

    def status(self) -> dict[str, Any]:
        """Counters for the status line."""
        kernel_packets = kernel_drops = 0
        per_if = {}
        for ring in self.rings:
            kp, kd = ring.stats()
            kernel_packets += kp
            kernel_drops += kd
            per_if[ring.ifname] = {"kernel_packets": kp, "kernel_drops": kd,
                                   "errors": self.errors[ring.ifname]}
        pipe = self.pipeline
        rd = self.reader
        st = self.storer
        return {"pid": os.getpid(), "packets": st.packets, "kernel_packets": kernel_packets,
                "backlog_bytes": rd.bytes, "backlog_peak_bytes": rd.peak,
                "backlog_limit_bytes": rd.limit,
                "kernel_drops": kernel_drops, "own_drops": self.own_drops + st.own_drops,
                "storage_drops": pipe.storage_drops,
                "storage": pipe.guard.reason if pipe.guard else "",
                "errors": sum(self.errors.values()), "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "batches": st.batches, "middleware_errors": pipe.errors,
                "interfaces": per_if, **pipe.ctx.stats}

    def _feed(self, ring: Ring, packets: list[Packet], deadline: float | None = None) -> bool:
        """Decode ``packets`` in batches and queue them for the store thread.

        With a ``deadline`` (the final drain) a batch that cannot be queued
        in time is counted as an own drop; returns False then.
        """
        size = self.options.batch_size
        pipe = self.pipeline
        for i in range(0, len(packets), size):
            chunk = packets[i:i + size]
            if pipe.guard is not None and pipe.guard.reason:
                batch = Batch(ifname=ring.ifname, packets=chunk, frames=[])  # paused: no decode
            else:
                batch = pipe.decode_batch(ring.ifname, chunk)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.storer.put(batch, timeout):
                self.own_drops += len(packets) - i
                return False
        return True

    def _socket_error(self, ring: Ring) -> None:
        """POLLERR on a ring (called on the reader thread): read, clear and count it."""
        why = ring.take_error()
        if why:
            self._errors_seen += 1
            self.errors[ring.ifname] += 1
            self.last_error = f"{ring.ifname}: {why}"
            self.last_error_at = time.time()
            self._err_log.log("capture socket error on %s: %s", ring.ifname, why)
            self.reader.wake()

    def run(self, emit: Callable[[dict[str, Any]], None], wakeup_fd: int | None = None) -> None:
        """Capture until :attr:`stop`; ``emit(dict)`` writes a status line.

        ``wakeup_fd`` (the read end of the signal wake-up pipe) ends a poll()
        when a signal arrives, so the loop can sleep without a timeout.
        """
        poller = select.poll()
        poller.register(self.reader.notify_fd, select.POLLIN)
        if wakeup_fd is not None:
            poller.register(wakeup_fd, select.POLLIN)
        self.reader.start()
        self.storer.start()
        dirty = True  # counters changed since the last status line
        next_status = 0.0
        try:
            while not self.stop:
                self.reader.clear_notify()
                busy = self._store(TURN_BLOCKS) > 0
                # the store thread's counters and the guard change on its side
                dirty = dirty or busy or self._errors_seen != self._errors_sent or \
                    self._store_state() != self._sent_state
                now = time.monotonic()
                if dirty and now >= next_status:
                    self._sent_state = self._store_state()
                    self._errors_sent = self._errors_seen
                    emit(self.status())
                    dirty = False
                    next_status = now + STATUS_EVERY_S
                if busy:
                    continue
                timeout = max(0, int((next_status - now) * 1000) + 1) if dirty else None
                with contextlib.suppress(InterruptedError):
                    for fd, _ev in poller.poll(timeout):
                        if fd == wakeup_fd:
                            with contextlib.suppress(OSError):
                                os.read(fd, 512)
        finally:
            self.reader.stop()
        self._final_drain()

    def _store_state(self) -> tuple[int, int, int, str]:
        st, pipe = self.storer, self.pipeline
        return (st.packets, st.own_drops, pipe.storage_drops,
                pipe.guard.reason if pipe.guard is not None else "")

    def _store(self, max_blocks: int, deadline: float | None = None) -> int:
        """Parse and decode up to ``max_blocks`` blocks of the backlog, queue them to store."""
        done = 0
        while done < max_blocks:
            item = self.reader.take()
            if item is None:
                break
            ring, block = item
            done += 1
            if not self._feed(ring, parse_block(block), deadline):
                break
        return done

    def _final_drain(self) -> None:
        """At stop: the backlog and what is left in the rings, for at most STOP_DRAIN_S."""
        for ring in self.rings:
            blocks = ring.take_blocks(ring.nblocks)
            if blocks:
                self.reader.put(ring, blocks)
        deadline = time.monotonic() + STOP_DRAIN_S
        before = self.own_drops
        while time.monotonic() < deadline and self._store(TURN_BLOCKS, deadline):
            pass
        lost = self.own_drops - before
        while (item := self.reader.take()) is not None:
            lost += len(parse_block(item[1]))
        self.storer.finish()  # what is queued (at most STORE_QUEUE batches)
        if lost:
            self.own_drops = before + lost
            log.error("capture stopping: %d packets still in the backlog were not stored", lost)

    def close(self) -> None:
        """Close the pipeline and the rings."""
        try:
            self.storer.finish()
            self.pipeline.close()
        finally:
            self.reader.close()
            self.close_rings()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process."""
    ap = argparse.ArgumentParser(prog="edgesec.capture.worker")
    ap.add_argument("--options", required=True, help="CaptureOptions as JSON")
    ap.add_argument("--interface", action="append", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s capture: %(message)s")

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    # The control plane wins CPU contention; the ring buffers the burst meanwhile.
    with contextlib.suppress(OSError):
        os.nice(5)
    try:
        worker = Worker(CaptureOptions.from_json(args.options), args.interface)
    except (CaptureError, OSError) as exc:
        emit({"error": str(exc)})
        return 2

    def on_signal(signum: int, frame: object) -> None:
        worker.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)
    emit({"ready": True, "pid": os.getpid(), "interfaces": args.interface})
    try:
        worker.run(emit, rfd)
    finally:
        status = worker.status()
        worker.close()
        emit({**status, "final": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
