"""Live capture in network namespaces: header tables, flows, pcap store, drops.

Topology (all in namespaces this test creates, removed afterwards): device
``a`` (10.88.1.2) on bridge ``br1`` and device ``b`` (10.88.2.2) on bridge
``br2`` of the gateway namespace ``g``, which routes between them (two
device subnets, as edgesec's per-VLAN bridges) and to ``w`` (10.89.0.2).
The capture worker runs inside ``g`` on ``br1`` and ``br2``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgesec.capture.options import CaptureOptions
from edgesec.capture.service import CaptureError, CaptureService

SENDER = """
import socket, sys
dst, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    try:
        s.sendto(b"p" * size, (dst, port))
    except OSError:
        pass
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Bed:
    g: str
    a: str
    b: str
    w: str

    def send(self, ns: str, dst: str, port: int, n: int, size: int = 64) -> None:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, dst, str(port),
                        str(n), str(size)], check=True, capture_output=True, timeout=120)

    def service(self, options: CaptureOptions) -> CaptureService:
        return CaptureService(None, ["br1", "br2"], options=options,
                              prefix=("ip", "netns", "exec", self.g))


@pytest.fixture
def bed():
    p = "cap" + secrets.token_hex(3)
    names = Bed(g=p + "g", a=p + "a", b=p + "b", w=p + "w")
    made: list[str] = []
    try:
        for ns in (names.g, names.a, names.b, names.w):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        g = names.g
        for i, ns in enumerate((names.a, names.b), 1):
            ip("-n", g, "link", "add", f"br{i}", "type", "bridge")
            ip("-n", g, "addr", "add", f"10.88.{i}.1/24", "dev", f"br{i}")
            ip("-n", g, "link", "set", f"br{i}", "up")
            ip("-n", g, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", g, "link", "set", f"v{i}", "master", f"br{i}", "up")
            ip("-n", ns, "addr", "add", f"10.88.{i}.2/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "route", "add", "default", "via", f"10.88.{i}.1")
        ip("-n", g, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns",
           names.w)
        ip("-n", g, "addr", "add", "10.89.0.1/24", "dev", "wan0")
        ip("-n", g, "link", "set", "wan0", "up")
        ip("-n", names.w, "addr", "add", "10.89.0.2/24", "dev", "eth0")
        ip("-n", names.w, "link", "set", "eth0", "up")
        ip("-n", names.w, "route", "add", "default", "via", "10.89.0.1")
        subprocess.run(["ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True)
        yield names
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db, timeout=5)
    try:
        return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


async def wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(pred):
            return True
        await asyncio.sleep(0.05)
    return await asyncio.to_thread(pred)


def test_traffic_appears_in_header_tables_and_flows(bed, tmp_path):
    db = tmp_path / "capture.sqlite"
    # rows are visible one commitInterval after capture (default 5 s, flash-friendly)
    opts = CaptureOptions(capture_db_path=db, middlewares=("header", "flows"), buffer_timeout=10,
                          commit_interval=1)

    async def scenario():
        svc = bed.service(opts)
        await svc.start()
        try:
            assert svc.status().startswith(f"running pid {svc.pid} on br1,br2")
            await asyncio.to_thread(bed.send, bed.a, "10.88.2.2", 7001, 20)  # device to device
            await asyncio.to_thread(bed.send, bed.a, "10.89.0.2", 7002, 10)  # to the wan
            # a generous deadline: how fast rows appear is bench/capture.py's business
            ok = await wait_for(lambda: count(db, "SELECT count(*) FROM udp WHERE dest = 7001")
                                == 40 and count(db, "SELECT count(*) FROM udp WHERE dest = 7002")
                                == 10, 30.0)
            assert ok, "captured rows did not appear within 30 s"
            # a -> b is seen entering on br1 and leaving on br2
            for br in ("br1", "br2"):
                assert count(db, "SELECT count(*) FROM eth JOIN udp USING (id) WHERE dest = 7001 "
                                 f"AND ifname = '{br}'") == 20
            ok = await wait_for(lambda: count(
                db, "SELECT count(*) FROM flows WHERE dst_port = 7001 AND pkts_toserver = 20 "
                    "AND src_ip = '10.88.1.2' AND dst_ip = '10.88.2.2'") == 2, 30.0)
            assert ok, "flow rows missing"
            assert count(db, "SELECT count(*) FROM flows WHERE dst_port = 7002 AND ifname = 'br1' "
                             "AND dst_ip = '10.89.0.2' AND pkts_toserver = 10") == 1
            assert count(db, "SELECT count(*) FROM arp") >= 1
            await asyncio.sleep(1.2)
            assert svc.stats()["packets"] >= 50
        finally:
            await svc.stop()
        assert svc.pid is None and svc.status().startswith("stopped")

    asyncio.run(scenario())


def test_filter_is_applied_in_the_kernel(bed, tmp_path):
    db = tmp_path / "capture.sqlite"
    opts = CaptureOptions(capture_db_path=db, filter="udp port 7100", promiscuous=True,
                          immediate=True)

    async def scenario():
        svc = bed.service(opts)
        await svc.start()
        try:
            await asyncio.to_thread(bed.send, bed.a, "10.89.0.2", 7100, 15)
            await asyncio.to_thread(bed.send, bed.a, "10.89.0.2", 7101, 15)
            # generous: rows appear one commitInterval (5 s) after capture
            assert await wait_for(lambda: count(db, "SELECT count(*) FROM udp") >= 15, 30.0)
            await asyncio.sleep(0.5)
            assert count(db, "SELECT count(*) FROM udp WHERE dest = 7100") == 15
            assert count(db, "SELECT count(*) FROM eth") == 15  # no ARP, no 7101
        finally:
            await svc.stop()

    asyncio.run(scenario())


def test_pcap_store_rotates_and_cleaner_holds_its_bound(bed, tmp_path):
    db = tmp_path / "capture.sqlite"
    bound = 64 * 1024
    opts = CaptureOptions(capture_db_path=db, middlewares=("pcap", "cleaner"),
                          pcap_rotate_size=8 * 1024, pcap_store_size=bound)
    store = opts.store_dir

    async def scenario():
        svc = bed.service(opts)
        await svc.start()
        sizes = []
        try:
            for _ in range(6):
                await asyncio.to_thread(bed.send, bed.a, "10.89.0.2", 7200, 300, 200)
                await asyncio.sleep(0.3)
                sizes.append(sum(f.stat().st_size for f in store.iterdir()))
            await asyncio.sleep(1.2)
            stats = svc.stats()
        finally:
            await svc.stop()
        assert max(sizes) <= bound
        assert stats["pcap_files"] > 8 and stats["pcap_files_removed"] > 0
        names = sorted(f.name for f in store.iterdir())
        con = sqlite3.connect(db)
        assert sorted(r[0] for r in con.execute("SELECT name FROM pcap")) == names
        assert sum(r[0] for r in con.execute("SELECT size FROM pcap")) <= bound
        newest_br1 = max((n for n in names if n.startswith("br1-")),
                         key=lambda n: int(n.split("-")[1]))
        readable = subprocess.run(["tcpdump", "-nr", str(store / newest_br1)],
                                  capture_output=True, text=True)
        assert readable.returncode == 0 and "10.89.0.2.7200" in readable.stdout

    asyncio.run(scenario())


def test_kernel_drops_are_counted_and_reported(bed, tmp_path):
    db = tmp_path / "capture.sqlite"
    opts = CaptureOptions(capture_db_path=db, buffer_size=2 * 1024 * 1024)

    async def scenario():
        svc = bed.service(opts)
        await svc.start()
        try:
            os.kill(svc.pid, signal.SIGSTOP)  # the worker we started, by pid
            try:
                await asyncio.to_thread(bed.send, bed.a, "10.89.0.2", 7300, 40000, 16)
            finally:
                os.kill(svc.pid, signal.SIGCONT)
            assert await wait_for(lambda: svc.stats().get("kernel_drops", 0) > 0, 5.0)
            assert "kernel_drops" in svc.status() and " kernel_drops 0 " not in svc.status()
        finally:
            await svc.stop()

    asyncio.run(scenario())


def test_start_fails_clearly(bed, tmp_path):
    async def scenario():
        svc = CaptureService(None, ["nosuchif0"], options=CaptureOptions(
            capture_db_path=tmp_path / "x.sqlite"), prefix=("ip", "netns", "exec", bed.g))
        with pytest.raises(CaptureError, match="no such interface 'nosuchif0'"):
            await svc.start()
        bad = bed.service(CaptureOptions(capture_db_path=tmp_path / "y.sqlite",
                                         filter="port nonsense ((("))
        with pytest.raises(CaptureError, match="bad capture filter"):
            await bad.start()

    asyncio.run(scenario())


def test_worker_killed_is_restarted(bed, tmp_path):
    db = tmp_path / "capture.sqlite"

    async def scenario():
        svc = bed.service(CaptureOptions(capture_db_path=db))
        await svc.start()
        try:
            first = svc.pid
            os.kill(first, signal.SIGKILL)
            assert await wait_for(lambda: svc.pid not in (None, first), 10.0)
            await asyncio.to_thread(bed.send, bed.a, "10.89.0.2", 7400, 5)
            assert await wait_for(
                lambda: count(db, "SELECT count(*) FROM udp WHERE dest = 7400") == 5, 30.0)
            assert "restarts 1" in svc.status()
        finally:
            await svc.stop()

    asyncio.run(scenario())


def test_burst_larger_than_the_ring_is_stored_whole(bed, tmp_path):
    """The reader thread empties the ring into the backlog while decoding lags behind.

    60,000 frames sent as fast as one sender can are about 2x what a 4 MiB
    ring holds; before the backlog, header capture kept up with 10-40k
    pkts/s and the kernel dropped the rest of such a burst.
    """
    db = tmp_path / "capture.sqlite"
    opts = CaptureOptions(capture_db_path=db, buffer_size=4 * 1024 * 1024, commit_interval=1.0)
    n = 60_000

    async def scenario():
        svc = bed.service(opts)
        await svc.start()
        try:
            await asyncio.to_thread(bed.send, bed.a, "10.89.0.2", 7301, n, 16)
            assert await wait_for(
                lambda: count(db, "SELECT count(*) FROM udp WHERE dest = 7301") >= n, 90.0), \
                svc.stats()
            stats = svc.stats()
            assert stats["kernel_drops"] == 0 and stats["own_drops"] == 0, stats
            assert stats["backlog_limit_bytes"] == 4 * 2 * 4 * 1024 * 1024  # 4 rings of 2
        finally:
            await svc.stop()
        last = svc.stats()
        assert last["backlog_bytes"] == 0 and last["backlog_peak_bytes"] > 0, last

    asyncio.run(scenario())
