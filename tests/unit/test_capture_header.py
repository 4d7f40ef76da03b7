"""Header middleware writer thread: commits hold every processed row, errors surface."""

from __future__ import annotations

import sqlite3

import pytest

from edgesec.capture.decode import decode, new_ids
from edgesec.capture.header import HeaderMiddleware
from edgesec.capture.middleware import Batch, Context
from edgesec.capture.options import CaptureOptions
from edgesec.capture.synth import templates


def setup(tmp_path):
    db = sqlite3.connect(tmp_path / "h.sqlite", isolation_level=None, check_same_thread=False)
    mw = HeaderMiddleware()
    mw.init(Context(db=db, options=CaptureOptions(capture_db_path=tmp_path / "h.sqlite")))
    return db, mw


def batch(n: int) -> Batch:
    raws = [bytes(p) for p in templates()]
    pkts = [(i, len(raws[i % len(raws)]), raws[i % len(raws)]) for i in range(n)]
    frames = [decode(d, ts, ln, "if0", u) for (ts, ln, d), u in zip(pkts, new_ids(n), strict=True)]
    return Batch(ifname="if0", packets=pkts, frames=frames)


def test_commit_holds_every_row_processed_before_it(tmp_path):
    db, mw = setup(tmp_path)
    db.execute("BEGIN")
    for _ in range(5):
        mw.process(batch(300))
    mw.on_commit()
    db.execute("COMMIT")
    other = sqlite3.connect(tmp_path / "h.sqlite")
    assert other.execute("SELECT count(*) FROM eth").fetchone()[0] == 1500
    other.close()
    mw.close()
    db.close()


def test_a_failed_insert_is_raised_on_the_pipeline_thread(tmp_path):
    db, mw = setup(tmp_path)
    bad = batch(3)
    bad.frames[1]["eth"] = ("not", "enough", "columns")
    db.execute("BEGIN")
    mw.process(bad)
    with pytest.raises(sqlite3.ProgrammingError):
        mw.on_commit()
    mw.process(batch(2))  # the writer goes on after an error
    mw.on_commit()
    db.execute("COMMIT")
    mw.close()
    db.close()


def test_multi_row_inserts_store_every_row_as_decoded(tmp_path):
    db, mw = setup(tmp_path)
    b = batch(100)  # 3 statements of 32 rows per table and the rest one by one
    db.execute("BEGIN")
    mw.process(b)
    mw.on_commit()
    db.execute("COMMIT")
    for table in ("eth", "ip4", "ip6", "udp", "tcp", "dns", "dhcp"):
        want = sorted(rows[table] for rows in b.frames if table in rows)
        got = sorted(db.execute(f"SELECT * FROM {table}").fetchall())
        assert got == want and want, table
    mw.close()
    db.close()


def test_bulk_inserts_on_the_pipeline_thread_and_raises_there(tmp_path):
    db = sqlite3.connect(tmp_path / "b.sqlite", isolation_level=None, check_same_thread=False)
    mw = HeaderMiddleware()
    mw.init(Context(db=db, options=CaptureOptions(capture_db_path=tmp_path / "b.sqlite"),
                    bulk=True))
    assert mw._thread is None
    db.execute("BEGIN")
    good = batch(40)
    mw.process(good)
    assert db.execute("SELECT count(*) FROM eth").fetchone()[0] == 40  # no queue in between
    bad = batch(3)
    bad.frames[1]["eth"] = ("not", "enough", "columns")
    with pytest.raises(sqlite3.ProgrammingError):
        mw.process(bad)
    mw.on_commit()
    db.execute("COMMIT")
    mw.close()
    names = [r[1] for r in db.execute("PRAGMA index_list(eth)")]
    assert "eth_shost" in names and "eth_dhost" in names  # built at close
    db.close()
