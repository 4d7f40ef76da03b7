"""Heal window benchmark: ``nft flush ruleset`` until the firewall table is back.

Run as root: ``.venv/bin/python bench/heal.py [--flushes 40 --devices 200 --samples]``.

Everything happens in a throw-away gateway namespace of the test bed; the
host's ruleset is never touched. The firewall service runs in this process
(its asyncio loop in the main thread) on the gateway namespace, with
``--devices`` devices in its policy; a thread flushes the ruleset
``--flushes`` times at random moments and watches the ruleset with its own
netlink monitor, so both ends of a window are timestamped the same way:

* **table missing**: from the notification of the flush to the notification
  of our table being re-created;
* **forwarding exposed**: from just before the flush command until the
  service switched IPv4 forwarding off (the heal holds it off while it
  re-applies); an upper bound, it includes the flush command itself;
* **leaked connections**: device ``a`` (VLAN 1, isolated) connects to device
  ``b``'s TCP echo (VLAN 2) in a tight loop during the flushes; every
  accepted connection is a policy violation.

Peer, in the same run: the former watcher, which read the ruleset
generation id every 0.5 s and re-applied when the table was gone (no
forwarding hold), on the same namespace, policy and flush schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from typing import Any

from pyroute2 import netns

from edgesec.lab.topology import Topology, run
from edgesec.net import firewall as fwmod
from edgesec.net.firewall import FirewallService, Nft
from edgesec.net.links import IP_FORWARD
from edgesec.net.nftbackend import open_backend
from edgesec.net.nftgen import GenerationReader

sys.path.insert(0, os.path.dirname(__file__))
from firewall import BenchRegistry, make_devices, policy_cfg
from labnet import exit_on_sigterm, routed_devices

OLD_POLL_S = 0.5

PROBER = r"""
import signal, socket, sys, time
ok = tried = 0
def done(*_):
    print(ok, tried, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
while True:
    tried += 1
    s = socket.socket()
    s.settimeout(0.02)
    try:
        s.connect((sys.argv[1], 7))
        ok += 1
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.002)
"""


class PollingFirewall(FirewallService):
    """The peer: the former 0.5 s generation poll, no netlink watch, no forwarding hold."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self.apply_full()
        self._gen = GenerationReader()
        self._last = self._gen.read()
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(OLD_POLL_S)
            gen = self._gen.read()
            if gen != self._last:
                self.check()
                self._last = self._gen.read()

    async def stop(self) -> None:
        self._task.cancel()
        self._running = False
        self._gen.close()

    def _hold_forwarding(self) -> None:  # the old watcher had no hold
        pass


