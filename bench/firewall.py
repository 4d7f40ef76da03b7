"""Firewall benchmark: edgesec's set-based nftables policy vs the original's linear iptables.

Run as root: ``.venv/bin/python bench/firewall.py [--devices 1000 --bridges 10000
--seconds 2 --repeat 3 --iptables iptables]``.

Everything happens in a throw-away gateway namespace of the test bed (two real
device namespaces a, b for the throughput runs); the host's ruleset is never
touched. Measured, in the same run:

1. full apply of N devices + M bridges from an empty table (edgesec: one
   libnftables JSON transaction, including deriving the policy) vs the
   original's rules (2 FORWARD rules per bridge) loaded with one
   ``iptables-restore`` (already far faster than the original, which ran one
   ``iptables`` process per rule; that per-rule cost is printed too);
2. one more ADD_BRIDGE at that size (edgesec: derive + one element
   transaction) vs the original's sequence (list FORWARD with line numbers,
   insert two rules);
3. TCP throughput (iperf3) between two bridged devices with 10 vs M bridges
   installed, for both approaches (the bridged pair is matched last by the
   linear rules, as the newest bridge is in the original).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import netns

from edgesec.events import BridgeAdded, EventBus
from edgesec.lab.topology import Topology, run
from edgesec.net import policy as P
from edgesec.net.firewall import FirewallService
from labnet import exit_on_sigterm, routed_devices

VLANS = 10


@dataclass(frozen=True)
class Dev:
    mac: str
    vlanid: int
    primary_ip: str
    allow: bool = True
    nat: bool = False
    secondary_ip: str = ""

    @property
    def ips(self) -> tuple[str, ...]:
        return (self.primary_ip,)


class BenchRegistry:
    """The registry's read API over plain dicts (the real one needs a durable write per row)."""

    def __init__(self, devices: Iterable[Dev], bridges: Iterable[tuple[str, str]]) -> None:
        self.bus = EventBus()
        self._devs = {d.mac: d for d in devices}
        self._bridges: set[tuple[str, str]] = set()
        self._partners: dict[str, set[str]] = {}
        for a, b in bridges:
            self.add_bridge(a, b)

    def add_bridge(self, a: str, b: str) -> None:
        self._bridges.add((min(a, b), max(a, b)))
        self._partners.setdefault(a, set()).add(b)
        self._partners.setdefault(b, set()).add(a)
        self.bus.publish(BridgeAdded(mac=a, peer=b, reason="bench"))  # as the registry does

    def get(self, mac: str) -> Dev | None:
        return self._devs.get(mac)

    def devices(self) -> list[Dev]:
        return list(self._devs.values())

    def bridges(self) -> list[tuple[str, str]]:
        return list(self._bridges)

    def bridge_partners(self, mac: str) -> list[str]:
        return list(self._partners.get(mac, ()))


def make_devices(n: int, a_mac: str, b_mac: str) -> list[Dev]:
    devs = [Dev(a_mac, 1, "10.0.1.10"), Dev(b_mac, 2, "10.0.2.10")]
    for i in range(n - 2):
        vlan = 1 + i % VLANS
        host = 20 + i // VLANS
        devs.append(Dev(f"02:be:00:00:{i >> 8:02x}:{i & 255:02x}", vlan,
                        f"10.0.{vlan}.{host}" if host < 255 else f"10.1.{vlan}.{host - 230}"))
    return devs


def random_bridges(devs: list[Dev], m: int, seed: int = 7) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    pairs: set[tuple[str, str]] = set()
    macs = [d.mac for d in devs]
    while len(pairs) < m - 1:
        a, b = rnd.sample(macs, 2)
        if {a, b} != {devs[0].mac, devs[1].mac}:
            pairs.add((min(a, b), max(a, b)))
    return [*sorted(pairs), (devs[0].mac, devs[1].mac)]  # the measured pair last


def policy_cfg() -> P.PolicyConfig:
    subs = tuple(P.PolicySubnet(v, f"br{v}", ipaddress.IPv4Network(f"10.0.{v}.0/24"))
                 for v in range(1, VLANS + 1))
    return P.PolicyConfig(subnets=subs, nat_interface="wan0")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- the original's approach -------------------------------------------------------
