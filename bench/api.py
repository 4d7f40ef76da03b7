"""Benchmark the management API on the real daemon, each figure beside a peer.

* ``GET /api/v1/devices`` with N devices (keep-alive HTTP/1.1 on loopback, one
  client): requests/s and p99 (target p99 < 10 ms), against ``GET_ALL`` of the
  same devices over the supervisor's UNIX socket in the same run.
* SSE: time from sending a supervisor change to its event arriving on
  ``/api/v1/events`` (target p99 < 100 ms), against the same change's event on
  the supervisor's own ``SUBSCRIBE_EVENTS``.
* The dashboard's first render of N devices in Chromium (Debian's, driven by
  Playwright): navigation to all N rows drawn (target < 1 s); a screenshot is
  written with ``--screenshot``.
* Idle CPU of the daemon over ``--idle`` seconds with the API on, against the
  same daemon with the API off (target: no measurable difference).

    .venv/bin/python bench/api.py                 # ~1 min
    .venv/bin/python bench/api.py --devices 1000 --screenshot docs/dashboard.png
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from daemon import Daemon, write_config  # noqa: E402
from edgesec.api.tokens import TokenStore  # noqa: E402
from edgesec.supervisor.client import SupervisorClient  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(directory: Path, devices: int, api: bool) -> tuple[Daemon, int, str]:
    port = free_port()
    section = {"port": port, "tokenFile": "tokens.json"} if api else {"socketPath": ""}
    config = write_config(directory, {"api": section})
    token = TokenStore(directory / "tokens.json").create("admin", "bench")[0] if api else ""
    daemon = Daemon(config, verbosity=0).start()
    with SupervisorClient(unix_path=daemon.socket_path, timeout=10) as c:
        for i in range(devices):
            c.request(f"ACCEPT_MAC 02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                      f"{i & 255:02x} {i % 5 + 1}")
    return daemon, port, token


def bench_get(port: int, token: str, daemon: Daemon, seconds: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    lat: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        conn.request("GET", "/api/v1/devices", headers=headers)
        body = conn.getresponse().read()
        lat.append(time.perf_counter() - t)
    count = len(json.loads(body))
    peer: list[float] = []
    with SupervisorClient(unix_path=daemon.socket_path, timeout=10) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            c.request("GET_ALL")
            peer.append(time.perf_counter() - t)
    rate, peer_rate = len(lat) / sum(lat), len(peer) / sum(peer)
    print(f"GET /api/v1/devices ({count} devices): {rate:,.0f} req/s, "
          f"p50 {pct(lat, .5) * 1e3:.2f} ms, p99 {pct(lat, .99) * 1e3:.2f} ms (target < 10)")
    print(f"  peer GET_ALL over the supervisor socket: {peer_rate:,.0f} req/s, "
          f"p99 {pct(peer, .99) * 1e3:.2f} ms; API/peer = {rate / peer_rate:.2f}x")


def bench_sse(port: int, token: str, daemon: Daemon, changes: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    stream = conn.getresponse()
    arrived: list[float] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set() and len(arrived) < changes:
            line = stream.fp.readline()
            if line.startswith(b"data: ") and b'"device"' in line:
                arrived.append(time.perf_counter())
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # peer: the supervisor's own event subscription, fed by the same changes
    watcher = SupervisorClient(unix_path=daemon.socket_path, timeout=10)
    watcher.__enter__()
    assert watcher.request("SUBSCRIBE_EVENTS") == "OK\n"
    peer_arrived: list[float] = []

    def read_peer() -> None:
        watcher.sock.settimeout(1.0)
        while not done.is_set() and len(peer_arrived) < changes:
            try:
                data = watcher.sock.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"POLICY"):
                peer_arrived.append(time.perf_counter())
    peer_reader = threading.Thread(target=read_peer, daemon=True)
    peer_reader.start()
    sent: list[float] = []
    with SupervisorClient(unix_path=daemon.socket_path, timeout=10) as c:
        time.sleep(0.3)
        for i in range(changes):
            sent.append(time.perf_counter())
            c.request(f"{'ADD' if i % 2 == 0 else 'REMOVE'}_NAT 02:00:00:00:00:01")
            time.sleep(0.01)
    reader.join(10)
    peer_reader.join(10)
    done.set()
    watcher.__exit__(None, None, None)
    lat = [a - s for s, a in zip(sent, arrived, strict=False)]
    peer = [a - s for s, a in zip(sent, peer_arrived, strict=False)]
    print(f"SSE event after the change: p50 {pct(lat, .5) * 1e3:.2f} ms, "
          f"p99 {pct(lat, .99) * 1e3:.2f} ms over {len(lat)} changes (target p99 < 100)")
    if peer:
        print(f"  peer: the supervisor's SUBSCRIBE_EVENTS p99 {pct(peer, .99) * 1e3:.2f} ms; "
              f"SSE/peer p99 = {pct(lat, .99) / max(pct(peer, .99), 1e-9):.2f}x")


def bench_render(port: int, token: str, devices: int, screenshot: str | None) -> None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if not chromium:
        print("dashboard render: skipped (chromium or playwright missing)")
        return
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as home:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                     env={**os.environ, "HOME": home})
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("#device-rows tr")
        times = []
        for _ in range(5):
            t = time.perf_counter()
            page.reload()
            page.wait_for_function(f"document.querySelectorAll('#device-rows tr').length"
                                   f" >= {devices}")
            times.append(time.perf_counter() - t)
        if screenshot:
            page.screenshot(path=screenshot)
        # peer: the browser rendering the same page's static shell (no data)
        t = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/static/app.css")
        shell = time.perf_counter() - t
        browser.close()
    best = min(times)
    print(f"dashboard first render of {devices} devices: best {best * 1e3:.0f} ms, "
          f"median {statistics.median(times) * 1e3:.0f} ms (target < 1000); "
          f"peer static load {shell * 1e3:.0f} ms")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle(seconds: float) -> None:
    used = {}
    for api in (True, False):
        with tempfile.TemporaryDirectory() as d:
            daemon, _port, _token = start(Path(d), 0, api)
            try:
                time.sleep(1.0)
                assert daemon.proc is not None
                before = cpu_seconds(daemon.proc.pid)
                time.sleep(seconds)
                used[api] = (cpu_seconds(daemon.proc.pid) - before) / seconds * 100
            finally:
                daemon.stop()
    print(f"idle daemon CPU: {used[True]:.2f} % of a core with the API, "
          f"{used[False]:.2f} % without (peer); added {used[True] - used[False]:+.2f} points")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--screenshot")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        daemon, port, token = start(Path(d), args.devices, True)
        try:
            bench_get(port, token, daemon, args.seconds)
            bench_sse(port, token, daemon, args.changes)
            bench_render(port, token, args.devices, args.screenshot)
        finally:
            daemon.stop()
    bench_idle(args.idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
