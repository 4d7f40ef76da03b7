"""A held TCP connection for the test bed: does an open connection survive a policy change?

Run inside a namespace: ``python -m edgesec.lab.hold HOST PORT [--timeout S]``.
Connects once (prints ``ready``, or ``refused`` and exits 1), then for every
line on stdin sends a probe over the *same* connection and prints ``echo``
when it came back within the timeout, else ``silent``. Used against the
lab's TCP echo service to show that removing a bridge, group membership or
access rule also cuts connections that are already established.
"""

from __future__ import annotations

import argparse
import socket
import sys

from edgesec.lab.probe import echoed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=2.0)
    a = ap.parse_args(argv)
    try:
        sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
    except OSError:
        print("refused", flush=True)
        return 1
    print("ready", flush=True)
    with sock:
        for _line in sys.stdin:
            try:
                ok = echoed(sock)
            except OSError:
                ok = False
            print("echo" if ok else "silent", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
