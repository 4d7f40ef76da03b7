"""Reachability probes for the test bed (TCP echo, UDP echo, HTTP GET).

Run inside a namespace: ``python -m edgesec.lab.probe tcp|udp|http HOST PORT
[--timeout S] [--source IP]``. Exit status 0 when the peer answered with the
expected bytes, 1 otherwise. The functions are importable too.
"""

from __future__ import annotations

import argparse
import socket
import sys

PAYLOAD = b"edgesec-probe\n"


def tcp_echo(host: str, port: int, timeout: float = 1.0, source: str | None = None) -> bool:
    """True when a TCP connection succeeds and the payload is echoed back."""
    try:
        with socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        ) as s:
            return echoed(s)
    except OSError:
        return False


def echoed(sock: socket.socket) -> bool:
    """Send the payload over a connected TCP socket: did it come back whole?"""
    sock.sendall(PAYLOAD)
    got = b""
    while len(got) < len(PAYLOAD):
        chunk = sock.recv(len(PAYLOAD) - len(got))
        if not chunk:
            break
        got += chunk
    return got == PAYLOAD


def tcp_connect(host: str, port: int, timeout: float = 1.0, source: str | None = None) -> bool:
    """True when a TCP connection is accepted (nothing is sent)."""
    try:
        with socket.create_connection((host, port), timeout=timeout,
                                      source_address=(source, 0) if source else None):
            return True
    except OSError:
        return False


def udp_echo(host: str, port: int, timeout: float = 1.0, source: str | None = None) -> bool:
    """True when a UDP datagram is echoed back (three tries within the timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if source:
            s.bind((source, 0))
        s.settimeout(timeout / 3)
        for _ in range(3):
            try:
                s.sendto(PAYLOAD, (host, port))
                data, _peer = s.recvfrom(65536)
                if data == PAYLOAD:
                    return True
            except OSError:
                continue
    return False


def http_get(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an HTTP GET / answers 200."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("kind", choices=["tcp", "udp", "http", "connect"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--source")
    a = ap.parse_args(argv)
    if a.kind == "tcp":
        ok = tcp_echo(a.host, a.port, a.timeout, a.source)
    elif a.kind == "udp":
        ok = udp_echo(a.host, a.port, a.timeout, a.source)
    elif a.kind == "connect":
        ok = tcp_connect(a.host, a.port, a.timeout, a.source)
    else:
        ok = http_get(a.host, a.port, a.timeout)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