def iptables_rules(devs: dict[str, Dev], bridges: list[tuple[str, str]]) -> list[str]:
    """Rules of the original: per bridge two FORWARD accepts above per-bridge REJECTs."""
    lines = []
    for a, b in bridges:
        da, db = devs[a], devs[b]
        ia, ib = f"br{da.vlanid}", f"br{db.vlanid}"
        lines.append(f"-A FORWARD -s {da.primary_ip} -d {db.primary_ip} -i {ia} -o {ib} -j ACCEPT")
        lines.append(f"-A FORWARD -s {db.primary_ip} -d {da.primary_ip} -i {ib} -o {ia} -j ACCEPT")
    lines += [f"-A FORWARD -i br{v} -j REJECT" for v in range(1, VLANS + 1)]
    return lines


def iptables_load(tool: str, rules: list[str]) -> float:
    text = "*filter\n:FORWARD ACCEPT [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"
    t = time.perf_counter()
    subprocess.run([f"{tool}-restore"], input=text, text=True, check=True)
    return time.perf_counter() - t


def iptables_add_bridge(tool: str, da: Dev, db: Dev) -> float:
    """The original's ADD_BRIDGE: list with line numbers, then two inserts above the REJECT."""
    t = time.perf_counter()
    out = subprocess.run([tool, "-L", "FORWARD", "-t", "filter", "--line-numbers", "-n", "-v"],
                         capture_output=True, text=True, check=True).stdout
    pos = next((ln.split()[0] for ln in out.splitlines()[2:]
                if " REJECT " in ln and f" br{da.vlanid} " in ln), "1")
    subprocess.run([tool, "-I", "FORWARD", pos, "-s", da.primary_ip, "-d", db.primary_ip,
                    "-i", f"br{da.vlanid}", "-o", f"br{db.vlanid}", "-j", "ACCEPT"], check=True)
    subprocess.run([tool, "-I", "FORWARD", pos, "-s", db.primary_ip, "-d", da.primary_ip,
                    "-i", f"br{db.vlanid}", "-o", f"br{da.vlanid}", "-j", "ACCEPT"], check=True)
    return time.perf_counter() - t


def iptables_flush(tool: str) -> None:
    subprocess.run([tool, "-F", "FORWARD"], check=True)


