"""Live capture on an AF_PACKET socket with a TPACKET_V3 memory-mapped ring.

The kernel fills fixed-size blocks of frames in a ring shared with us and
hands over a whole block at a time (when full or after the block timeout),
so reading costs no system call per packet — the same mechanism libpcap
uses on Linux, without a ctypes callback per packet. Options map to the
original's libpcap settings: ``promiscuous`` (PACKET_MR_PROMISC
membership), ``buffer_timeout`` (block retire timeout, ms), ``immediate``
(1 ms block timeout), ``filter`` (kernel BPF via :mod:`edgesec.capture.bpf`),
``buffer_size`` (ring bytes). Kernel drops come from PACKET_STATISTICS.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct

from edgesec.capture.options import BLOCK_SIZE
from edgesec.capture.pcapfile import Packet

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
ETH_P_ALL = 0x0003
TP_STATUS_USER = 1
FRAME_SIZE = 2048

_BLOCK_HDR = struct.Struct("=IIII").unpack_from  # status, num_pkts, offset_to_first, blk_len
_PKT_HDR = struct.Struct("=IIIII4xH").unpack_from  # next, sec, nsec, snaplen, len, mac
_STATUS = struct.Struct("=I")


class CaptureError(Exception):
    """The interface cannot be captured on."""


class Ring:
    """A TPACKET_V3 capture ring bound to one interface."""

    def __init__(self, ifname: str, *, filter_expr: str = "", promiscuous: bool = False,
                 immediate: bool = False, buffer_timeout: int = 10,
                 buffer_size: int = 16 * 1024 * 1024) -> None:
        self.ifname = ifname
        self.kernel_packets = 0
        self.kernel_drops = 0
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError as exc:
            raise CaptureError(f"no such interface {ifname!r}") from exc
        # protocol 0: receive nothing until bound, so the filter is in place first
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.nblocks = max(2, buffer_size // BLOCK_SIZE)
            tov = 1 if immediate else max(1, buffer_timeout)
            s = self.sock
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            req = struct.pack("=7I", BLOCK_SIZE, self.nblocks, FRAME_SIZE,
                              BLOCK_SIZE * self.nblocks // FRAME_SIZE, tov, 0, 0)
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.map = mmap.mmap(s.fileno(), BLOCK_SIZE * self.nblocks, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            if filter_expr:  # ctypes and libpcap only when a filter is configured
                from edgesec.capture.bpf import BpfError, attach
                try:
                    attach(s, filter_expr)
                except BpfError as exc:
                    raise CaptureError(str(exc)) from exc
            if promiscuous:
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                             struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
            s.bind((ifname, ETH_P_ALL))
        except BaseException:
            self.sock.close()
            raise
        self.block = 0

    def fileno(self) -> int:
        """The socket fd (poll it for POLLIN)."""
        return self.sock.fileno()

    def take_blocks(self, max_blocks: int = 64) -> list[bytes]:
        """Copy out the ready blocks (up to ``max_blocks``) and hand them back to the kernel.

        A copy is one memcpy of the block's used bytes, so the ring is emptied
        at a small fraction of the cost of decoding what it holds; parse the
        copies with :func:`parse_block`.
        """
        out: list[bytes] = []
        mm = self.map
        for _ in range(max_blocks):
            base = self.block * BLOCK_SIZE
            status, _num, _first, used = _BLOCK_HDR(mm, base + 8)
            if not status & TP_STATUS_USER:
                break
            out.append(mm[base:base + min(max(used, 24), BLOCK_SIZE)])
            _STATUS.pack_into(mm, base + 8, 0)
            self.block = (self.block + 1) % self.nblocks
        return out

    def read(self, max_blocks: int = 64) -> list[Packet]:
        """Take every frame of the ready blocks (up to ``max_blocks``)."""
        return [p for block in self.take_blocks(max_blocks) for p in parse_block(block)]

    def take_error(self) -> str:
        """Read and clear the socket's pending error (what makes poll() say POLLERR).

        The kernel sets it when the interface goes down (ENETDOWN) and keeps
        POLLERR raised until it is read; unread, every poll() returns at once.
        """
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return os.strerror(err) if err else ""

    def stats(self) -> tuple[int, int]:
        """(packets, drops) seen by the kernel since the ring was opened."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops, _freeze = struct.unpack("=III", raw)
        self.kernel_packets += packets  # the kernel resets on every read
        self.kernel_drops += drops
        return self.kernel_packets, self.kernel_drops

    def close(self) -> None:
        """Unmap and close."""
        try:
            self.map.close()
        finally:
            self.sock.close()


def parse_block(block: bytes) -> list[Packet]:
    """The frames of one TPACKET_V3 block copied by :meth:`Ring.take_blocks`."""
    _status, num, off, _used = _BLOCK_HDR(block, 8)
    out: list[Packet] = []
    append = out.append
    end = len(block)
    for _ in range(num):
        if off + 26 > end:
            break
        nxt, sec, nsec, snap, length, mac = _PKT_HDR(block, off)
        start = off + mac
        append((sec * 1_000_000 + nsec // 1000, length, block[start:start + snap]))
        if not nxt:
            break
        off += nxt
    return out
