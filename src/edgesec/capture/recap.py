"""Recap: run a pcap file or stream through the capture middlewares.

``recap(stream, options, ...)`` reads packets in batches, feeds them to a
:class:`~edgesec.capture.pipeline.Pipeline` and returns a
:class:`RecapResult`. A damaged pcap keeps every packet read before the
damage (committed) and reports the error in the result; an input that is
not a readable pcap (bad header, unsupported link type) creates no DB.
Memory does not grow with the input: the reader keeps one chunk, the
pipeline one batch, SQLite a bounded page cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import BinaryIO

from edgesec.capture.options import CaptureOptions
from edgesec.capture.pcapfile import Packet, PcapError, PcapReader
from edgesec.capture.pipeline import Pipeline

Progress = Callable[[int, int], None]  # (packets so far, bytes so far)


@dataclass(slots=True)
class RecapResult:
    """Outcome of one recap run."""

    packets: int
    rows: int
    bytes_read: int
    error: str | None = None
    middleware_errors: int = 0


def recap(stream: BinaryIO, options: CaptureOptions, *, ifname: str = "ifname",
          transaction: bool = False, middlewares: Sequence[str] | None = None,
          progress: Progress | None = None) -> RecapResult:
    """Import the pcap ``stream`` into ``options.capture_db_path``."""
    error: str | None = None
    reader: PcapReader | None = None
    try:
        reader = PcapReader(stream)
    except PcapError as exc:
        error = str(exc)
    linktype = reader.linktype if reader else 1
    if reader and linktype != 1:
        error = f"unsupported link type {linktype} (only Ethernet, 1, is decoded)"
        reader = None
    if reader is None:
        return RecapResult(packets=0, rows=0, bytes_read=0, error=error)
    pipe = Pipeline(options, middlewares or ("header",),
                    transaction=transaction, linktype=linktype, bulk=True)
    size = options.batch_size
    packets = iter(reader)
    try:
        while True:
            batch: list[Packet] = []
            try:
                # extend() keeps what it took before the reader raised: a damaged
                # pcap still stores every record before the damage
                batch.extend(islice(packets, size))
            except PcapError as exc:
                error = str(exc)
            if batch:
                pipe.feed(ifname, batch)
            if error is not None or len(batch) < size:
                break
            if progress:
                progress(pipe.packets, reader.bytes_read)
        if progress:
            progress(pipe.packets, reader.bytes_read)
    finally:
        pipe.close()
    return RecapResult(packets=pipe.packets, rows=pipe.rows,
                       bytes_read=reader.bytes_read,
                       error=error, middleware_errors=pipe.errors)
