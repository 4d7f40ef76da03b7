"""The capture service follows device bridges created after it started.

VLAN-pool bridges appear with their first device, so a capture started
before them must pick them up.  The service runs inside a namespace of its
own where no device bridge exists yet; the test then creates br1 and br2 and
checks that traffic on each reaches the header tables.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

SCENARIO = r"""
import asyncio, json, sys
from edgesec.config import parse_settings
from edgesec.capture.service import CaptureService
import edgesec.capture.service as svc_mod

svc_mod.BRIDGE_POLL_S = 0.2
db = sys.argv[1]
settings = parse_settings(
    "[capture]\ncaptureDbPath = %s\nmiddlewares = header\n"
    "[interfaces]\nif1 = \"1,10.77.1.1,10.77.1.255,255.255.255.0\"\n"
    "if2 = \"2,10.77.2.1,10.77.2.255,255.255.255.0\"\n[system]\ndefaultOpenVlanId = 1\n" % db)

async def main():
    svc = CaptureService(settings)
    await svc.start()
    print(json.dumps({"status": svc.status()}), flush=True)
    for line in sys.stdin:  # the test says when to report
        if line.strip() == "stop":
            break
        await asyncio.sleep(float(line))
        print(json.dumps({"status": svc.status(), "interfaces": svc.interfaces}), flush=True)
    await svc.stop()

asyncio.run(main())
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def rows(db: Path) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM eth").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def add_bridge_with_sender(ns: str, dev_ns: str, vlan: int) -> None:
    ip("-n", ns, "link", "add", f"br{vlan}", "type", "bridge")
    ip("-n", ns, "addr", "add", f"10.77.{vlan}.1/24", "dev", f"br{vlan}")
    ip("-n", ns, "link", "set", f"br{vlan}", "up")
    ip("-n", ns, "link", "add", f"v{vlan}", "type", "veth", "peer", "name", f"e{vlan}",
       "netns", dev_ns)
    ip("-n", ns, "link", "set", f"v{vlan}", "master", f"br{vlan}", "up")
    ip("-n", dev_ns, "addr", "add", f"10.77.{vlan}.2/24", "dev", f"e{vlan}")
    ip("-n", dev_ns, "link", "set", f"e{vlan}", "up")


def send_udp(dev_ns: str, dst: str, n: int) -> None:
    code = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"[s.sendto(b'x'*40,('{dst}',9)) for _ in range({n})]")
    subprocess.run(["ip", "netns", "exec", dev_ns, sys.executable, "-c", code], check=True,
                   timeout=30)


def test_capture_picks_up_bridges_created_after_start(tmp_path):
    p = "cf" + secrets.token_hex(3)
    gw, dev = p + "g", p + "d"
    db = tmp_path / "capture.sqlite"
    proc = None
    try:
        for ns in (gw, dev):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", gw, sys.executable, "-c", SCENARIO, str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin and proc.stdout

        def report(wait: float) -> dict:
            proc.stdin.write(f"{wait}\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        first = json.loads(proc.stdout.readline())
        assert "waiting" in first["status"]

        add_bridge_with_sender(gw, dev, 1)
        assert report(1.5)["interfaces"] == ["br1"]
        time.sleep(1.0)  # the worker's start-up
        send_udp(dev, "10.77.1.1", 50)
        deadline = time.monotonic() + 10
        while rows(db) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        after_br1 = rows(db)
        assert after_br1 >= 50

        add_bridge_with_sender(gw, dev, 2)
        state = report(1.5)
        assert state["interfaces"] == ["br1", "br2"]
        assert "running" in state["status"]
        time.sleep(1.0)
        send_udp(dev, "10.77.2.1", 50)
        deadline = time.monotonic() + 10
        while rows(db) < after_br1 + 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rows(db) >= after_br1 + 50
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for ns in (gw, dev):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
