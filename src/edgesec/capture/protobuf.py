"""Protobuf middleware: layer rows as length-delimited protobuf on a FIFO.

Compatible with the original's protobuf middleware format: every decoded
layer row is serialised as its ``<table>.<Table>Schema`` message (fields are
the table columns in order, numbered from 1; text as strings, numbers as
varints; proto3 defaults omitted), wrapped in ``ProtobufSyncWrapper``
(``header_id`` field 2 = table name, ``payload`` field 3) and written with a
varint length prefix to the FIFO named by ``middleware_params``. Encoding is
a few lines of varint code, so no protobuf runtime is needed.

Live capture opens the FIFO non-blocking and drops (and counts) batches
while no reader is attached; ``edgesec recap -k`` waits for a reader.
"""

from __future__ import annotations

import errno
import os

from edgesec.capture.decode import Row
from edgesec.capture.middleware import Batch, Context


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def message(row: Row) -> bytes:
    """Serialise a row: field i+1 per column, defaults omitted."""
    out = bytearray()
    for i, v in enumerate(row, 1):
        if isinstance(v, str):
            if v:
                raw = v.encode()
                out += varint(i << 3 | 2) + varint(len(raw)) + raw
        elif v:
            out += varint(i << 3) + varint(int(v) & 0xFFFFFFFFFFFFFFFF)
    return bytes(out)


def wrapped(table: str, row: Row) -> bytes:
    """Length-prefixed ``ProtobufSyncWrapper{header_id, payload}``."""
    payload = message(row)
    tid = table.encode()
    body = varint(2 << 3 | 2) + varint(len(tid)) + tid + varint(3 << 3 | 2) \
        + varint(len(payload)) + payload
    return varint(len(body)) + body


class ProtobufMiddleware:
    """Write every layer row to the FIFO at ``middleware_params``."""

    name = "protobuf"

    def init(self, ctx: Context) -> None:
        """Remember the FIFO path; it is opened lazily."""
        self._path = ctx.options.middleware_params
        self._blocking = ctx.options.extra.get("protobuf_blocking") == "1"
        self._fd: int | None = None
        self._ctx = ctx
        ctx.stats.setdefault("protobuf_dropped", 0)

    def _open(self) -> int | None:
        if self._fd is None and self._path:
            flags = os.O_WRONLY | (0 if self._blocking else os.O_NONBLOCK)
            try:
                self._fd = os.open(self._path, flags)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
        return self._fd

    def process(self, batch: Batch) -> None:
        """Serialise the batch and write it."""
        fd = self._open()
        if fd is None:
            self._ctx.stats["protobuf_dropped"] += len(batch.frames)
            return
        data = b"".join(wrapped(t, r) for rows in batch.frames for t, r in rows.items())
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except BlockingIOError:
            self._ctx.stats["protobuf_dropped"] += 1
        except BrokenPipeError:
            os.close(fd)
            self._fd = None
            self._ctx.stats["protobuf_dropped"] += len(batch.frames)

    def close(self) -> None:
        """Close the FIFO."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
