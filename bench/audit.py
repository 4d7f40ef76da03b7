"""What the audit trail's sender credentials cost on the supervisor's UNIX socket.

The supervisor reads each request with ``recvmsg`` and ``SCM_CREDENTIALS``
(sender pid/uid/gid) instead of ``recvfrom``.  This measures one send + one
receive on a UNIX datagram socket pair both ways, in the same run, best of
five rounds, and prints the ratio.

    .venv/bin/python bench/audit.py
"""

from __future__ import annotations

import socket
import time

from edgesec.supervisor.audit import CMSG_CREDS_SPACE, unix_credentials

N = 50_000


def round_trip_us(creds: bool) -> float:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        if creds:
            b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        start = time.perf_counter()
        for _ in range(N):
            a.send(b"PING_SUPERVISOR")
            if creds:
                _data, anc, _flags, _addr = b.recvmsg(65537, CMSG_CREDS_SPACE)
                unix_credentials(anc)
            else:
                b.recvfrom(65537)
        return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    plain = min(round_trip_us(False) for _ in range(5))
    creds = min(round_trip_us(True) for _ in range(5))
    print(f"send+recvfrom            {plain:6.2f} us")
    print(f"send+recvmsg+credentials {creds:6.2f} us")
    print(f"  credentials / plain    {creds / plain:6.2f}x  (+{creds - plain:.2f} us a request)")


if __name__ == "__main__":
    main()
