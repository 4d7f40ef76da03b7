"""Groups and one-way access vs the bridge path: per-packet cost, apply time, one change.

Run as root: ``.venv/bin/python bench/groups.py [--devices 1000 --groups 100
--members 10 --rules 10000 --bridges 10000 --seconds 2 --repeat 3]``.

Everything happens in a throw-away gateway namespace of the test bed with two
real device namespaces a (VLAN 1) and b (VLAN 2); the host's ruleset is never
touched. Measured in the same run, against the current bridge path:

1. TCP throughput a -> b (iperf3) when a and b are connected by a bridge, by
   a group, or by a one-way access rule ``a -> b tcp/5201`` — each with only
   that path installed and with the full load (N devices, G groups of M
   members, R access rules, B bridges). Flat per-packet cost means the
   group/access figures stay close to the bridge figure and the full load
   costs nothing over the single path;
2. the full apply of that load (one transaction) vs the same devices with
   bridges only;
3. one ADD_GROUP_MEMBER, one ADD_ACCESS and one ADD_BRIDGE at that size
   (registry change + firewall delta, as the daemon does before ``OK``; the
   registry writes to an in-memory SQLite here).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path

from pyroute2 import netns

from edgesec.groups import GroupPolicy
from edgesec.lab.topology import Topology, run
from edgesec.net.firewall import FirewallService
from edgesec.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the peer benchmark's helpers
from firewall import BenchRegistry, Dev, iperf_once, make_devices, ms, policy_cfg

IPERF_PORT = 5201


class GroupBenchRegistry(BenchRegistry):
    """Devices and bridges in dicts, groups and rules in the real GroupPolicy (in memory)."""

    def __init__(self, devices: list[Dev], bridges: list[tuple[str, str]]) -> None:
        super().__init__(devices, bridges)
        self.groups = GroupPolicy(Store(None), self.bus, self._devs.__contains__)


def load(devs: list[Dev], args: argparse.Namespace, *, a: str, b: str, path: str,
         full: bool, seed: int = 5) -> GroupBenchRegistry:
    """A registry with the a -> b ``path`` (bridge, group, access) and, if ``full``, the load."""
    rnd = random.Random(seed)
    others = [d.mac for d in devs if d.mac not in (a, b)]
    bridges: list[tuple[str, str]] = []
    if full:
        while len(bridges) < args.bridges:
            x, y = rnd.sample(others, 2)
            bridges.append((min(x, y), max(x, y)))
    if path == "bridge":
        bridges.append((min(a, b), max(a, b)))
    reg = GroupBenchRegistry(devs, bridges)
    if full:
        for g in range(args.groups):
            for mac in rnd.sample(others, args.members):
                reg.groups.add_member(f"group{g}", mac)
        rules: set[tuple[str, str, str, int]] = set()
        while len(rules) < args.rules:
            x, y = rnd.sample(others, 2)
            proto, port = rnd.choice([("tcp", rnd.randint(1, 65535)),
                                      ("udp", rnd.randint(1, 65535)), ("", 0)])
            rules.add((x, y, proto, port))
        for rule in rules:
            reg.groups.add_access(*rule)
    if path == "group":
        reg.groups.add_member("ab", a)
        reg.groups.add_member("ab", b)
    elif path == "access":
        reg.groups.add_access(a, b, "tcp", IPERF_PORT)
    return reg


def drop_table(fw: FirewallService) -> None:
    fw.nft.apply([{"delete": {"table": {"family": "inet", "name": "edgesec"}}}])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--rules", type=int, default=10000)
    ap.add_argument("--bridges", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=2, help="iperf3 run length (whole s)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (timings and iperf3)")
    ap.add_argument("--changes", type=int, default=50, help="single-change samples")
    args = ap.parse_args()
    main_pid = os.getpid()

    def on_term(signum: int, _frame: object) -> None:
        if os.getpid() == main_pid:
            sys.exit(143)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)

    with Topology(wan=False) as topo:
        a = topo.add_device("a", 1)
        b = topo.add_device("b", 2)
        for dev, gw in ((a, "10.0.1.1"), (b, "10.0.2.1")):
            run(topo.gateway, ["ip", "addr", "add", f"{gw}/24", "dev", dev.bridge])
            run(topo.gateway, ["ip", "link", "set", dev.bridge, "up"])
            topo.set_address(dev, f"{gw[:-1]}10/24", gw)
        run(topo.gateway, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        netns.setns(topo.gateway)  # libnftables acts on the gateway netns now

        devs = make_devices(args.devices, a.mac, b.mac)
        print(f"edgesec groups benchmark: {args.devices} devices, {args.groups} groups of "
              f"{args.members}, {args.rules} access rules, {args.bridges} bridges")

        # 1. throughput a -> b by path, single vs full load (interleaved rounds)
        setups = [(p, full) for full in (False, True) for p in ("bridge", "group", "access")]
        regs = {s: load(devs, args, a=a.mac, b=b.mac, path=s[0], full=s[1]) for s in setups}
        samples: dict[tuple[str, bool], list[float]] = {s: [] for s in setups}
        elems: dict[tuple[str, bool], int] = {}
        for _ in range(args.repeat):
            for s in setups:
                fw = FirewallService(policy_cfg(), regs[s])
                fw.apply_full()
                elems[s] = sum(len(v) for v in fw.rows().values())
                samples[s].append(iperf_once(topo, a, b, args.seconds))
                drop_table(fw)
        tput = {s: statistics.median(v) for s, v in samples.items()}
        base = tput[("bridge", True)] or 1e-9
        for full in (False, True):
            label = f"full load ({elems[('group', True)]} elements)" if full else "single path"
            parts = []
            for p in ("bridge", "group", "access"):
                ratio = tput[(p, full)] / (tput[("bridge", full)] or 1e-9)
                parts.append(f"{p} {tput[(p, full)]:.2f} Gbit/s ({ratio:.2f}x bridge)")
            print(f"throughput a->b, {label}: " + ", ".join(parts))
        flat = {p: tput[(p, True)] / (tput[(p, False)] or 1e-9) for p in ("bridge", "group",
                                                                          "access")}
        print("full load / single path: " + ", ".join(f"{p} {r:.2f}x" for p, r in flat.items()))

        # 2. full apply: the whole load vs the same devices with bridges only
        with_groups, bridges_only = [], []
        reg_full = regs[("group", True)]
        reg_bridges = BenchRegistry(devs, reg_full.bridges())
        for _ in range(args.repeat):
            for reg, out in ((reg_full, with_groups), (reg_bridges, bridges_only)):
                fw = FirewallService(policy_cfg(), reg)
                t = time.perf_counter()
                fw.apply_full()
                out.append(time.perf_counter() - t)
                n = sum(len(v) for v in fw.rows().values())
                drop_table(fw)
                if reg is reg_full:
                    n_full = n
                else:
                    n_bridges = n
        f_g, f_b = statistics.median(with_groups), statistics.median(bridges_only)
        print(f"full apply      with groups+rules {ms(f_g)} ({n_full} elements) | bridges only "
              f"{ms(f_b)} ({n_bridges} elements) -> {f_g / f_b:.2f}x")

        # 3. one change at that size
        reg = load(devs, args, a=a.mac, b=b.mac, path="group", full=True, seed=9)
        fw = FirewallService(policy_cfg(), reg)
        fw._running = True
        reg.bus.subscribe(fw.on_event)
        fw.apply_full()
        rnd = random.Random(13)
        pool = [d.mac for d in devs[2:]]
        timings: dict[str, list[float]] = {"ADD_GROUP_MEMBER": [], "ADD_ACCESS": [],
                                           "ADD_BRIDGE": []}
        for i in range(args.changes):
            g = f"group{rnd.randrange(args.groups)}"
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
            reg.add_bridge(x, y)
            fw.refresh({x, y})
            timings["ADD_BRIDGE"].append(time.perf_counter() - t)
        drop_table(fw)
        bridge_med = statistics.median(timings["ADD_BRIDGE"])
        print("one change      " + " | ".join(
            f"{k} median {ms(statistics.median(v))} (max {ms(max(v))}, "
            f"{statistics.median(v) / bridge_med:.2f}x ADD_BRIDGE)" for k, v in timings.items()))
        targets = [("group/access throughput within 10% of bridge at full load",
                    min(tput[("group", True)], tput[("access", True)]) >= 0.9 * base),
                   ("full load within 10% of single path",
                    min(flat.values()) >= 0.9),
                   ("one change < 20 ms",
                    max(statistics.median(v) for v in timings.values()) < 0.020)]
        print("targets: " + "; ".join(f"{n}: {'met' if ok else 'MISSED'}" for n, ok in targets))


if __name__ == "__main__":
    main()
