"""Benchmark: edgesec's mDNS reflector against avahi-daemon's reflector.

Same netns topology for both (gateway with br2/br5, querier Q on VLAN 2,
responder R on VLAN 5), measured in the same run:

1. query->answer latency across subnets: Q sends queries for unique names
   (open loop, one every ``--interval`` s), R answers each at once; p50/p99
   over ``--resolutions`` (default 1000);
2. maximum reflected rate without loss: R sends unique answers at a paced
   rate for ``--seconds``; Q counts distinct names received; the rate steps
   up until something is lost.

Ours runs as the real :class:`edgesec.mdns.service.MdnsService` (knowledge,
events, detection table included) with the per-source rate limit raised out
of the way; avahi-daemon runs with a private config (``enable-reflector=yes``,
no D-Bus, no publishing, rate limit off) in a private mount namespace so the
host's own avahi (if any) is never touched.  Both are stopped by pid.

Run: ``.venv/bin/python bench/mdns.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import signal
import statistics
import sys

from edgesec.lab.topology import Topology, run

PROBE = [sys.executable, "-m", "edgesec.mdns.probe"]
Q_IP, R_IP = "10.0.2.10", "10.0.5.10"

AVAHI_CONF = """[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=br2,br5
enable-dbus=no
ratelimit-interval-usec=0
ratelimit-burst=0
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
disable-user-service-publishing=yes
[reflector]
enable-reflector=yes
[rlimits]
"""


def serve_ours() -> None:
    """Run MdnsService for br2/br5 (executed inside the gateway netns)."""
    from edgesec.config import parse_settings
    from edgesec.mdns.service import MdnsService
    from edgesec.mdns.settings import MdnsSettings
    from edgesec.registry import Registry
    from edgesec.store import Store

    settings = parse_settings(
        '[system]\ndefaultOpenVlanId = 2\n[interfaces]\n'
        'if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"\n'
        'if5 = "5,10.0.5.1,10.0.5.255,255.255.255.0"\n')
    mdns = dataclasses.replace(MdnsSettings.from_settings(settings), reflect_ip4=True,
                               reflect_ip6=False, auto_bridge=True, rate_limit=1e7,
                               rate_burst=10_000_000)

    async def main() -> None:
        svc = MdnsService(settings, Registry(settings, Store(None)), mdns)
        await svc.start()
        gc.freeze()  # as the daemon does after start-up (edgesec.gateway.Gateway.run)
        print("ready", svc.status(), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        print(svc.status(), flush=True)
        await svc.stop()

    asyncio.run(main())


def probe(t: Topology, ns: str, *args: str, timeout: float = 300) -> dict:
    res = run(ns, [*PROBE, *args], check=False, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(res.stdout + res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def start_reflector(t: Topology, kind: str):
    if kind == "edgesec":
        return t.popen(t.gateway, [sys.executable, __file__, "--serve-ours"], ready="ready",
                       ready_timeout=20)
    conf = t.workdir / "avahi-daemon.conf"
    conf.write_text(AVAHI_CONF)
    empty = t.workdir / "empty"
    empty.mkdir(exist_ok=True)
    script = (f"mount -t tmpfs none /run && mkdir -p /run/avahi-daemon && "
              f"mount --bind {empty} /etc/avahi/services 2>/dev/null; "
              f"exec avahi-daemon -f {conf} --no-drop-root --no-chroot --no-rlimits "
              f"--no-proc-title --debug")
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    for attempt in range(3):  # avahi sometimes stalls in interface enumeration; retry
        try:
            return t.popen(t.gateway, argv, ready="Server startup complete", ready_timeout=8)
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def latency(t: Topology, q, r, count: int, interval: float) -> dict:
    """Open-loop resolutions of unique names; returns the raw latencies (s)."""
    resp = t.popen(r.ns, [*PROBE, "respond", "lat", R_IP, "--prefix"], ready="ready")
    try:
        probe(t, q.ns, "query", "warm", "--count", "20", "--interval", "0.01",
              "--timeout", "1")
        got = probe(t, q.ns, "query", "lat", "--count", str(count), "--interval",
                    str(interval), "--timeout", "3")
    finally:
        t.stop(resp)
    return got


def max_rate(t: Topology, q, r, rates: list[int], seconds: float) -> dict:
    best, tried = 0, []
    for i, rate in enumerate(rates):
        n = max(200, int(rate * seconds))
        tag = f"r{i}x"
        lis = t.popen(q.ns, [*PROBE, "listen", "--seconds", str(seconds + 3), "--match", tag,
                             "--distinct"], ready="ready")
        sent = probe(t, r.ns, "send", tag, R_IP, "--answer", R_IP, "--count", str(n),
                     "--unique", "--rate", str(rate))
        out, _ = lis.communicate(timeout=seconds + 20)
        got = json.loads(out.strip().splitlines()[-1])["distinct"]
        actual = sent["sent"] / max(sent["seconds"], 1e-9)
        tried.append({"rate": rate, "achieved_send_pps": round(actual), "sent": n,
                      "received": got})
        if got < n:
            break
        best = rate
    return {"max_lossless_pps": best, "steps": tried}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve-ours", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--resolutions", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.01, help="s between queries")
    ap.add_argument("--seconds", type=float, default=1.0, help="per rate step")
    ap.add_argument("--rates", default="500,1000,2000,4000,8000,16000,32000")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved latency rounds (>1 restarts avahi, which can stall)")
    ap.add_argument("--quick", action="store_true", help="100 resolutions, 3 rate steps")
    ap.add_argument("--order", default="avahi,edgesec",
                    help="measurement order (avahi first: it hung at start-up right after ours)")
    a = ap.parse_args()
    if a.serve_ours:
        serve_ours()
        return 0
    if a.quick:
        a.resolutions, a.rates, a.rounds = 100, "500,2000,8000", 1
    rates = [int(x) for x in a.rates.split(",")]
    results: dict[str, dict] = {}
    with Topology(wan=False) as t:
        q = t.add_device("q", 2)
        r = t.add_device("r", 5)
        for vlan in (2, 5):
            run(t.gateway, ["ip", "addr", "add", f"10.0.{vlan}.1/24", "dev", f"br{vlan}"])
            run(t.gateway, ["ip", "link", "set", f"br{vlan}", "up"])
        t.set_address(q, f"{Q_IP}/24", "10.0.2.1")
        t.set_address(r, f"{R_IP}/24", "10.0.5.1")
        kinds = a.order.split(",")
        lat: dict[str, list[float]] = {k: [] for k in kinds}
        lost: dict[str, int] = dict.fromkeys(kinds, 0)
        per_round = max(1, a.resolutions // a.rounds)
        # Interleaved rounds: background load on the machine hits both alike.
        for rnd in range(a.rounds):
            for kind in kinds:
                proc = start_reflector(t, kind)
                try:
                    got = latency(t, q, r, per_round, a.interval)
                    lat[kind] += got["latencies"]
                    lost[kind] += got["lost"]
                    if rnd == a.rounds - 1:
                        results[kind] = max_rate(t, q, r, rates, a.seconds)
                finally:
                    t.stop(proc)
        for kind in kinds:
            xs = sorted(lat[kind])
            res = results[kind]
            res["p50_ms"] = statistics.median(xs) * 1e3 if xs else float("inf")
            res["p99_ms"] = (xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))] * 1e3
                             if xs else float("inf"))
            res["lost"], res["answered"] = lost[kind], len(xs)
            print(f"{kind:8s} p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
                  f"lost {res['lost']}/{per_round * a.rounds}  max lossless "
                  f"{res['max_lossless_pps']} pkt/s", flush=True)
    ours, avahi = results["edgesec"], results["avahi"]
    print(json.dumps(results, indent=1))
    print(f"p99 latency ratio edgesec/avahi: {ours['p99_ms'] / avahi['p99_ms']:.3f} "
          f"(target <= 1)")
    print(f"p50 latency ratio edgesec/avahi: {ours['p50_ms'] / avahi['p50_ms']:.3f}")
    ratio = ours["max_lossless_pps"] / max(avahi["max_lossless_pps"], 1)
    print(f"lossless rate ratio edgesec/avahi: {ratio:.2f} (target >= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
