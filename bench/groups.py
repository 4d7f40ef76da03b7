"""Groups and one-way access vs the bridge path: per-packet cost, apply time, one change.

Run as root: ``.venv/bin/python bench/groups.py [--devices 1000 --groups 100
--members 10 --rules 10000 --bridges 10000 --seconds 1 --repeat 9]``.

Everything happens in a throw-away gateway namespace of the test bed with four
real device namespaces; the host's ruleset is never touched. Device ``a``
reaches ``b`` through a bridge, ``c`` through a group (``a`` and ``c`` are its
members) and ``d`` through one-way access rules ``a -> d tcp/5201`` and
``udp/5201``. Measured in the same run, against the bridge path:

1. forwarding from ``a`` to each of the three (iperf3), once with only those
   three paths in the ruleset and once with the full load as well (N devices,
   G groups of M members, R access rules, B bridges): TCP throughput
   (iperf3, large segments: mostly the stack's cost) and the cost of one
   64-byte UDP datagram sent by a sender pinned to one CPU at real-time
   priority (``chrt -f``/``taskset``: on a shared machine wall-clock rates
   swing by ±30 %; the forwarding, firewall included, runs in the sender's
   context, so ns per datagram is the per-packet cost where a ruleset would
   show). A datagram to a device no path allows (dropped at the end of the
   chain) is measured too. The paths are measured back to back on the same
   ruleset, so each round gives paired ratios to the bridge path; printed are
   the median per figure and the median of the per-round ratios. Flat
   per-packet cost means ratios near 1 and a full load costing nothing over
   the three paths alone;
2. the full apply of that load (one transaction) vs the same devices with
   bridges only;
3. one ADD_GROUP_MEMBER, one ADD_ACCESS and one ADD_BRIDGE at that size
   (registry change + firewall delta, as the daemon does before ``OK``; the
   registry writes to an in-memory SQLite here).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pyroute2 import netns

from edgesec.groups import GroupPolicy
from edgesec.lab.topology import Topology, run
from edgesec.net.firewall import FirewallService
from edgesec.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the peer benchmark's helpers
from firewall import BenchRegistry, Dev, make_devices, ms, policy_cfg
from labnet import exit_on_sigterm, routed_devices

PORT = 5201
PATHS = ("bridge", "group", "access")
TARGET = {"bridge": "b", "group": "c", "access": "d"}  # which device each path reaches
BLOCKED_IP = "10.0.3.20"  # a registered device without any path from a
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
send, buf, n = s.send, b"x" * 64, int(sys.argv[3])
for _ in range(2000):
    send(buf)
t = time.perf_counter()
for _ in range(n):
    send(buf)
print((time.perf_counter() - t) / n * 1e9)
"""
SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[1])))
print("ready", flush=True)
time.sleep(86400)
"""


class GroupBenchRegistry(BenchRegistry):
    """Devices and bridges in dicts, groups and rules in the real GroupPolicy (in memory)."""

    def __init__(self, devices: list[Dev], bridges: list[tuple[str, str]]) -> None:
        super().__init__(devices, bridges)
        self.groups = GroupPolicy(Store(None), self.bus, self._devs.__contains__)


def bench_devices(n: int, macs: dict[str, str]) -> list[Dev]:
    """``n`` devices: a, b, c, d on VLANs 1-4 at .10, then the generated rest."""
    devs = make_devices(n - 2, macs["a"], macs["b"])
    return [*devs, Dev(macs["c"], 3, "10.0.3.10"), Dev(macs["d"], 4, "10.0.4.10")]


def load(devs: list[Dev], args: argparse.Namespace, macs: dict[str, str], *, full: bool,
         seed: int = 5) -> GroupBenchRegistry:
    """The three measured paths and, if ``full``, the load on the other devices."""
    rnd = random.Random(seed)
    others = [d.mac for d in devs if d.mac not in macs.values()]
    bridges = [(min(macs["a"], macs["b"]), max(macs["a"], macs["b"]))]
    if full:
        while len(bridges) < args.bridges:
            x, y = rnd.sample(others, 2)
            bridges.append((min(x, y), max(x, y)))
    reg = GroupBenchRegistry(devs, bridges)
    reg.groups.add_member("ac", macs["a"])
    reg.groups.add_member("ac", macs["c"])
    reg.groups.add_access(macs["a"], macs["d"], "tcp", PORT)
    reg.groups.add_access(macs["a"], macs["d"], "udp", PORT)
    if full:
        for g in range(args.groups - 1):
            for mac in rnd.sample(others, args.members):
                reg.groups.add_member(f"group{g}", mac)
        rules: set[tuple[str, str, str, int]] = set()
        while len(rules) < args.rules - 2:
            x, y = rnd.sample(others, 2)
            proto, port = rnd.choice([("tcp", rnd.randint(1, 65535)),
                                      ("udp", rnd.randint(1, 65535)), ("", 0)])
            rules.add((x, y, proto, port))
        for rule in rules:
            reg.groups.add_access(*rule)
    return reg


def iperf(topo: Topology, src: Any, dst: Any, seconds: int, udp: bool) -> float:
    """TCP Gbit/s, or received 64-byte UDP datagrams/s, of one iperf3 run (0 on failure)."""
    server = topo.popen(dst.ns, ["iperf3", "-s", "-1", "-p", str(PORT)])
    time.sleep(0.3)
    argv = ["iperf3", "-c", dst.ip, "-p", str(PORT), "-t", str(max(1, seconds)), "-J"]
    if udp:
        argv += ["-u", "-l", "64", "-b", "0"]
    out = run(src.ns, argv, check=False, timeout=seconds + 30).stdout
    topo.stop(server)
    try:
        end = json.loads(out)["end"]
        if udp:
            s = end["sum"]
            return (s["packets"] - s["lost_packets"]) / s["seconds"]
        return float(end["sum_received"]["bits_per_second"]) / 1e9
    except (ValueError, KeyError, ZeroDivisionError):
        return 0.0


def send_cost(topo: Topology, src: Any, ip: str, count: int) -> float:
    """ns per 64-byte datagram src -> ip:PORT, sender pinned to CPU 1 at SCHED_FIFO 10."""
    out = run(src.ns, ["chrt", "-f", "10", "taskset", "-c", "1", sys.executable, "-c", SENDER,
                       ip, str(PORT), str(count)], check=False, timeout=120).stdout
    try:
        return float(out.strip())
    except ValueError:
        return 0.0


def drop_table(fw: FirewallService) -> None:
    fw.nft.apply([{"delete": {"table": {"family": "inet", "name": "edgesec"}}}])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--rules", type=int, default=10000)
    ap.add_argument("--bridges", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=1, help="iperf3 run length (whole s)")
    ap.add_argument("--repeat", type=int, default=9, help="rounds (timings and iperf3)")
    ap.add_argument("--changes", type=int, default=50, help="single-change samples")
    ap.add_argument("--datagrams", type=int, default=100_000,
                    help="datagrams per UDP send-cost sample")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between applying a ruleset and measuring it")
    args = ap.parse_args()
    exit_on_sigterm()

    with Topology(wan=False) as topo:
        lab = routed_devices(topo, {"a": 1, "b": 2, "c": 3, "d": 4})
        netns.setns(topo.gateway)  # libnftables acts on the gateway netns now

        macs = {n: d.mac for n, d in lab.items()}
        devs = bench_devices(args.devices, macs)
        print(f"edgesec groups benchmark: {args.devices} devices, {args.groups} groups of "
              f"{args.members}, {args.rules} access rules, {args.bridges} bridges")

        # 1. forwarding a -> b/c/d, three paths alone vs with the full load
        regs = {full: load(devs, args, macs, full=full) for full in (False, True)}
        for name in ("b", "c", "d"):
            topo.popen(lab[name].ns, [sys.executable, "-c", SINK, str(PORT)], ready="ready")
        targets_of = {**{p: lab[TARGET[p]].ip for p in PATHS}, "blocked": BLOCKED_IP}
        kinds = ("TCP throughput", "UDP send cost")
        data: dict[tuple[str, bool, str], list[float]] = {}
        ratios: dict[tuple[str, bool, str], list[float]] = {}
        elems: dict[bool, int] = {}
        for rnd_i in range(args.repeat):
            order = PATHS[rnd_i % 3:] + PATHS[:rnd_i % 3]  # rotated: no path always first
            for full in (False, True):
                fw = FirewallService(policy_cfg(), regs[full])
                fw.apply_full()
                elems[full] = sum(len(v) for v in fw.rows().values())
                time.sleep(args.settle)  # the kernel resizes large hash sets after a commit
                got = {("TCP throughput", p): iperf(topo, lab["a"], lab[TARGET[p]],
                                                    args.seconds, False) for p in order}
                for p in (*order, "blocked"):
                    got[("UDP send cost", p)] = send_cost(topo, lab["a"], targets_of[p],
                                                          args.datagrams)
                for (title, p), v in got.items():
                    data.setdefault((title, full, p), []).append(v)
                    ratios.setdefault((title, full, p), []).append(
                        v / (got[(title, "bridge")] or 1e-9))
                drop_table(fw)
        med = {k: statistics.median(v) for k, v in data.items()}
        worst = 0.0  # the largest deviation from the bridge path at full load
        for title, unit in zip(kinds, ("Gbit/s", "ns/datagram"), strict=True):
            for full in (False, True):
                label = f"full load, {elems[True]} elements" if full else \
                    f"three paths alone, {elems[False]} elements"
                parts = []
                for p in (*PATHS, "blocked") if title == "UDP send cost" else PATHS:
                    r = statistics.median(ratios[(title, full, p)])
                    if full and p in ("group", "access") and title == "UDP send cost":
                        worst = max(worst, abs(r - 1))
                    parts.append(f"{p} {med[(title, full, p)]:.{2 if unit == 'Gbit/s' else 0}f}"
                                 f" {unit}" + ("" if p == "bridge" else f" ({r:.2f}x bridge)"))
                print(f"{title} ({label}): " + ", ".join(parts))
        flat = {(t, p): med[(t, True, p)] / (med[(t, False, p)] or 1e-9)
                for t in kinds for p in PATHS}
        print("full load / paths alone (medians): " + ", ".join(
            f"{t.split()[0]} {p} {r:.2f}x" for (t, p), r in flat.items()))

        # 2. full apply: the whole load vs the same devices with bridges only
        with_groups, bridges_only = [], []
        reg_bridges = BenchRegistry(devs, regs[True].bridges())
        counts: dict[str, int] = {}
        for _ in range(min(args.repeat, 3)):
            for name, reg, out in (("groups", regs[True], with_groups),
                                   ("bridges", reg_bridges, bridges_only)):
                fw = FirewallService(policy_cfg(), reg)
                t = time.perf_counter()
                fw.apply_full()
                out.append(time.perf_counter() - t)
                counts[name] = sum(len(v) for v in fw.rows().values())
                drop_table(fw)
        f_g, f_b = statistics.median(with_groups), statistics.median(bridges_only)
        print(f"full apply      with groups+rules {ms(f_g)} ({counts['groups']} elements) | "
              f"bridges only {ms(f_b)} ({counts['bridges']} elements) -> {f_g / f_b:.2f}x")

        # 3. one change at that size
        reg = load(devs, args, macs, full=True, seed=9)
        fw = FirewallService(policy_cfg(), reg)
        fw._running = True
        reg.bus.subscribe(fw.on_event)
        fw.apply_full()
        rnd = random.Random(13)
        pool = [d.mac for d in devs if d.mac not in macs.values()]
        timings: dict[str, list[float]] = {"ADD_GROUP_MEMBER": [], "ADD_ACCESS": [],
                                           "ADD_BRIDGE": []}
        for i in range(args.changes):
            g = f"group{rnd.randrange(args.groups - 1)}"
            mac = next(m for m in rnd.sample(pool, 20) if g not in reg.groups.groups_of(m))
            t = time.perf_counter()
            reg.groups.add_member(g, mac)
            timings["ADD_GROUP_MEMBER"].append(time.perf_counter() - t)
            x, y = rnd.sample(pool, 2)
            t = time.perf_counter()
            reg.groups.add_access(x, y, "tcp", 40000 + i)
            timings["ADD_ACCESS"].append(time.perf_counter() - t)
            x, y = rnd.sample(pool, 2)
            t = time.perf_counter()
            reg.add_bridge(x, y)  # the firewall follows through the bus
            timings["ADD_BRIDGE"].append(time.perf_counter() - t)
        drop_table(fw)
        bridge_med = statistics.median(timings["ADD_BRIDGE"])
        print("one change      " + " | ".join(
            f"{k} median {ms(statistics.median(v))} (max {ms(max(v))}, "
            f"{statistics.median(v) / bridge_med:.1f}x ADD_BRIDGE)" for k, v in timings.items()))
        # (targets on the per-packet cost; TCP throughput is printed for context only)
        targets = [("group/access within 10% of the bridge path at full load", worst <= 0.1),
                   ("full load within 10% of the paths alone",
                    all(abs(r - 1) <= 0.1 for (t, _p), r in flat.items() if t == "UDP send cost")),
                   ("one change < 20 ms",
                    max(statistics.median(v) for v in timings.values()) < 0.020)]
        print("targets: " + "; ".join(f"{n}: {'met' if ok else 'MISSED'}" for n, ok in targets))


if __name__ == "__main__":
    main()
