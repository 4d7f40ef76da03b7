"""Capture against the real daemon: a device flood cannot fill the disk, a link
flap cannot make the idle worker spin.

Reuses the namespaces of test_capture_live (device ``a`` on ``br1``, ``b`` on
``br2``, wan ``w``; the daemon runs in the gateway namespace ``g``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_capture_daemon import NetnsDaemon
from test_capture_live import bed  # noqa: F401 - fixture

from daemon import write_config

MIB = 1024 * 1024


def wait_status(daemon, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while text not in (status := daemon.ctl("STATUS")):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return status


def worker_pid(status: str) -> int:
    line = next(ln for ln in status.splitlines() if ln.startswith("capture "))
    return int(line.split(" pid ")[1].split()[0])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_flood_cannot_fill_the_filesystem_and_the_control_plane_keeps_working(bed, tmp_path):  # noqa: F811
    fs = tmp_path / "small"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(fs)], check=True)
    try:
        config = write_config(fs, {
            "system": {"execCapture": True},
            "capture": {"captureDbPath": "capture.sqlite", "captureInterfaces": "br1,br2"},
        })
        with NetnsDaemon(config, netns=bed.g) as daemon:
            wait_status(daemon, "capture ok running", 20)
            st = os.statvfs(fs)
            reserve = st.f_blocks * st.f_frsize // 10  # captureReserve default 10%
            lowest = [st.f_bavail * st.f_frsize]
            done = threading.Event()

            def flood() -> None:  # 1-byte UDP from a device, until capture gives up
                while not done.is_set():
                    bed.send(bed.a, "10.89.0.2", 9, 100_000, 1)

            def watch() -> None:
                while not done.is_set():
                    s = os.statvfs(fs)
                    lowest.append(s.f_bavail * s.f_frsize)
                    time.sleep(0.02)

            threads = [threading.Thread(target=flood), threading.Thread(target=flood),
                       threading.Thread(target=watch)]
            for t in threads:
                t.start()
            try:
                status = wait_status(daemon, "capture degraded", 120)
                time.sleep(2)  # the flood goes on against a paused capture
            finally:
                done.set()
                for t in threads:
                    t.join()
            print(f"lowest free {min(lowest) / MIB:.1f} MiB, reserve {reserve / MIB:.1f} MiB; "
                  f"{status.strip()}")
            files = {p.name: p.stat().st_size for p in fs.iterdir()}
            assert min(lowest) >= reserve, files
            assert "storage_drops" in status
            assert "capture degraded capture paused" in status  # health() in STATUS
            mac = "02:aa:bb:cc:dd:01"
            assert daemon.ctl(f"ACCEPT_MAC {mac} 2") == "OK\n"
            assert daemon.ctl(f"ADD_BRIDGE {mac} 02:aa:bb:cc:dd:02") == "OK\n"
            assert mac in daemon.ctl("GET_ALL")
            ticket = daemon.ctl(f"REGISTER_TICKET {mac} visitor 3").strip()
            assert re.fullmatch(r"\d{16}", ticket), ticket
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


def test_link_flap_does_not_make_the_idle_worker_spin(bed, tmp_path):  # noqa: F811
    config = write_config(tmp_path, {
        "system": {"execCapture": True},
        "capture": {"captureDbPath": "capture.sqlite", "captureInterfaces": "br1,br2"},
    })
    with NetnsDaemon(config, netns=bed.g) as daemon:
        pid = worker_pid(wait_status(daemon, "capture ok running", 20))
        for br in ("br1", "br2"):
            subprocess.run(["ip", "-n", bed.g, "link", "set", br, "down"], check=True)
            subprocess.run(["ip", "-n", bed.g, "link", "set", br, "up"], check=True)
        time.sleep(1)
        t0, c0 = time.monotonic(), cpu_seconds(pid)
        time.sleep(4)
        share = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        status = daemon.ctl("STATUS")
        print(f"worker CPU after a link flap: {share:.1%}; {status.strip()}")
        assert share < 0.2
        assert "socket_errors" in status and "Network is down" in status
        assert "capture degraded socket error" in status
        # still capturing after the flap
        bed.send(bed.a, "10.89.0.2", 7600, 50, 8)
        deadline = time.monotonic() + 30
        while "packets 0 " in (status := daemon.ctl("STATUS")) or worker_pid(status) != pid:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
