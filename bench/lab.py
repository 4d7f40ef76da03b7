"""Benchmark: how long N lab devices take to join (RADIUS, VLAN, DHCP lease, registry).

The figure that used to be an assertion in tests/integration/test_lab.py
(``test_fifty_devices_join_and_get_leases_within_60s`` failed at 71 s on a
loaded machine): the test now checks the behaviour, this prints the time.
The peer, in the same run, is the same lab with one device: the ratio of the
per-device join time at N to the one-device join time says whether joining
gets slower as devices accumulate (1.0 = it does not; below 1.0 = the
parallel workers overlap the per-device waits).

    .venv/bin/python bench/lab.py                 # 50 devices, 16 workers
    .venv/bin/python bench/lab.py --devices 20 --workers 8
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from edgesec.lab.lab import Lab


def run(devices: int, workers: int) -> dict[str, float]:
    lab = Lab.create("lb" + secrets.token_hex(3))
    try:
        lab.up(devices, agents=False, workers=workers)
        joined = sum(d.state == "joined" for d in lab.state.devices)
        if joined != devices:
            sys.exit(f"only {joined} of {devices} devices joined")
        return dict(lab.timings)
    finally:
        lab.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    one = run(1, 1)
    many = run(args.devices, args.workers)
    per = many["join"] / args.devices
    print(f"edgesec lab join benchmark, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'devices':>8} {'gateway s':>10} {'join s':>8} {'registered s':>13} "
          f"{'join/device s':>14}")
    for n, t in ((1, one), (args.devices, many)):
        print(f"{n:>8} {t['gateway']:>10.2f} {t['join']:>8.2f} {t['registered']:>13.2f} "
              f"{t['join'] / n:>14.3f}")
    print(f"per-device join at {args.devices} / one device alone: {per / one['join']:.2f}x")


if __name__ == "__main__":
    main()
