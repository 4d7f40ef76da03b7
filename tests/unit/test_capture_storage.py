"""Storage bounds of the capture DB: retention by size and age, the guard, time commits."""

from __future__ import annotations

import sqlite3
import time

from hypothesis import example, given
from hypothesis import strategies as st

from edgesec.capture.guard import db_used_bytes
from edgesec.capture.options import CaptureOptions, reserve_bytes, ring_size
from edgesec.capture.pcapfile import PcapReader
from edgesec.capture.pipeline import Pipeline
from edgesec.capture.synth import write_mixed
from edgesec.config import parse_reserve


def packets(tmp_path, n, start_us):
    src = tmp_path / f"mix{start_us}.pcap"
    write_mixed(src, n, start_us=start_us)
    with src.open("rb") as fh:
        return list(PcapReader(fh))


def feed(pipe, pkts, size=200, probe=None):
    for i in range(0, len(pkts), size):
        pipe.feed("br1", pkts[i:i + size])
        if probe:
            probe()


def count(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def test_cleaner_keeps_the_db_under_its_size_bound_newest_frames_kept(tmp_path):
    limit = 1024 * 1024
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", middlewares=("header", "cleaner"),
                          capture_db_size=limit, capture_max_age=0, capture_reserve="0")
    pkts = packets(tmp_path, 20000, 1_700_000_000_000_000)
    pipe = Pipeline(opts, opts.middlewares)
    used = []
    feed(pipe, pkts, probe=lambda: used.append(db_used_bytes(pipe.db)))
    removed = pipe.ctx.stats["frames_removed"]
    pipe.close()
    assert max(used) <= limit and removed > 0
    db = opts.capture_db_path
    kept = count(db, "SELECT count(*) FROM eth")
    assert 0 < kept < len(pkts)
    # oldest first: the newest frame is there, the oldest gone
    assert count(db, f"SELECT count(*) FROM eth WHERE timestamp = {pkts[-1][0]}") == 1
    assert count(db, f"SELECT count(*) FROM eth WHERE timestamp = {pkts[0][0]}") == 0
    # frames go whole: no layer row outlives its eth row
    for table in ("ip4", "ip6", "udp", "tcp", "arp", "dns"):
        assert count(db, f"SELECT count(*) FROM {table} WHERE id NOT IN (SELECT id FROM eth)") == 0
    # the file stops growing near the bound (free pages are reused)
    assert db.stat().st_size <= 1.3 * limit


def test_cleaner_removes_frames_and_flows_older_than_max_age(tmp_path):
    now_us = int(time.time() * 1_000_000)
    old = packets(tmp_path, 500, now_us - 7200 * 1_000_000)
    new = packets(tmp_path, 500, now_us - 1000)
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", capture_reserve="0",
                          middlewares=("header", "flows", "cleaner"), capture_max_age=3600)
    pipe = Pipeline(opts, opts.middlewares)
    feed(pipe, old)
    pipe.middlewares[-1]._next_age_check = 0.0  # the minute has passed
    feed(pipe, new)
    pipe.close()
    db = opts.capture_db_path
    assert count(db, "SELECT count(*) FROM eth") == 500
    assert count(db, "SELECT min(timestamp) FROM eth") >= now_us - 1000
    assert count(db, f"SELECT count(*) FROM flows WHERE last_seen < {now_us - 3600_000_000}") == 0
    assert count(db, "SELECT count(*) FROM flows") > 0


def test_guard_refuses_below_the_free_space_reserve(tmp_path):
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", capture_reserve="99.99%")
    pipe = Pipeline(opts, ("header",), live=True)
    pkts = packets(tmp_path, 300, 1_700_000_000_000_000)
    assert pipe.feed("br1", pkts) is None
    assert pipe.storage_drops == 300 and "free on" in pipe.guard.reason
    pipe.close()
    assert count(opts.capture_db_path, "SELECT count(*) FROM eth") == 0


def test_guard_stops_at_the_db_bound_without_cleaner_and_says_so(tmp_path):
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", capture_reserve="0",
                          capture_db_size=256 * 1024, commit_interval=0)
    pipe = Pipeline(opts, ("header",), live=True)
    feed(pipe, packets(tmp_path, 10000, 1_700_000_000_000_000))
    assert pipe.storage_drops > 0 and "captureDbSize" in pipe.guard.reason
    assert db_used_bytes(pipe.db) < 256 * 1024 + 200 * 1024  # at most one batch over
    pipe.close()


