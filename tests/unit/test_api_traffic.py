"""Per-device traffic of the last hour, read-only from a real capture database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from edgesec.api.traffic import CACHE_S, TrafficCache, read
from edgesec.capture.schema import create_statement, insert_statement

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def capture_db(path: Path, frames: list[tuple[int, str, str, int]]) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(create_statement("eth"))
    conn.executemany(insert_statement("eth"), [
        (ts, f"id{i}", length, length, "br1", dst, src, 0x800)
        for i, (ts, src, dst, length) in enumerate(frames)])
    conn.commit()
    conn.close()
    return path


def test_last_hour_sent_received_and_last_seen(tmp_path: Path) -> None:
    now = time.time()
    us = lambda t: int(t * 1_000_000)  # noqa: E731
    db = capture_db(tmp_path / "capture.sqlite", [
        (us(now - 7200), A, B, 1000),  # older than an hour: not counted
        (us(now - 60), A, B, 100),
        (us(now - 30), A, B, 60),
        (us(now - 10), B, A, 40),
    ])
    before = db.read_bytes()
    got = read(db, now)
    assert (got[A].sent_packets, got[A].sent_bytes) == (2, 160)
    assert (got[A].received_packets, got[A].received_bytes) == (1, 40)
    assert got[A].last_seen_us == us(now - 30)
    assert (got[B].sent_bytes, got[B].received_bytes) == (40, 160)
    assert db.read_bytes() == before  # read-only


def test_missing_or_foreign_database_reads_as_nothing(tmp_path: Path) -> None:
    assert read(tmp_path / "absent.sqlite") == {}
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    assert read(tmp_path / "junk.sqlite") == {}
    assert not (tmp_path / "absent.sqlite").exists()


def test_cache_reads_at_most_once_per_period(tmp_path: Path) -> None:
    db = capture_db(tmp_path / "c.sqlite", [(int(time.time() * 1e6), A, B, 10)])
    cache = TrafficCache(db)

    async def twice() -> tuple[int, int]:
        first = (await cache.get())[A].sent_packets
        capture_db(db, [(int(time.time() * 1e6), A, B, 10)])  # one more frame
        return first, (await cache.get())[A].sent_packets
    assert asyncio.run(twice()) == (1, 1) and CACHE_S >= 10
    assert asyncio.run(TrafficCache(None).get()) == {}
