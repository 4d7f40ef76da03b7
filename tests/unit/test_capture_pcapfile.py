"""pcap reader/writer: formats, damage handling, fuzzing."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.capture.pcapfile import PcapError, PcapReader, PcapWriter

PKTS = [(1_700_000_000_000_001 + i * 1500, 60 + i, bytes([i]) * (40 + i)) for i in range(20)]


def written(pkts=PKTS) -> bytes:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    for ts, length, data in pkts:
        w.write(ts, length, data)
    return buf.getvalue()


def classic(pkts, order: str, nanos: bool) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for ts, length, data in pkts:
        frac = (ts % 1_000_000) * (1000 if nanos else 1)
        out += struct.pack(order + "IIII", ts // 1_000_000, frac, len(data), length) + data
    return out


def test_roundtrip():
    r = PcapReader(io.BytesIO(written()))
    assert list(r) == PKTS
    assert r.linktype == 1 and r.packets == 20 and r.bytes_read == len(written())


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_both_byte_orders_and_resolutions(order, nanos):
    r = PcapReader(io.BytesIO(classic(PKTS, order, nanos)))
    assert r.nanosecond is nanos
    assert list(r) == PKTS


class Trickle(io.RawIOBase):
    """A pipe-like stream returning at most 7 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(min(n, 7) if n and n > 0 else 7)


def test_short_reads_from_a_stream():
    assert list(PcapReader(Trickle(written()))) == PKTS


@pytest.mark.parametrize("cut", [24 + 5, 24 + 16 + 10, len(written()) - 3])
def test_truncation_yields_packets_before_the_damage_then_errors(cut):
    data = written()[:cut]
    got = []
    with pytest.raises(PcapError, match="truncated"):
        for pkt in PcapReader(io.BytesIO(data)):
            got.append(pkt)
    assert got == PKTS[: len(got)]
    assert len(got) == (0 if cut < 24 + 16 + 40 else len(got))


def test_caplen_larger_than_wire_length_is_an_error():
    bad = classic([(1, 10, b"x" * 20)], "<", False)
    with pytest.raises(PcapError, match="caplen 20 > wire length 10"):
        list(PcapReader(io.BytesIO(bad)))


def test_bad_magic_and_pcapng_and_short_header():
    with pytest.raises(PcapError, match="bad magic"):
        PcapReader(io.BytesIO(b"\x00" * 24))
    with pytest.raises(PcapError, match="pcapng"):
        PcapReader(io.BytesIO(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40))
    with pytest.raises(PcapError, match="header is 3 bytes"):
        PcapReader(io.BytesIO(b"abc"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_pcaperror(data):
    try:
        for _ in PcapReader(io.BytesIO(data)):
            pass
    except PcapError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(written())), st.binary(max_size=40))
def test_fuzz_truncated_or_garbled_tail(cut, tail):
    data = written()[:cut] + tail
    got = []
    try:
        for pkt in PcapReader(io.BytesIO(data)):
            got.append(pkt)
    except PcapError:
        pass
    intact = [p for p in got if p in PKTS]
    assert intact == PKTS[: len(intact)]
