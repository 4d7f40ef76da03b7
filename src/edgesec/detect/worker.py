"""Detect worker process: device bridges -> decoder -> Engine -> alert lines.

Run as ``python -m edgesec.detect.worker --options JSON`` by
:class:`~edgesec.detect.service.DetectService`.  It opens one small
TPACKET_V3 ring per device bridge (bridges that appear later are opened
within 2 s), decodes frames with the capture decoder and feeds the
:class:`~edgesec.detect.engine.Engine`.  Protocol with the daemon:

* stdin: JSON lines ``{"world": {...}}`` (devices, addresses, NAT, bridges);
* stdout: ``{"ready": true}`` once, then ``{"alert": {...}}`` per alert and
  a ``{"stats": {...}}`` line every 5 s.

Profiles are loaded from and written to table ``profiles`` of the detect DB
(dirty ones, every 30 s and at exit).  The detection never runs in the
daemon's process, so it is never on the control loop's path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from edgesec.capture.decode import decode
from edgesec.capture.ring import CaptureError, Ring
from edgesec.detect.engine import Engine
from edgesec.detect.model import DetectConfig, DeviceView, World
from edgesec.detect.profile import Profile

log = logging.getLogger("edgesec.detect.worker")

RING_BYTES = 1 << 20  # 1 MiB per bridge (8 blocks of 128 KiB)
RESCAN_S = 2.0
STATS_S = 5.0
PERSIST_S = 30.0


def world_from(d: dict[str, Any]) -> World:
    devices = [DeviceView(x["mac"], tuple(x.get("ips", ())), bool(x.get("nat")),
                          frozenset(x.get("peers", ()))) for x in d.get("devices", [])]
    return World.build(d.get("gateway_ips", []), d.get("gateway_macs", []),
                       d.get("networks", []), devices)


def if_mac(name: str) -> str:
    try:
        return Path("/sys/class/net", name, "address").read_text().strip().lower()
    except OSError:
        return ""


class ProfileStore:
    """Table ``profiles`` (mac, data JSON, updated) of the detect DB."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute("CREATE TABLE IF NOT EXISTS profiles (mac TEXT PRIMARY KEY,"
                        " data TEXT NOT NULL, updated REAL NOT NULL)")

    def load(self) -> dict[str, Profile]:
        out = {}
        for mac, data in self.db.execute("SELECT mac, data FROM profiles"):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                out[mac] = Profile.from_json(data)
        return out

    def save(self, profiles: dict[str, Profile]) -> int:
        dirty = [(m, p) for m, p in profiles.items() if p.dirty]
        if not dirty:
            return 0
        now = time.time()
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO profiles (mac, data, updated) VALUES (?,?,?)",
                            [(m, p.to_json(), now) for m, p in dirty])
        self.db.execute("COMMIT")
        for _, p in dirty:
            p.dirty = False
        # the table mirrors memory: evicted profiles (beyond MAX_PROFILES) go too
        keep = list(profiles)
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (mac TEXT PRIMARY KEY)")
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM keep")
        self.db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", [(m,) for m in keep])
        self.db.execute("DELETE FROM profiles WHERE mac NOT IN (SELECT mac FROM keep)")
        self.db.execute("COMMIT")
        return len(dirty)


class DetectWorker:
    def __init__(self, options: dict[str, Any], emit: Any) -> None:
        self.engine = Engine(DetectConfig.from_dict(options.get("cfg", {})))
        self.candidates: list[str] = list(options.get("interfaces", []))
        self.emit = emit
        self.rings: dict[str, Ring] = {}
        self.world_base: dict[str, Any] = {}
        self.store = ProfileStore(options["db"]) if options.get("db") else None
        if self.store is not None:
            self.engine.profiles.update(self.store.load())
        self.engine.refresh_gateway = self.gateway_macs
        self.stop = False
        self._stdin_buf = b""

    def rescan(self) -> None:
        for name in self.candidates:
            if name in self.rings or not Path("/sys/class/net", name).exists():
                continue
            try:
                self.rings[name] = Ring(name, buffer_timeout=20, buffer_size=RING_BYTES)
            except (CaptureError, OSError) as exc:
                log.warning("cannot watch %s: %s", name, exc)
        self._apply_world()

    def gateway_macs(self) -> set[str]:
        """The gateway's MACs now: the watched bridges' (they change as ports join)."""
        macs = set(self.world_base.get("gateway_macs", []))
        macs.update(m for m in (if_mac(n) for n in self.rings) if m)
        return macs

    def _apply_world(self) -> None:
        d = dict(self.world_base)
        d["gateway_macs"] = sorted(self.gateway_macs())
        self.engine.set_world(world_from(d))

    def read_stdin(self) -> bool:
        """Apply world updates; False at EOF (the daemon went away)."""
        try:
            chunk = os.read(0, 1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self._stdin_buf += chunk
        *lines, self._stdin_buf = self._stdin_buf.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if "world" in msg:
                    self.world_base = msg["world"]
                    self._apply_world()
                if "reset" in msg:
                    self.engine.reset(str(msg["reset"]))
        return True

    def process(self, ring: Ring) -> None:
        packets = ring.read(8)
        if not packets:
            return
        ifname = ring.ifname
        frames = [decode(data, ts, length, ifname, "") for ts, length, data in packets]
        for alert in self.engine.feed(ifname, packets, frames):
            self.emit({"alert": json.loads(alert.to_json())})

    def run(self) -> None:
        os.set_blocking(0, False)
        self.rescan()
        self.emit({"ready": True, "pid": os.getpid(), "interfaces": sorted(self.rings)})
        next_scan = time.monotonic() + RESCAN_S
        next_stats = time.monotonic() + STATS_S
        next_save = time.monotonic() + PERSIST_S
        while not self.stop:
            poller = select.poll()
            poller.register(0, select.POLLIN)
            by_fd = {}
            for ring in self.rings.values():
                poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
                by_fd[ring.fileno()] = ring
            with contextlib.suppress(InterruptedError):
                ready = poller.poll(1000)
                for fd, _ev in ready:
                    if fd == 0:
                        if not self.read_stdin():
                            self.stop = True
                    elif fd in by_fd:
                        self.process(by_fd[fd])
            now = time.monotonic()
            if now >= next_scan:
                next_scan = now + RESCAN_S
                self.rescan()
            if now >= next_stats:
                next_stats = now + STATS_S
                self.emit({"stats": {**self.engine.stats, "profiles": len(self.engine.profiles),
                                     "interfaces": len(self.rings)}})
            if now >= next_save and self.store is not None:
                next_save = now + PERSIST_S
                self.store.save(self.engine.profiles)

    def close(self) -> None:
        if self.store is not None:
            with contextlib.suppress(sqlite3.Error):
                self.store.save(self.engine.profiles)
        for ring in self.rings.values():
            ring.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgesec.detect.worker")
    ap.add_argument("--options", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s detect: %(message)s")

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    with contextlib.suppress(OSError):
        os.nice(5)
    worker = DetectWorker(json.loads(args.options), emit)

    def on_signal(signum: int, frame: object) -> None:
        worker.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
