"""Classic pcap files: a streaming reader and a writer.

The reader accepts both byte orders and both timestamp resolutions
(microsecond magic ``a1b2c3d4`` and nanosecond ``a1b23c4d``) from a file or
any binary stream (a pipe on stdin included). It yields packets up to the
first damage and then raises :class:`PcapError` naming the offset and the
record, so callers keep what was read and can still fail loudly (the
original's recap silently exited 0 here). pcapng input is recognised and
rejected with a clear message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
MAX_CAPLEN = 262_144
_CHUNK = 1 << 20
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}

Packet = tuple[int, int, bytes]  # (timestamp µs, wire length, captured bytes)


class PcapError(Exception):
    """The pcap input is malformed; the message says where."""


class PcapReader:
    """Iterate the packets of a classic pcap stream.

    After construction ``linktype``, ``snaplen`` and ``nanosecond`` describe
    the file; iterating yields ``(ts_us, length, data)``; ``bytes_read`` and
    ``packets`` count what was consumed.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        head = self._read_exact(24)
        if len(head) < 24:
            raise PcapError(f"not a pcap file: header is {len(head)} bytes, need 24")
        magic = head[:4]
        if magic == _PCAPNG_MAGIC:
            raise PcapError("pcapng input is not supported; convert with `editcap -F pcap`")
        if magic not in _MAGICS:
            raise PcapError(f"not a pcap file: bad magic {magic.hex()}")
        order, self.nanosecond = _MAGICS[magic]
        self.version = struct.unpack(order + "HH", head[4:8])
        self.snaplen, self.linktype = struct.unpack(order + "II", head[16:24])
        self._rec = struct.Struct(order + "IIII")
        self.bytes_read = 24
        self.packets = 0

    def _read_exact(self, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = self._stream.read(n)
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def __iter__(self) -> Iterator[Packet]:
        unpack = self._rec.unpack_from
        nanos = self.nanosecond
        buf = b""
        pos = 0
        eof = False
        while True:
            if len(buf) - pos < 16 and not eof:
                buf = buf[pos:]
                pos = 0
                while len(buf) < 16 and not eof:
                    more = self._stream.read(_CHUNK)
                    if not more:
                        eof = True
                    buf += more
            # fast path: every record wholly inside the buffer, checks as below
            blen = len(buf)
            while pos + 16 <= blen:
                sec, frac, caplen, length = unpack(buf, pos)
                end = pos + 16 + caplen
                if end > blen or caplen > MAX_CAPLEN or caplen > length:
                    break  # the slow path reads on or raises
                data = buf[pos + 16 : end]
                pos = end
                self.bytes_read += 16 + caplen
                self.packets += 1
                yield (sec * 1_000_000 + (frac // 1000 if nanos else frac), length, data)
            if len(buf) - pos < 16 and not eof:
                continue
            if len(buf) - pos == 0 and eof:
                return
            if len(buf) - pos < 16:
                raise PcapError(
                    f"truncated record header at offset {self.bytes_read} "
                    f"(after {self.packets} packets)")
            sec, frac, caplen, length = unpack(buf, pos)
            if caplen > MAX_CAPLEN:
                raise PcapError(
                    f"bad record at offset {self.bytes_read} (packet {self.packets + 1}): "
                    f"caplen {caplen} exceeds the {MAX_CAPLEN}-byte limit")
            if caplen > length:
                raise PcapError(
                    f"bad record at offset {self.bytes_read} (packet {self.packets + 1}): "
                    f"caplen {caplen} > wire length {length}")
            end = pos + 16 + caplen
            if len(buf) < end and pos:
                # drop what was consumed before reading on: the buffer holds at most
                # one chunk plus one record, whatever the size of the input
                buf = buf[pos:]
                end -= pos
                pos = 0
            while len(buf) < end and not eof:
                more = self._stream.read(max(_CHUNK, end - len(buf)))
                if not more:
                    eof = True
                buf += more
            if len(buf) < end:
                raise PcapError(
                    f"truncated packet data at offset {self.bytes_read} "
                    f"(packet {self.packets + 1} needs {caplen} bytes, "
                    f"{len(buf) - pos - 16} present)")
            data = buf[pos + 16 : end]
            pos = end
            self.bytes_read += 16 + caplen
            self.packets += 1
            yield (sec * 1_000_000 + (frac // 1000 if nanos else frac), length, data)


def global_header(linktype: int = LINKTYPE_ETHERNET, snaplen: int = 65535) -> bytes:
    """24-byte little-endian microsecond pcap header."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


_REC = struct.Struct("<IIII").pack


def record(ts_us: int, length: int, data: bytes) -> bytes:
    """One pcap record (16-byte header + data)."""
    return _REC(ts_us // 1_000_000, ts_us % 1_000_000, len(data), length) + data


class PcapWriter:
    """Append packets to a pcap file (µs, little-endian); ``size`` tracks bytes."""

    def __init__(self, stream: BinaryIO, linktype: int = LINKTYPE_ETHERNET,
                 snaplen: int = 65535) -> None:
        self._stream = stream
        stream.write(global_header(linktype, snaplen))
        self.size = 24
        self.packets = 0

    def write(self, ts_us: int, length: int, data: bytes) -> None:
        """Write one packet."""
        self._stream.write(_REC(ts_us // 1_000_000, ts_us % 1_000_000, len(data), length))
        self._stream.write(data)
        self.size += 16 + len(data)
        self.packets += 1

    def flush(self) -> None:
        """Flush the underlying stream."""
        self._stream.flush()

    def close(self) -> None:
        """Close the underlying stream."""
        self._stream.close()
