"""What runs inside a lab device: its own services, an mDNS announcement, light traffic.

Run inside a device namespace after it has its address::

    python -m edgesec.lab.agent --tcp 7 --http 80 [--announce NAME] \
        [--peers FILE] [--wan 198.51.100.2] [--interval 5]

* serves TCP echo and HTTP (so other devices have something to reach);
* with ``--announce NAME`` publishes ``NAME.local`` and the service
  ``NAME._http._tcp.local.`` on its address with python-zeroconf, the way an
  IoT device announces itself;
* every ``--interval`` seconds (with jitter) looks up a name at its gateway's
  DNS, opens a TCP connection to the wan echo service and tries to reach one
  of the peer addresses listed in ``--peers`` (a JSON list, re-read each
  round), then waits. Failures are expected (isolation) and only counted.

Prints ``ready`` once the services are bound and the announcement registered.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroconf import Zeroconf

from edgesec.lab import echo

LOOKUP_NAME = "wan.edgesec-lab.test."


def own_address(ifname: str = "eth0") -> str:
    """The IPv4 address of ``ifname`` (read with SIOCGIFADDR)."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        packed = struct.pack("256s", ifname.encode()[:15])
        return socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, packed)[20:24])


def default_gateway() -> str | None:
    """The default route's gateway from /proc/net/route, or None."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) > 2 and parts[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(parts[2], 16)))
    return None


def announce(name: str, address: str, port: int) -> Zeroconf:
    """Publish ``name.local`` and ``name._http._tcp.local.`` at ``address``."""
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
    info = ServiceInfo(
        "_http._tcp.local.",
        f"{name}._http._tcp.local.",
        addresses=[socket.inet_aton(address)],
        port=port,
        properties={"model": "edgesec-lab"},
        server=f"{name}.local.",
    )
    zc.register_service(info, allow_name_change=False)
    return zc


def dns_query(server: str, name: str = LOOKUP_NAME, timeout: float = 1.0) -> bool:
    """One A query over UDP; True when any answer came back."""
    import dns.message
    import dns.query

    try:
        dns.query.udp(dns.message.make_query(name, "A"), server, timeout=timeout)
        return True
    except Exception:
        return False


def tcp_try(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"edgesec-lab agent\n")
            return True
    except OSError:
        return False


def peers(path: Path | None, me: str) -> list[str]:
    if path is None:
        return []
    try:
        return [ip for ip in json.loads(path.read_text()) if ip and ip != me]
    except (OSError, ValueError, TypeError):
        return []


def traffic_loop(args: argparse.Namespace, me: str, stop: threading.Event) -> None:
    """Light, realistic background traffic; never raises."""
    counts = {"dns": 0, "wan": 0, "peer": 0}
    while not stop.is_set():
        gateway = default_gateway()
        if gateway and dns_query(gateway):
            counts["dns"] += 1
        if tcp_try(args.wan, 7):
            counts["wan"] += 1
        candidates = peers(args.peers, me)
        if candidates and tcp_try(random.choice(candidates), 7, timeout=0.5):
            counts["peer"] += 1
        stop.wait(args.interval * random.uniform(0.7, 1.3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tcp", type=int, default=7)
    ap.add_argument("--http", type=int, default=80)
    ap.add_argument("--announce", metavar="NAME")
    ap.add_argument("--peers", type=Path)
    ap.add_argument("--wan", default="198.51.100.2")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--no-traffic", action="store_true")
    args = ap.parse_args(argv)
    me = own_address()
    server = threading.Thread(
        target=echo.main, args=([f"--tcp={args.tcp}", f"--http={args.http}"],), daemon=True
    )
    server.start()
    zc = announce(args.announce, me, args.http) if args.announce else None
    stop = threading.Event()
    if not args.no_traffic:
        threading.Thread(target=traffic_loop, args=(args, me, stop), daemon=True).start()
    time.sleep(0.2)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        if zc is not None:
            zc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
