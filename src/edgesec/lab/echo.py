"""Tiny TCP/UDP echo and HTTP services for the network-namespace test bed.

Run inside a namespace as ``python -m edgesec.lab.echo --tcp 7 --udp 7 --http 80``.
Prints ``ready`` on stdout once every socket is bound, then serves until killed.
Only used by the lab (stands for "the internet" in the wan namespace and for a
device's own service in device namespaces).
"""

from __future__ import annotations

import argparse
import http.server
import socket
import socketserver
import sys
import threading

BANNER = b"edgesec-lab\n"


class _TCPEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5)
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _HTTP(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BANNER)))
        self.end_headers()
        self.wfile.write(BANNER)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _udp_echo(port: int) -> threading.Thread:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))

    def loop() -> None:
        while True:
            data, peer = sock.recvfrom(65536)
            sock.sendto(data, peer)

    return threading.Thread(target=loop, daemon=True)


def main(argv: list[str] | None = None) -> None:
    """Bind the requested services, print ``ready`` and serve forever."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tcp", type=int, action="append", default=[])
    ap.add_argument("--udp", type=int, action="append", default=[])
    ap.add_argument("--http", type=int, action="append", default=[])
    args = ap.parse_args(argv)
    threads = [_udp_echo(p) for p in args.udp]
    for port in args.tcp:
        srv = _Server(("0.0.0.0", port), _TCPEcho)
        threads.append(threading.Thread(target=srv.serve_forever, daemon=True))
    for port in args.http:
        srv = _Server(("0.0.0.0", port), _HTTP)
        threads.append(threading.Thread(target=srv.serve_forever, daemon=True))
    for t in threads:
        t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
