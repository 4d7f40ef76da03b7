"""Netlink views of the nftables ruleset: who committed what, and the generation id.

Owns two small netlink clients of ``NETLINK_NETFILTER``:

* :class:`RulesetMonitor` / :class:`RulesetWatcher` — a socket subscribed to
  the ``NFNLGRP_NFTABLES`` multicast group (what ``nft monitor`` reads). The
  kernel sends one message per changed object (table, chain, rule, set,
  element; each names its table) and closes every transaction with
  ``NFT_MSG_NEWGEN`` carrying the new generation id and the committing
  process's pid. The watcher is registered with ``loop.add_reader``: it costs
  nothing while nobody touches the ruleset and wakes within a scheduler tick
  of a foreign commit (no polling). An overflowing socket (``ENOBUFS``:
  notifications were lost) is reported as "unknown change", so owners verify
  everything.
* :class:`GenerationReader` — one ``NFT_MSG_GETGEN`` request (the bench's
  peer: the old 0.5 s generation poll).

Hand-written instead of pyroute2 because pyroute2's synchronous sockets cannot
be used while an asyncio loop runs (they drive their own loop), and parsing the
few attributes needed (table name, generation id, pid) is a dozen lines.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWGEN = 15
NFTA_GEN_PROC_PID = 2
NFPROTO_INET = 1
RCVBUF = 4 * 1024 * 1024
# message types scoped to a table; attribute 1 is always the table name
_TABLE_SCOPED = frozenset({0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 18, 20, 22, 24, 26, 27, 28, 29, 30})
_HDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")


class GenerationReader:
    """``read()`` returns the current ruleset generation of this network namespace."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._sock.bind((0, 0))
        self._sock.settimeout(2.0)
        self._seq = 0

    def read(self) -> int:
        self._seq += 1
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, 0)
        msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
        self._sock.send(_HDR.pack(_HDR.size + len(body), msg_type, NLM_F_REQUEST, self._seq,
                                  0) + body)
        while True:
            data = self._sock.recv(65536)
            length, mtype, _flags, seq, _pid = _HDR.unpack_from(data)
            if seq != self._seq:
                continue
            if mtype == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", data, _HDR.size)
                raise OSError(-err, os.strerror(-err))
            off = _HDR.size + _NFGEN.size
            while off + 4 <= length:
                alen, atype = struct.unpack_from("=HH", data, off)
                if alen < 4:
                    break
                if atype & 0x3FFF == NFTA_GEN_ID:
                    return int(struct.unpack_from(">I", data, off + 4)[0])
                off += (alen + 3) & ~3
            raise OSError("no generation id in the netlink reply")

    def close(self) -> None:
        self._sock.close()


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4 or off + alen > end:
            break
        out.setdefault(atype & 0x3FFF, data[off + 4:off + alen])
        off += (alen + 3) & ~3
    return out


@dataclass(frozen=True)
class Commit:
    """One nftables transaction as seen in notifications."""

    gen: int
    pid: int
    touched: frozenset[tuple[int, str]] = frozenset()  # (family, table) of changed objects
    deleted: frozenset[tuple[int, str]] = frozenset()  # tables deleted


@dataclass
class NotificationParser:
    """Folds notification datagrams into :class:`Commit` records. Pure; keeps partial state."""

    touched: set[tuple[int, str]] = field(default_factory=set)
    deleted: set[tuple[int, str]] = field(default_factory=set)

    def feed(self, data: bytes) -> list[Commit]:
        commits = []
        off = 0
        while off + _HDR.size <= len(data):
            length, mtype, _flags, _seq, _pid = _HDR.unpack_from(data, off)
            if length < _HDR.size or off + length > len(data):
                break
            end = off + length
            if mtype >> 8 == NFNL_SUBSYS_NFTABLES and end >= off + _HDR.size + _NFGEN.size:
                family = data[off + _HDR.size]
                msg = mtype & 0xFF
                attrs = _attrs(data, off + _HDR.size + _NFGEN.size, end)
                if msg == NFT_MSG_NEWGEN:
                    gen = attrs.get(NFTA_GEN_ID, b"\0\0\0\0")
                    pid = attrs.get(NFTA_GEN_PROC_PID, b"\0\0\0\0")
                    commits.append(Commit(int.from_bytes(gen[:4], "big"),
                                          int.from_bytes(pid[:4], "big"),
                                          frozenset(self.touched), frozenset(self.deleted)))
                    self.touched.clear()
                    self.deleted.clear()
                elif msg in _TABLE_SCOPED and 1 in attrs:
                    table = (family, attrs[1].split(b"\0", 1)[0].decode("utf-8", "replace"))
                    self.touched.add(table)
                    if msg == NFT_MSG_DELTABLE:
                        self.deleted.add(table)
            off += (length + 3) & ~3
        return commits


class RulesetMonitor:
    """A non-blocking socket on the nftables notification group of this netns."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                   NETLINK_NETFILTER)
        try:
            for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE needs CAP_NET_ADMIN
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                    break
                except OSError:
                    continue
            self._sock.bind((0, 0))
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        except OSError:
            self._sock.close()
            raise
        self._parser = NotificationParser()

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> tuple[list[Commit], bool]:
        """Every commit notified so far, and whether notifications were lost."""
        commits: list[Commit] = []
        lost = False
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    lost = True
                    self._parser = NotificationParser()
                    continue
                raise
            commits += self._parser.feed(data)
        return commits, lost

    def close(self) -> None:
        self._sock.close()


class RulesetWatcher:
    """Calls ``on_change(commit)`` when another process changed one of ``tables``.

    ``commit`` is None when notifications were lost (verify everything).
    Commits by a pid in ``own_pids()`` (this process, or the ``nft``
    children of the binary backend) are ours and ignored.
    """

    def __init__(self, tables: Iterable[tuple[int, str]],
                 on_change: Callable[[Commit | None], None],
                 own_pids: Callable[[], Iterable[int]] = lambda: (os.getpid(),)) -> None:
        self.tables = frozenset(tables)
        self.on_change = on_change
        self.own_pids = own_pids
        self.foreign = 0
        self.lost = 0
        self._monitor: RulesetMonitor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._monitor = RulesetMonitor()
        self._loop.add_reader(self._monitor.fileno(), self._readable)

    def _readable(self) -> None:
        if self._monitor is None:
            return
        try:
            commits, lost = self._monitor.read()
        except OSError:
            log.exception("nftables notification socket failed")
            return
        if lost:
            self.lost += 1
            log.warning("nftables notifications were lost; verifying %s",
                        ", ".join(t for _f, t in sorted(self.tables)))
            self.on_change(None)
            return
        own = set(self.own_pids())
        theirs = [c for c in commits if c.pid not in own and c.touched & self.tables]
        if theirs:  # one call per wake-up, however many commits arrived
            self.foreign += len(theirs)
            self.on_change(Commit(theirs[-1].gen, theirs[-1].pid,
                                  frozenset().union(*(c.touched for c in theirs)),
                                  frozenset().union(*(c.deleted for c in theirs))))

    def stop(self) -> None:
        if self._monitor is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._monitor.fileno())
            self._monitor.close()
            self._monitor = None
