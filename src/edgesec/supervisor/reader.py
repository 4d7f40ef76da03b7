"""The UNIX control socket's reader thread: constant replies without the event loop.

A request read through the event loop costs an ``epoll_wait``, a loop
iteration and a final ``recvmsg`` that fails with ``EAGAIN`` around the one
``recvmsg``/``sendto`` pair the request needs; for ``PING_SUPERVISOR`` (a
health check polled by monitors) that was 1.4-1.9x a bare Python echo
server's CPU per request (bench/supervisor.py).  Here one thread blocks in
``recvmsg`` (no CPU while idle, no timer) and:

* answers a constant command (:meth:`CommandTable.register_constant`) itself,
  when no earlier request is still waiting in the loop, so replies keep the
  order of the requests;
* hands every other datagram to the event loop (a queue, and one
  ``call_soon_threadsafe`` per batch), which parses, dispatches, audits and
  replies as before.  At most
  ``MAX_QUEUED`` datagrams wait there; beyond that the thread stops reading
  and the kernel's socket queue is the bound, as for a busy loop.

Replies and events are sent with ``MSG_DONTWAIT``: a client whose queue is full
loses its reply (it times out, as with any lost datagram) and never blocks a
sender.  Constant replies are counted in :attr:`counts`, written by this
thread only, and added to the command table's counts for metrics.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from edgesec.supervisor.audit import CMSG_CREDS_SPACE

log = logging.getLogger(__name__)

MAX_QUEUED = 64  # datagrams handed to the loop and not yet answered
Handler = Callable[[bytes, list[tuple[int, int, bytes]], Any], None]


class ReaderThread:
    """Reads ``sock`` (blocking) in a thread; see the module docstring."""

    def __init__(self, sock: socket.socket, recv_size: int,
                 constants: dict[bytes, tuple[bytes, tuple[str, str]]],
                 handle: Handler, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.recv_size = recv_size
        self.constants = constants
        self.handle = handle
        self.loop = loop
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._slots = threading.Semaphore(MAX_QUEUED)
        self._queued = 0  # written by the thread only
        self._done = 0  # written by the loop only
        self._closing = False
        self._pending: collections.deque[tuple[bytes, list[tuple[int, int, bytes]], Any]] = \
            collections.deque()
        self._scheduled = False  # a _drain is scheduled in the loop
        self._thread = threading.Thread(target=self._run, name="supervisor-unix",
                                        daemon=True)

    def start(self) -> None:
        self.sock.setblocking(True)
        self._thread.start()

    def _run(self) -> None:
        sock, size, constants, counts = self.sock, self.recv_size, self.constants, self.counts
        dontwait = socket.MSG_DONTWAIT
        while True:
            try:
                data, anc, _flags, addr = sock.recvmsg(size, CMSG_CREDS_SPACE)
            except OSError as exc:
                if self._closing:
                    return
                log.debug("unix socket error: %s", exc)
                continue
            if self._closing:
                return
            constant = constants.get(data)
            if constant is not None and self._queued == self._done:
                reply, key = constant
                counts[key] += 1
                if addr:
                    try:
                        sock.sendto(reply, dontwait, addr)
                    except OSError as exc:
                        log.debug("unix: reply to %s dropped: %s", addr, exc)
                continue
            self._slots.acquire()
            if self._closing:
                return
            self._queued += 1
            self._pending.append((data, anc, addr))
            # One wake-up of the loop for all the datagrams queued until it drains:
            # the drain clears the flag *before* it pops, so nothing is left behind.
            if not self._scheduled:
                self._scheduled = True
                try:
                    self.loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # the loop is closed: the daemon is stopping
                    return

    def _drain(self) -> None:
        """In the loop: answer the queued datagrams, at most ``MAX_QUEUED`` a turn."""
        self._scheduled = False
        for _ in range(MAX_QUEUED):
            try:
                data, anc, addr = self._pending.popleft()
            except IndexError:
                return
            try:
                self.handle(data, anc, addr)
            finally:
                self._done += 1
                self._slots.release()
        if self._pending and not self._scheduled:  # let other callbacks run first
            self._scheduled = True
            self.loop.call_soon(self._drain)

    def stop(self, timeout: float = 5.0) -> None:
        """Wake the thread (shutdown of the socket) and wait for it to end."""
        self._closing = True
        self._slots.release()  # in case it waits for a slot
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout)