# -- throughput -------------------------------------------------------------------
def iperf_once(topo: Topology, a: Any, b: Any, seconds: int) -> float:
    """Gbit/s of one iperf3 run a -> b (0 when it failed)."""
    server = topo.popen(b.ns, ["iperf3", "-s", "-1", "-p", "5201"])
    time.sleep(0.3)
    out = run(a.ns, ["iperf3", "-c", "10.0.2.10", "-p", "5201", "-t", str(max(1, seconds)), "-J"],
              check=False, timeout=seconds + 30).stdout
    topo.stop(server)
    try:
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
    except (ValueError, KeyError):
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--bridges", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=2, help="iperf3 run length (whole s)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (timings and iperf3)")
    ap.add_argument("--changes", type=int, default=50, help="single ADD_BRIDGE samples")
    ap.add_argument("--iptables", default="iptables", help="iptables or iptables-legacy")
    args = ap.parse_args()
    exit_on_sigterm()

    with Topology(wan=False) as topo:
        a, b = routed_devices(topo, {"a": 1, "b": 2}).values()
        netns.setns(topo.gateway)  # libnftables and iptables act on the gateway netns now

        devs = make_devices(args.devices, a.mac, b.mac)
        by_mac = {d.mac: d for d in devs}
        bridges = random_bridges(devs, args.bridges)
        print(f"edgesec firewall benchmark: {args.devices} devices, {args.bridges} bridges "
              f"({2 * args.bridges} directed pairs)")

        # 1. full apply from an empty table
        full = []
        for _ in range(args.repeat):
            fw = FirewallService(policy_cfg(), BenchRegistry(devs, bridges))
            t = time.perf_counter()
            fw.apply_full()
            full.append(time.perf_counter() - t)
            n_elems = sum(len(v) for v in fw.rows().values())
            fw.nft.apply([{"delete": {"table": {"family": "inet", "name": "edgesec"}}}])
        rules = iptables_rules(by_mac, bridges)
        ipt_full = statistics.median(iptables_load(args.iptables, rules)
                                     for _ in range(args.repeat))
        t = time.perf_counter()
        for r in rules[:50]:
            subprocess.run([args.iptables, *r.split()], check=True)
        per_rule = (time.perf_counter() - t) / 50
        iptables_flush(args.iptables)
        f_ours = statistics.median(full)
        print(f"full apply      edgesec {ms(f_ours)} ({n_elems} set elements, one transaction)"
              f" | {args.iptables}-restore {ms(ipt_full)} ({len(rules)} rules) "
              f"-> {ipt_full / f_ours:.1f}x faster; original per-rule iptables "
              f"{ms(per_rule)}/rule = est. {per_rule * len(rules):.0f} s")

        # 2. one more ADD_BRIDGE at that size
        reg = BenchRegistry(devs, bridges)
        fw = FirewallService(policy_cfg(), reg)
        fw.apply_full()
        rnd = random.Random(11)
        ours = []
        for _ in range(args.changes):
            x, y = rnd.sample(devs[2:], 2)
            reg.add_bridge(x.mac, y.mac)
            t = time.perf_counter()
            fw.apply_delta(*fw.state.apply(BridgeAdded(mac=x.mac, peer=y.mac, reason="bench")))
            ours.append(time.perf_counter() - t)
        fw.nft.apply([{"delete": {"table": {"family": "inet", "name": "edgesec"}}}])
        iptables_load(args.iptables, rules)
        theirs = []
        for _ in range(min(args.changes, 10)):
            x, y = rnd.sample(devs[2:], 2)
            theirs.append(iptables_add_bridge(args.iptables, x, y))
        iptables_flush(args.iptables)
        o_med, t_med = statistics.median(ours), statistics.median(theirs)
        o_p99 = sorted(ours)[max(0, int(len(ours) * 0.99) - 1)]
        print(f"one ADD_BRIDGE  edgesec median {ms(o_med)} (max {ms(max(ours))}, "
              f"p99 {ms(o_p99)}) | original-style list+insert {ms(t_med)} "
              f"-> {t_med / o_med:.0f}x faster")

        # 3. forwarding throughput a <-> b (bridged) with 10 vs M bridges. The four set-ups
        # are interleaved round by round so that load drift on the host hits all alike.
        big = str(args.bridges)
        setups = {"nft-10": bridges[-10:], f"nft-{big}": bridges,
                  "ipt-10": bridges[-10:], f"ipt-{big}": bridges}
        samples: dict[str, list[float]] = {k: [] for k in setups}
        for _ in range(args.repeat):
            for key, pairs in setups.items():
                if key.startswith("nft"):
                    fw = FirewallService(policy_cfg(), BenchRegistry(devs, pairs))
                    fw.apply_full()
                    samples[key].append(iperf_once(topo, a, b, args.seconds))
                    fw.nft.apply([{"delete": {"table": {"family": "inet", "name": "edgesec"}}}])
                else:
                    iptables_load(args.iptables, iptables_rules(by_mac, pairs))
                    samples[key].append(iperf_once(topo, a, b, args.seconds))
                    iptables_flush(args.iptables)
        tput = {k: statistics.median(v) for k, v in samples.items()}
        big = str(args.bridges)
        r_ours = tput[f"nft-{big}"] / tput["nft-10"]
        r_ipt = tput[f"ipt-{big}"] / tput["ipt-10"]
        print(f"throughput      edgesec {tput['nft-10']:.2f} Gbit/s @10 -> "
              f"{tput[f'nft-{big}']:.2f} @{big} ({r_ours:.0%} of @10) | "
              f"{args.iptables} linear {tput['ipt-10']:.2f} @10 -> {tput[f'ipt-{big}']:.2f} "
              f"@{big} ({r_ipt:.0%} of @10); at {big}: edgesec/linear = "
              f"{tput[f'nft-{big}'] / max(tput[f'ipt-{big}'], 1e-9):.1f}x")
        targets = [("full apply < 1 s", f_ours < 1.0), ("one change < 20 ms", o_med < 0.020),
                   (f"throughput @{big} within 10% of @10", r_ours >= 0.9)]
        print("targets: " + "; ".join(f"{n}: {'met' if ok else 'MISSED'}" for n, ok in targets))


if __name__ == "__main__":
    main()