def test_live_commits_by_time_not_per_batch(tmp_path):
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", capture_reserve="0",
                          commit_interval=60)
    pipe = Pipeline(opts, ("header",), live=True)
    feed(pipe, packets(tmp_path, 1000, 1_700_000_000_000_000))
    assert 0 < pipe.due() <= 60
    assert count(opts.capture_db_path, "SELECT count(*) FROM eth") == 0  # not yet committed
    pipe.commit()
    assert pipe.due() is None
    assert count(opts.capture_db_path, "SELECT count(*) FROM eth") == 1000
    pipe.close()


def test_wal_is_bounded(tmp_path):
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", capture_reserve="0",
                          commit_interval=0)
    pipe = Pipeline(opts, ("header", "flows"), live=True)
    feed(pipe, packets(tmp_path, 20000, 1_700_000_000_000_000), size=2048)
    pipe.close()
    wal = tmp_path / "c.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size <= 5 * 1024 * 1024


def test_ring_size_follows_the_rate_and_reserve_parses():
    assert ring_size(0) == 4 * 128 * 1024
    assert ring_size(5000) == 10 * 128 * 1024
    assert ring_size(10**9) == 16 * 1024 * 1024
    assert CaptureOptions(buffer_size=1 << 20).ring_bytes == 1 << 20
    assert reserve_bytes("10%", 1000) == 100 and reserve_bytes("4096", 1000) == 4096


def test_eve_file_is_rotated_at_its_bound(tmp_path):
    eve = tmp_path / "eve.json"
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", eve_path=eve,
                          eve_rotate_size=64 * 1024, capture_reserve="0")
    pipe = Pipeline(opts, ("eve",), live=True)
    feed(pipe, packets(tmp_path, 20000, 1_700_000_000_000_000))
    pipe.close()
    rotated = eve.with_name("eve.json.1")
    assert rotated.exists() and rotated.stat().st_size <= 64 * 1024 + 4096
    assert eve.stat().st_size <= 64 * 1024 + 4096


def test_pcap_without_cleaner_is_warned_about(tmp_path, caplog):
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", capture_reserve="0")
    Pipeline(opts, ("pcap",), live=True).close()
    assert "pcap runs without cleaner" in caplog.text
    caplog.clear()
    Pipeline(opts, ("pcap", "cleaner"), live=True).close()
    assert "without cleaner" not in caplog.text


def test_guard_pauses_and_resumes_with_one_log_line_each(tmp_path, caplog):
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", capture_reserve="99.99%")
    pipe = Pipeline(opts, ("header",), live=True)
    pkts = packets(tmp_path, 300, 1_700_000_000_000_000)
    for _ in range(5):
        assert pipe.feed("br1", pkts) is None
    pipe.guard.margin += 1024 * 1024  # the figures in the reason change: still one line
    assert pipe.feed("br1", pkts) is None
    assert caplog.text.count("capture paused") == 1
    pipe.guard._reserve = "0"  # space came back
    assert pipe.feed("br1", pkts) is not None
    assert caplog.text.count("capture resumed") == 1
    pipe.close()


def test_service_health_follows_the_worker_status():
    from edgesec.capture.service import CaptureService

    class Running:
        pid, returncode = 4242, None

    svc = CaptureService(None, ["br1"], options=CaptureOptions())
    assert svc.health() == ("ok", "")
    svc._error = "worker exited with 1"
    assert svc.health() == ("failed", "worker exited with 1")
    svc._proc = Running()
    svc._last = {"storage": "capture paused: 1.0 MiB free on /x"}
    assert svc.health() == ("degraded", "capture paused: 1.0 MiB free on /x")
    assert svc.status().startswith("running pid 4242")
    svc._last = {"last_error": "br1: Network is down", "last_error_at": time.time(), "errors": 1}
    state, why = svc.health()
    assert state == "degraded" and "Network is down" in why
    assert "socket_errors 1" in svc.status()
    svc._last = {"last_error": "br1: Network is down", "last_error_at": time.time() - 3600}
    assert svc.health() == ("ok", "")


@example("nan%")
@example("0o17")
@example("-5%")
@given(st.text(max_size=20))
def test_capture_reserve_parser_accepts_or_explains(text):
    try:
        value = parse_reserve(text)
    except ValueError as exc:
        assert "expected" in str(exc)
    else:
        assert reserve_bytes(value, 10**9) >= 0