FLUSHER = r"""
import random, select, sys, time
from edgesec.net.nftbackend import open_backend
from edgesec.net.nftgen import NFPROTO_INET, RulesetMonitor
TABLE = (NFPROTO_INET, "edgesec")
flushes = int(sys.argv[1])
nft, mon, rnd = open_backend("library"), RulesetMonitor(), random.Random(11)

def next_commits(deadline):
    while time.monotonic() < deadline:
        select.select([mon], [], [], 0.5)
        commits, _lost = mon.read()
        if commits:
            return time.monotonic(), commits
    raise SystemExit("no notification within the deadline")

print("ready", flush=True)
for _ in range(flushes):
    time.sleep(rnd.uniform(0.05, 0.6))
    before = time.monotonic()
    rc, _o, err = nft.cmd("flush ruleset")
    assert rc == 0, err
    t0 = t1 = None
    while t1 is None:
        now, commits = next_commits(time.monotonic() + 10)
        for c in commits:
            if t0 is None and TABLE in c.deleted:
                t0 = now
            elif t0 is not None and TABLE in c.touched:
                t1 = now
                break
    print(before, t0, t1, flush=True)
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


async def measure(cls: type[FirewallService], devs: list[Any], flushes: int,
                  topo: Topology, a: Any, b: Any, samples: bool = False) -> dict[str, Any]:
    offs: list[float] = []
    real = fwmod.set_ip_forward

    def recording(path: Any = IP_FORWARD, on: bool = True) -> bool:
        if not on:
            offs.append(time.monotonic())
        return real(path, on=on)

    fwmod.set_ip_forward = recording
    run(topo.gateway, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    nft = Nft(open_backend("library"))
    fw = cls(policy_cfg(), BenchRegistry(devs, []), nft=nft, forward_path=IP_FORWARD)
    await fw.start()
    prober = topo.popen(a.ns, [sys.executable, "-c", PROBER, b.ip], ready="ready")
    # the flusher is a separate process: its timestamps do not wait for our GIL
    flusher = topo.popen(topo.gateway, [sys.executable, "-c", FLUSHER, str(flushes)],
                         ready="ready")
    while flusher.poll() is None:
        await asyncio.sleep(0.05)
    topo.stop(prober)
    ok, tried = (int(x) for x in prober.stdout.read().split())
    await fw.stop()
    fwmod.set_ip_forward = real
    lines = [ln.split() for ln in flusher.stdout.read().splitlines() if ln.strip()]
    if flusher.returncode != 0 or len(lines) != flushes:
        raise RuntimeError(f"flusher failed ({flusher.returncode}): {lines}")
    times = [(float(b), float(t0), float(t1)) for b, t0, t1 in lines]
    missing = [t1 - t0 for _b, t0, t1 in times]
    exposed = []
    for before, _t0, t1 in times:  # from just before the flush command to forwarding off
        hold = [t for t in offs if before <= t <= t1 + 0.05]
        exposed.append(hold[0] - before if hold else float("nan"))
    if samples:
        print(cls.__name__, "missing ms", sorted(round(x * 1000, 1) for x in missing))
        print(cls.__name__, "exposed ms", sorted(round(x * 1000, 1) for x in exposed))
    return {"missing": missing, "exposed": exposed, "leaked": ok, "tried": tried,
            "heals": fw.heals}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--flushes", type=int, default=40)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--samples", action="store_true", help="print every sample")
    args = ap.parse_args()
    logging.getLogger("edgesec").setLevel(logging.ERROR)  # one warning per heal otherwise
    exit_on_sigterm()
    with Topology(wan=False) as topo:
        a, b = routed_devices(topo, {"a": 1, "b": 2}).values()
        topo.serve_echo(b.ns)
        assert topo.tcp_ok(a.ns, b.ip), "control: without a firewall a reaches b"
        netns.setns(topo.gateway)  # nftables, netlink and the sysctl act on the gateway now
        devs = make_devices(args.devices, a.mac, b.mac)
        print(f"heal window: {args.flushes} x 'nft flush ruleset', {args.devices} devices "
              f"in the policy, a (VLAN 1) probing b (VLAN 2) meanwhile")
        new = asyncio.run(measure(FirewallService, devs, args.flushes, topo, a, b, args.samples))
        old = asyncio.run(measure(PollingFirewall, devs, args.flushes, topo, a, b, args.samples))
        w = 44
        print(f"{'':{w}}{'p50':>10}{'p99':>11}{'max':>11}")
        rows = (("table missing, netlink watch (edgesec)", new["missing"]),
                ("table missing, 0.5 s poll (peer)", old["missing"]),
                ("forwarding exposed, netlink watch", [x for x in new["exposed"] if x == x]),
                ("forwarding exposed, 0.5 s poll (no hold)", old["missing"]))
        for label, m in rows:
            print(f"{label:{w}}{ms(statistics.median(m))} {ms(pct(m, 0.99))} {ms(max(m))}")
        for label, res in (("netlink watch", new), ("0.5 s poll", old)):
            print(f"leaked a->b connections, {label}: {res['leaked']} of {res['tried']} attempts "
                  f"({res['leaked'] / args.flushes:.2f} per flush), heals {res['heals']}")
        ratio = statistics.median(old["missing"]) / statistics.median(new["missing"])
        print(f"ratio (poll / watch, median table-missing window): {ratio:.0f}x")


if __name__ == "__main__":
    main()
