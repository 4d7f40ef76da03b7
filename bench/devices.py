"""New-device admissions under a flood: records taken and the cost on the hot path.

In-process (``RadiusServer.handle``, no sockets) against the real registry on
a temporary SQLite file, with ``allowAllConnections = true`` and a 16-VLAN
pool, as in the issue: 300 random MACs with the new-device limit off (the
behaviour before) and on (the defaults, 30/min, burst 10); then the cost of
answering a known device with and without the limiter (its ``is_known``
check is the only work it adds to that path).

    .venv/bin/python bench/devices.py            # ~15 s
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from edgesec.access.radius import RadiusConfig, RadiusServer
from edgesec.lab.hostap import access_request
from edgesec.registry import Registry
from edgesec.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from registry_world import pool_settings

SECRET = b"bench-secret"
ADDR = ("127.0.0.1", 40000)


def request(mac: str, ident: int) -> bytes:
    return access_request(mac, SECRET, ident)[0]


def server(tmp: Path, rate: int) -> tuple[Registry, RadiusServer]:
    reg = Registry(pool_settings(), Store(tmp / f"rate{rate}.sqlite"))
    cfg = RadiusConfig(secret=SECRET, clients=ipaddress.IPv4Network("127.0.0.1/32"),
                       new_device_rate=rate, new_device_burst=10)
    return reg, RadiusServer(cfg, reg)


def flood(tmp: Path, rate: int) -> tuple[int, int, float]:
    """(records created, accepts, seconds) for 300 random MACs."""
    reg, srv = server(tmp, rate)
    packets = [request("02:" + os.urandom(5).hex(":"), i & 0xFF) for i in range(300)]
    t0 = time.perf_counter()
    for raw in packets:
        srv.handle(raw, ADDR)
    return len(reg.devices()), srv.counters.accepts, time.perf_counter() - t0


def known_cost(tmp: Path, rate: int, n: int = 20_000) -> float:
    """µs per Access-Request of a known device (best of five slices)."""
    reg, srv = server(tmp, rate)
    reg.accept_mac("02:00:00:00:00:01", 1)
    packets = [request("02:00:00:00:00:01", i & 0xFF) for i in range(n)]
    gc.collect()
    gc.freeze()
    best = float("inf")
    for part in range(5):
        batch = packets[part::5]
        t0 = time.perf_counter()
        for raw in batch:
            srv.handle(raw, ADDR)
        best = min(best, (time.perf_counter() - t0) / len(batch))
    gc.unfreeze()
    return best * 1e6


def main() -> None:
    logging.disable(logging.INFO)  # rejections are logged at info; not what we time
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows_off, acc_off, t_off = flood(tmp, 0)
        rows_on, acc_on, t_on = flood(tmp, 30)
        print(f"300 random MACs, limit off: {rows_off} records ({acc_off} accepts, pool of 16 "
              f"exhausted) in {t_off * 1000:.0f} ms")
        print(f"300 random MACs, limit on (30/min, burst 10): {rows_on} records ({acc_on} "
              f"accepts) in {t_on * 1000:.0f} ms; ratio of records {rows_on / rows_off:.2f}")
        offs, ons = [], []
        for i in range(3):  # alternated, best of each: the shared VM is noisy
            for rate, out in ((0, offs), (30, ons)):
                sub = tmp / f"known-{rate}-{i}"
                sub.mkdir()
                out.append(known_cost(sub, rate))
        off, on = min(offs), min(ons)
        print(f"known device, handle(): {on:.1f} µs with the limiter, {off:.1f} µs without "
              f"(ratio {on / off:.2f})")


if __name__ == "__main__":
    main()
