"""The capture worker in-process: a real TPACKET_V3 ring on the loopback interface,
its reader/store threads, status lines, a clean stop, and a clear error exit.

Opening a packet socket needs CAP_NET_RAW: the ring test runs as root (as CI
does) and is skipped otherwise; the error path needs no privilege.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from edgesec.capture import worker as capture_worker
from edgesec.capture.options import CaptureOptions
from poll import wait_for

DATAGRAMS = 200


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.skipif(os.geteuid() != 0, reason="a packet socket needs CAP_NET_RAW")
def test_worker_stores_what_crosses_the_ring_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_udp_port()
    db = tmp_path / "capture.sqlite"
    options = CaptureOptions(capture_db_path=db, filter=f"udp dst port {port}",
                             middlewares=("header",), commit_interval=0.2)
    worker = capture_worker.Worker(options, ["lo"])
    lines: list[dict[str, Any]] = []
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    thread = threading.Thread(target=worker.run, args=(lines.append, rfd), daemon=True)
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
            rx.bind(("127.0.0.1", port))
            for i in range(DATAGRAMS):
                tx.sendto(b"edgesec-%d" % i, ("127.0.0.1", port))
        assert wait_for(lambda: worker.packets >= DATAGRAMS, 60), worker.status()
    finally:
        worker.stop = True
        os.write(wfd, b"x")  # as the signal wake-up fd would
        thread.join(60)
        final = worker.status()
        worker.close()
        os.close(rfd)
        os.close(wfd)
    assert not thread.is_alive()
    assert lines and "kernel_drops" in lines[0]  # status lines (at most one a second)
    assert final["packets"] >= DATAGRAMS and final["own_drops"] == 0
    assert final["interfaces"]["lo"]["errors"] == 0
    with sqlite3.connect(db) as conn:
        udp = conn.execute("SELECT count(*) FROM udp WHERE dest = ?", (port,)).fetchone()[0]
        other = conn.execute("SELECT count(*) FROM udp WHERE dest != ?", (port,)).fetchone()[0]
    assert udp == final["packets"] and other == 0  # the filter ran in the kernel


def test_an_interface_that_cannot_be_opened_is_an_error_line_and_exit_2(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    options = CaptureOptions(capture_db_path=tmp_path / "c.sqlite")
    code = capture_worker.main(["--options", options.to_json(),
                                "--interface", "no-such-if0"])
    assert code == 2
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line.get("error")
