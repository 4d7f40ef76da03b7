"""Store thread and checkpoint thread of the live capture worker."""

from __future__ import annotations

import sqlite3
import struct
import time
from pathlib import Path

import pytest

from edgesec.capture import checkpoint
from edgesec.capture.checkpoint import Checkpointer
from edgesec.capture.middleware import Batch
from edgesec.capture.options import CaptureOptions
from edgesec.capture.pipeline import Pipeline, open_db
from edgesec.capture.storer import Storer
from poll import wait_for as wait


def udp_frame(i: int) -> bytes:
    payload = b"p" * 32
    udp = struct.pack("!HHHH", 40000, 9000 + i % 50, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), i & 0xFFFF, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp + payload


def packets(n: int, start: int = 0) -> list[tuple[int, int, bytes]]:
    return [(1_700_000_000_000_000 + i, 74, udp_frame(i)) for i in range(start, start + n)]


def count(path: Path, table: str = "eth") -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_checkpoint_thread_copies_the_wal_when_kicked_and_sleeps_otherwise(tmp_path):
    path = tmp_path / "c.sqlite"
    db = open_db(path, page_size=2048)
    db.execute("PRAGMA wal_autocheckpoint=0")  # only the thread checkpoints
    db.execute("CREATE TABLE t (x)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?)", [(b"x" * 200,) for _ in range(5000)])
    db.execute("COMMIT")
    small = path.stat().st_size
    assert small < 100_000 and (tmp_path / "c.sqlite-wal").stat().st_size > 1_000_000
    ckpt = Checkpointer(path, 4 << 20)
    try:
        time.sleep(0.3)
        assert ckpt.runs == 0  # not kicked: no checkpoint, no polling
        ckpt.kick()
        assert wait(lambda: ckpt.runs == 1)
        assert path.stat().st_size > 1_000_000  # the rows are in the DB file now
        time.sleep(0.3)
        assert ckpt.runs == 1 and ckpt.errors == 0
    finally:
        ckpt.close()
        db.close()


def test_a_wal_over_the_hard_limit_makes_the_committer_wait_for_a_checkpoint(
        tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "WAL_HARD_LIMIT", 64 * 1024)
    path = tmp_path / "c.sqlite"
    db = open_db(path, page_size=2048)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(b"x" * 200,) for _ in range(2000)])
    ckpt = Checkpointer(path, 4 << 20)
    try:
        ckpt.bound()
        assert ckpt.runs == 1  # bound() returned only after the checkpoint ran
        assert path.stat().st_size > 300_000
    finally:
        ckpt.close()
        db.close()


@pytest.fixture
def live(tmp_path):
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", middlewares=("header",),
                          commit_interval=0.2)
    pipe = Pipeline(opts, opts.middlewares, live=True)
    woken: list[int] = []
    storer = Storer(pipe, lambda: woken.append(1))
    storer.start()
    yield opts, pipe, storer, woken
    storer.finish()
    pipe.close()


def test_store_thread_stores_in_order_and_commits_by_time(live):
    opts, pipe, storer, woken = live
    for k in range(3):
        assert storer.put(pipe.decode_batch("veth0", packets(500, k * 500)))
    # committed by time (0.2 s) without another batch: a second connection sees every row
    assert wait(lambda: count(opts.capture_db_path) == 1500)
    assert count(opts.capture_db_path, "udp") == 1500
    assert storer.packets == 1500 and storer.batches == 3 and storer.own_drops == 0
    assert woken  # the main loop was told to report
    assert pipe.due() is None  # nothing open: the thread sleeps without a timeout


def test_store_thread_decodes_a_batch_the_main_thread_skipped(live):
    opts, _pipe, storer, _ = live
    storer.put(Batch(ifname="veth0", packets=packets(10), frames=[]))
    assert wait(lambda: count(opts.capture_db_path) == 10)


def test_a_failed_commit_drops_its_transaction_and_counts_it(live, monkeypatch):
    opts, pipe, storer, _ = live
    real = pipe.commit
    calls = []

    def failing() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        real()

    monkeypatch.setattr(pipe, "commit", failing)
    storer.put(pipe.decode_batch("veth0", packets(300)))
    assert wait(lambda: storer.own_drops == 300)
    assert storer.packets == 0
    storer.put(pipe.decode_batch("veth0", packets(200, 300)))
    assert wait(lambda: count(opts.capture_db_path) == 200)  # capture goes on
    assert storer.packets == 200 and storer.own_drops == 300


def test_live_header_capture_stores_the_decoders_rows_from_columns(live):
    opts, pipe, storer, _ = live
    from edgesec.capture.decode import decode
    from edgesec.capture.schema import columns

    assert pipe.columnar  # header only: per-table columns, no dict per frame
    pkts = packets(300)
    storer.put(pipe.decode_batch("veth0", pkts))
    assert wait(lambda: count(opts.capture_db_path) == 300)
    want: dict[str, list[tuple]] = {}
    for ts, length, data in pkts:
        for table, row in decode(data, ts, length, "veth0", "x").items():
            want.setdefault(table, []).append(row)
    db = sqlite3.connect(opts.capture_db_path)
    try:
        for table, rows in want.items():
            cols = columns(table)
            at = cols.index("id")
            got = db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
            assert [r[:at] + r[at + 1:] for r in got] == [r[:at] + r[at + 1:] for r in rows]
    finally:
        db.close()
