"""RingReader: the backlog between ring reading and decoding stays bounded and idle."""

from __future__ import annotations

import os
import time

from edgesec.capture.backlog import READ_BLOCKS, RingReader
from poll import wait_for


class FakeRing:
    """A ring that always has blocks ready and whose fd is always readable."""

    ifname = "fake0"

    def __init__(self, block: int = 1000) -> None:
        self.block = block
        self.calls = 0
        self.r, self.w = os.pipe()
        os.write(self.w, b"x")  # never read: poll() always says POLLIN

    def fileno(self) -> int:
        return self.r

    def take_blocks(self, n: int) -> list[bytes]:
        self.calls += 1
        return [b"b" * self.block] * n

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


def wait(pred, timeout: float = 10.0) -> bool:
    return wait_for(pred, timeout)


def test_backlog_is_bounded_and_the_full_reader_waits_without_spinning():
    ring = FakeRing()
    reader = RingReader([ring], limit=20_000, on_error=lambda r: None)
    reader.start()
    try:
        assert wait(lambda: reader.bytes >= 20_000)
        time.sleep(0.2)
        calls = ring.calls
        time.sleep(0.5)
        assert ring.calls == calls  # full: it waits for room instead of polling the ring
        assert reader.bytes <= 20_000 + READ_BLOCKS * 1000
        assert reader.peak == reader.bytes
        assert os.read(reader.notify_fd, 100)  # the main loop was woken
        # taking makes room and the reader refills, still within the bound
        taken = [reader.take() for _ in range(10)]
        assert all(t is not None and t[0] is ring for t in taken)
        assert wait(lambda: ring.calls > calls)
        assert reader.bytes <= 20_000 + READ_BLOCKS * 1000
    finally:
        reader.stop()
        reader.close()
        ring.close()


def test_take_is_fifo_and_empty_backlog_gives_none():
    ring = FakeRing()
    reader = RingReader([ring], limit=1, on_error=lambda r: None)
    assert reader.take() is None
    reader.put(ring, [b"1", b"22"])
    assert reader.take() == (ring, b"1") and reader.take() == (ring, b"22")
    assert reader.take() is None and reader.bytes == 0 and reader.peak == 3
    reader.close()
    ring.close()
