"""Ring reading on its own thread, into a bounded in-memory backlog.

The capture worker's decoding and SQLite writing run at tens of thousands of
packets per second in Python; a burst faster than that used to fill the
kernel ring within a second and the kernel dropped the rest. The
:class:`RingReader` thread only copies whole ready blocks out of the rings
(one memcpy per 128 KiB block, a fraction of a microsecond per packet) and
hands them back to the kernel at once, so the ring is empty whenever the
thread gets the GIL (every few milliseconds at most). The copies wait in a
FIFO backlog bounded in bytes; the worker's main thread parses, decodes and
stores them in arrival order.

Bounded and honest: while the backlog is full the thread stops copying
(it waits for room, no polling) and the ring fills as before, so every
frame that is not stored is a kernel drop in PACKET_STATISTICS. What is
still in the backlog when the worker must stop is stored for at most a few
seconds and counted as our own drop after that (``own_drops``). Idle, the
thread sleeps in poll() without a timeout.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections import deque
from collections.abc import Callable

from edgesec.capture.ring import Ring

READ_BLOCKS = 8  # blocks copied from one ring per turn (round robin over the rings)


class RingReader:
    """Copy ring blocks into a bounded FIFO on a thread; see the module docstring."""

    def __init__(self, rings: list[Ring], limit: int,
                 on_error: Callable[[Ring], None]) -> None:
        self.rings = rings
        self.limit = max(limit, 1)
        self.on_error = on_error
        self.items: deque[tuple[Ring, bytes]] = deque()
        self.bytes = 0
        self.peak = 0
        self.blocks = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._stop = False
        # the main loop polls notify_fd: a byte arrives when the backlog stops being empty
        self.notify_fd, self._notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="capture-ring", daemon=True)

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; the backlog stays for :meth:`take`."""
        with self._lock:
            self._stop = True
            self._room.notify_all()
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        """Close the pipes (after :meth:`stop`)."""
        for fd in (self.notify_fd, self._notify_w, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def take(self) -> tuple[Ring, bytes] | None:
        """The oldest block in the backlog, or None when it is empty."""
        with self._lock:
            if not self.items:
                return None
            ring, block = self.items.popleft()
            self.bytes -= len(block)
            self._room.notify()
        return ring, block

    def wake(self) -> None:
        """Wake the main loop (e.g. to report a socket error the thread saw)."""
        with contextlib.suppress(OSError):
            os.write(self._notify_w, b"\0")

    def clear_notify(self) -> None:
        """Empty the notification pipe (before taking everything in the backlog)."""
        with contextlib.suppress(OSError):
            while os.read(self.notify_fd, 4096):
                pass

    def put(self, ring: Ring, blocks: list[bytes]) -> None:
        """Queue copied ``blocks`` of ``ring`` (the thread, and the final drain at stop)."""
        size = sum(map(len, blocks))
        with self._lock:
            was_empty = not self.items
            self.items.extend((ring, b) for b in blocks)
            self.bytes += size
            self.blocks += len(blocks)
            self.peak = max(self.peak, self.bytes)
        if was_empty:
            with contextlib.suppress(OSError):  # full pipe: the main loop is awake anyway
                os.write(self._notify_w, b"\0")

    def _drain(self) -> None:
        """Copy ready blocks, round robin over the rings, until none or the backlog is full."""
        moved = True
        while moved and not self._stop:
            moved = False
            for ring in self.rings:
                if self.bytes >= self.limit:
                    return
                blocks = ring.take_blocks(READ_BLOCKS)
                if blocks:
                    moved = True
                    self.put(ring, blocks)

    def _run(self) -> None:
        poller = select.poll()
        by_fd = {ring.fileno(): ring for ring in self.rings}
        for fd in by_fd:
            poller.register(fd, select.POLLIN | select.POLLERR)
        poller.register(self._stop_r, select.POLLIN)
        while not self._stop:
            self._drain()
            with self._lock:  # full: wait for the main thread to make room (no polling)
                while self.bytes >= self.limit and not self._stop:
                    self._room.wait()
            if self._stop:
                return
            for fd, ev in poller.poll():  # level-triggered: a block retired meanwhile wakes it
                if fd == self._stop_r:
                    return
                if ev & (select.POLLERR | select.POLLHUP) and fd in by_fd:
                    self.on_error(by_fd[fd])
