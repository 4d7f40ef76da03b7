"""Idle cost of a lab gateway: CPU and wake-ups of the daemon, capture worker, dnsmasq.

    .venv/bin/python bench/idle.py [--devices 3] [--seconds 20] [--flap]

Builds a lab (``edgesec.lab``: gateway namespace running ``edgesec run`` with
capture on every device bridge, N joined devices, no traffic agents), waits
for it to settle, then measures over ``--seconds``: CPU % of a core (utime +
stime from /proc/PID/stat) and wake-ups/s (voluntary context switches from
/proc/PID/status) of the daemon, the capture worker and dnsmasq, and their
RSS. ``--flap`` first takes every device bridge down and up (the link flap
that used to make the worker spin). The peer is an idle ``tcpdump -i brN -w
/dev/null`` per bridge in the same namespace, measured the same way.
Target: < 1 % of a core for the three together. The lab is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TICK = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, voluntary context switches, RSS KiB) of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICK
    ctx = rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            ctx = int(line.split()[1])
        elif line.startswith("VmRSS"):
            rss = int(line.split()[1])
    return cpu, ctx, rss


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc, by parent pid)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def measure(pids: dict[str, int], seconds: float) -> dict[str, tuple[float, float, float]]:
    """name -> (CPU % of a core, wake-ups/s, RSS MiB) over ``seconds``."""
    before = {n: sample(p) for n, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    out = {}
    for n, p in pids.items():
        cpu, ctx, rss = sample(p)
        out[n] = (100 * (cpu - before[n][0]) / dt, (ctx - before[n][1]) / dt, rss / 1024)
    return out


def report(title: str, res: dict[str, tuple[float, float, float]]) -> float:
    print(title)
    total_cpu = total_wake = total_rss = 0.0
    for name, (cpu, wake, rss) in res.items():
        print(f"  {name:28s} CPU {cpu:6.2f} %  wake-ups {wake:8.1f}/s  RSS {rss:6.1f} MiB")
        total_cpu, total_wake, total_rss = total_cpu + cpu, total_wake + wake, total_rss + rss
    print(f"  {'total':28s} CPU {total_cpu:6.2f} %  wake-ups {total_wake:8.1f}/s  "
          f"RSS {total_rss:6.1f} MiB")
    return total_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--flap", action="store_true", help="flap every bridge before measuring")
    args = ap.parse_args()
    from edgesec.lab.lab import Lab

    lab = Lab.create("ib" + secrets.token_hex(2))
    lab.log = lambda msg: None
    tcpdumps: list[subprocess.Popen[bytes]] = []
    try:
        lab.up(args.devices, None, agents=False)
        ns = lab.state.gateway_ns
        status = lab.ctl("STATUS")
        cap = next(ln for ln in status.splitlines() if ln.startswith("capture "))
        worker = int(cap.split(" pid ")[1].split()[0])
        bridges = cap.split(" on ")[1].split()[0].split(",")
        daemon = lab.state.daemon_pid
        assert daemon is not None
        # the daemon may run under `ip netns exec` (which execs): find the python process
        dnsmasq = [p for p in children(daemon) if "dnsmasq" in comm(p)]
        pids = {"edgesec daemon": daemon, "capture worker": worker}
        if dnsmasq:
            pids["dnsmasq"] = dnsmasq[0]
        if args.flap:
            for br in bridges:
                subprocess.run(["ip", "-n", ns, "link", "set", br, "down"], check=True)
                subprocess.run(["ip", "-n", ns, "link", "set", br, "up"], check=True)
        time.sleep(3.0)  # settle after joins
        ours = report(f"idle lab, {args.devices} devices, capture on {','.join(bridges)}"
                      f"{' after a link flap' if args.flap else ''} ({args.seconds:.0f} s):",
                      measure(pids, args.seconds))
        for br in bridges:
            tcpdumps.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "tcpdump", "-q", "-i", br, "-w", "/dev/null"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2.0)
        peer = report(f"peer: idle tcpdump -i brN -w /dev/null on the same {len(bridges)} "
                      "bridges:", measure({f"tcpdump {br}": t.pid
                                           for br, t in zip(bridges, tcpdumps, strict=True)},
                                          args.seconds))
        print(f"ratio edgesec (daemon+worker+dnsmasq) / tcpdump CPU = "
              f"{ours / max(peer, 0.01):.2f}x; target < 1 % of a core total: "
              f"{'met' if ours < 1.0 else 'NOT met'}")
    finally:
        for t in tcpdumps:
            t.send_signal(signal.SIGTERM)
            t.wait()
        lab.down()


if __name__ == "__main__":
    main()
