"""Benchmark of detection and containment (issue #16).

1. **CPU cost** of the engine per 10,000 packets of mixed IoT traffic
   (``edgesec.capture.synth``), in process, against the capture decoder on
   the same packets (the peer: the detect worker decodes every frame anyway);
   best of 5 rounds with the GC frozen.
2. **Profile memory** per device: a full profile (every bound reached) and
   a typical one, measured with tracemalloc, plus the per-device windows.
3. **Lab** (root, namespaces; skipped with ``--no-lab``): a lab of 5 devices
   with their agents (web, DNS, mDNS announcements, peer probes, DHCP) runs
   ``--benign`` seconds with a short learning window (half of it) and the
   alerts of severity >= 2 and quarantines are counted (false positives);
   then every scenario runs ``--rounds`` times, each on another device, and
   the time from the attack's first packet to the quarantine decision
   (audit record; the firewall applies it synchronously after) gives p50/p99.

Run: ``.venv/bin/python bench/detect.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from edgesec.capture.decode import decode
from edgesec.capture.pcapfile import PcapReader
from edgesec.capture.synth import write_mixed
from edgesec.detect.engine import DetectConfig, DeviceView, Engine, World
from edgesec.detect.profile import MAX_DESTS, MAX_DOMAINS, MAX_PORTS, Profile

SCENARIOS = ("scan", "lateral", "dnstunnel", "spoof", "exfil")


def packets(n: int) -> list[tuple[int, int, bytes]]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mix.pcap"
        write_mixed(path, n)
        with path.open("rb") as fh:
            return [(p[0], p[1], p[2]) for p in PcapReader(fh)]


def world() -> World:
    devs = [DeviceView(f"02:00:00:00:00:{i:02x}", (f"10.0.{i}.10",), True) for i in range(1, 9)]
    return World.build([f"10.0.{i}.1" for i in range(1, 9)], ["02:00:00:00:00:fe"],
                       [f"10.0.{i}.0/24" for i in range(1, 9)], devs)


def cpu(n: int, rounds: int) -> None:
    pkts = packets(n)
    frames = [decode(d, ts, ln, "br1", "") for ts, ln, d in pkts]
    gc.collect()
    gc.freeze()
    best_dec = best_eng = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for ts, ln, d in pkts:
            decode(d, ts, ln, "br1", "")
        best_dec = min(best_dec, time.perf_counter() - t0)
        eng = Engine(DetectConfig(learning_window=0))
        eng.set_world(world())
        t0 = time.perf_counter()
        for i in range(0, n, 256):
            eng.feed("br1", pkts[i:i + 256], frames[i:i + 256])
        best_eng = min(best_eng, time.perf_counter() - t0)
    gc.unfreeze()
    per10k = best_eng / n * 10_000
    print(f"cpu: engine {per10k * 1000:.1f} ms per 10,000 packets "
          f"({n / best_eng:,.0f} pkt/s); decoder {best_dec / n * 10_000 * 1000:.1f} ms; "
          f"ratio engine/decoder {best_eng / best_dec:.2f} "
          f"(alerts {eng.stats['alerts']}, malformed {eng.stats['malformed']})")


def memory() -> None:
    def size(build) -> int:
        gc.collect()
        tracemalloc.start()
        obj = build()
        cur, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del obj
        return cur

    def full() -> Profile:
        p = Profile(first_seen=0.0)
        for i in range(MAX_DESTS):
            p.learn_dest(f"198.51.{i // 250}.{i % 250}")
        for i in range(MAX_DOMAINS):
            p.learn_domain("a" * 60 + f"{i}.example-cdn-provider.com")
        for i in range(MAX_PORTS):
            p.learn_port(1000 + i)
        p.protos.update({1, 6, 17})
        return p

    def typical() -> Profile:
        p = Profile(first_seen=0.0)
        for i in range(8):
            p.learn_dest(f"198.51.100.{i}")
            p.learn_domain(f"api{i}.vendor.example")
        p.learn_port(443)
        p.learn_port(123)
        return p

    pkts = packets(2000)
    frames = [decode(d, ts, ln, "br1", "") for ts, ln, d in pkts]

    def windows() -> object:
        eng = Engine()
        eng.set_world(world())
        eng.feed("br1", pkts, frames)
        return eng

    print(f"memory: full profile {size(full) / 1024:.1f} KiB (bound), typical "
          f"{size(typical) / 1024:.1f} KiB, serialised full "
          f"{len(full().to_json()) / 1024:.1f} KiB; engine with 8 devices after 2,000 "
          f"packets {size(windows) / 1024:.0f} KiB")


def lab(benign: float, rounds: int, devices: int = 5) -> None:
    from edgesec.lab import gwconfig
    from edgesec.lab import lab as lab_mod
    from edgesec.lab.scenario import attack

    learning = max(5, int(benign / 2))
    orig = gwconfig.sections

    def sections(*a, **kw):  # the lab's config with a learning window that ends mid-run
        sect = orig(*a, **kw)
        sect["detect"]["learningWindow"] = learning
        return sect

    gwconfig.sections = sections
    prefix = "bdet" + os.urandom(2).hex()
    the_lab = lab_mod.Lab.create(prefix)
    try:
        the_lab.up(devices)
        t0 = time.time()
        time.sleep(benign)
        db = sqlite3.connect(the_lab.dir / "detect.sqlite")
        rows = db.execute("SELECT kind, severity, mac FROM alerts WHERE ts >= ?",
                          (t0 - 60,)).fetchall()
        db.close()
        fps = [r for r in rows if r[1] >= 2]
        held = the_lab.ctl("GET_QUARANTINE").strip()
        print(f"false positives: {len(fps)} alerts of severity >= 2 and "
              f"{0 if held == 'OK' else len(held.splitlines())} quarantines over {benign:.0f} s "
              f"of benign lab traffic ({devices} devices with agents, "
              f"learning window {learning} s; "
              f"{len(rows) - len(fps)} low-severity alerts) {fps[:5]}")
        names = [d.name for d in the_lab.state.devices]
        lat: dict[str, list[float]] = {k: [] for k in SCENARIOS}
        missed: list[str] = []
        for r in range(rounds):
            for i, kind in enumerate(SCENARIOS):
                dev = names[(i + r) % len(names)]
                res = attack(the_lab, dev, kind, wait=30)
                if res.quarantined and res.contained_after is not None:
                    lat[kind].append(res.contained_after)
                else:
                    missed.append(f"{kind}@{dev}")
                the_lab.ctl(f"RELEASE {res.mac}")
        every = sorted(x for v in lat.values() for x in v)
        for kind, v in lat.items():
            if v:
                print(f"  {kind:10} n={len(v)} p50 {statistics.median(v):.2f} s "
                      f"max {max(v):.2f} s")
        if every:
            p99 = every[min(len(every) - 1, round(0.99 * (len(every) - 1)))]
            print(f"time to quarantine: all scenarios n={len(every)} p50 "
                  f"{statistics.median(every):.2f} s p99 {p99:.2f} s (targets 5 s / 15 s); "
                  f"missed {missed or 'none'}")
    finally:
        the_lab.down()
        gwconfig.sections = orig


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-lab", action="store_true")
    ap.add_argument("--packets", type=int, default=50_000)
    ap.add_argument("--benign", type=float, default=120.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--devices", type=int, default=5, help="lab devices for the benign run")
    args = ap.parse_args()
    if args.quick:
        args.packets, args.benign, args.rounds = 10_000, 20.0, 1
    cpu(args.packets, 2 if args.quick else 5)
    memory()
    if not args.no_lab:
        if os.geteuid() != 0:
            print("lab part skipped: needs root", file=sys.stderr)
        else:
            lab(args.benign, args.rounds, args.devices)
    return 0


if __name__ == "__main__":
    sys.exit(main())
