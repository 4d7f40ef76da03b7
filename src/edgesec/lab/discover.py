"""mDNS discovery from inside a lab device (what a phone's app does to find a printer).

Run inside a device namespace::

    python -m edgesec.lab.discover NAME [--type _http._tcp.local.] [--timeout 8]

Browses for the service type and resolves ``NAME.<type>`` with python-zeroconf
on the device's own address, printing one JSON object
``{"name", "addresses", "port", "browsed"}``. Exit status 0 when the service
was resolved to at least one address, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from edgesec.lab.agent import own_address


def resolve(name: str, service_type: str, timeout: float) -> dict[str, object]:
    from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

    seen: list[str] = []

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, found: str) -> None:
            seen.append(found)

        def update_service(self, zc: Zeroconf, type_: str, found: str) -> None:
            pass

        def remove_service(self, zc: Zeroconf, type_: str, found: str) -> None:
            pass

    zc = Zeroconf(interfaces=[own_address()], ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(zc, service_type, Listener())
        full = f"{name}.{service_type}"
        deadline = time.monotonic() + timeout
        info = None
        while time.monotonic() < deadline and info is None:
            info = zc.get_service_info(service_type, full, timeout=1500)
        browser.cancel()
        if info is None:
            return {"name": full, "addresses": [], "port": None, "browsed": seen}
        return {
            "name": full,
            "addresses": [socket.inet_ntoa(a) for a in info.addresses if len(a) == 4],
            "port": info.port,
            "browsed": seen,
        }
    finally:
        zc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--type", default="_http._tcp.local.")
    ap.add_argument("--timeout", type=float, default=8.0)
    args = ap.parse_args(argv)
    result = resolve(args.name, args.type, args.timeout)
    print(json.dumps(result))
    return 0 if result["addresses"] else 1


if __name__ == "__main__":
    sys.exit(main())
