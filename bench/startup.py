"""Start-up benchmark: time from ``edgesec run`` to a ready gateway, with and without an
absent access point, and the time SIGTERM takes to stop it.

Run as root: ``.venv/bin/python bench/startup.py [--repeat 3]``.

Each round builds a fresh test bed (gateway namespace, one device on VLAN 1),
starts the real daemon with subnets, firewall and dnsmasq, and measures:

* control: from spawning the daemon to ``PING_SUPERVISOR`` answering;
* dhcp: from spawning the daemon to the device's udhcpc holding a lease (the
  device is accepted as soon as the control socket answers; udhcpc retries
  every second, so this figure has a 1 s granularity);
* stop: from SIGTERM to the daemon's exit.

"absent AP" is the shipped config's situation: ``[ap] interface`` set,
``execAp = false`` and no hostapd running.  The ratio line compares it with the
peer run without an AP in the same script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from isolation_lab import IsolationLab, NetnsDaemon  # noqa: E402

from edgesec.lab.topology import Topology  # noqa: E402


def one_round(absent_ap: bool) -> tuple[float, float, float]:
    with Topology() as topo:
        dev = topo.add_device("a", 1)
        extra: dict[str, dict[str, object]] = {}
        if absent_ap:
            gwdir = topo.workdir / "gw"
            extra = {"system": {"execAp": False},
                     "ap": {"interface": "wlan0", "ctrlInterface": str(gwdir / "hostapd"),
                            "apFilePath": "hostapd.conf", "vlanFile": "hostapd.vlan"}}
        lab = IsolationLab(topo, vlans=(1,), extra=extra)
        t0 = time.monotonic()
        lab.daemon = NetnsDaemon(lab.config, netns=topo.gateway).start(timeout=60)
        t_ctl = time.monotonic() - t0
        try:
            lab.ok(f"ACCEPT_MAC {dev.mac} 1")
            topo.dhcp(dev, timeout=60)
            t_dhcp = time.monotonic() - t0
        finally:
            t1 = time.monotonic()
            lab.stop()
            t_stop = time.monotonic() - t1
        return t_ctl, t_dhcp, t_stop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    results: dict[str, list[tuple[float, float, float]]] = {"no AP": [], "absent AP": []}
    for _ in range(args.repeat):  # interleaved, so machine load hits both alike
        for name in results:
            results[name].append(one_round(name == "absent AP"))
    med: dict[str, list[float]] = {}
    for name, rounds in results.items():
        med[name] = [statistics.median(r[i] for r in rounds) for i in range(3)]
        ctl, dhcp, stop = med[name]
        print(f"{name:>9}: control socket {ctl:5.2f}s  DHCP lease {dhcp:5.2f}s  "
              f"SIGTERM->exit {stop:5.2f}s  (median of {len(rounds)})")
    a, b = med["absent AP"], med["no AP"]
    print(f"ratio absent AP / no AP: control {a[0] / b[0]:.2f}x  DHCP {a[1] / b[1]:.2f}x  "
          f"stop {a[2] / b[2]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
