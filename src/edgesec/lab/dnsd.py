"""A tiny DNS server for the lab's wan namespace ("the internet's resolver").

Run as ``python -m edgesec.lab.dnsd --answer 198.51.100.2 [--port 53]``, over
UDP and TCP. Answers every A query with ``--answer`` (TTL 60), AAAA and others with an empty
NOERROR, and ignores what does not parse. edgesec's dnsmasq forwards the
devices' lookups here, so their DNS traffic gets real answers. Prints
``ready`` once bound. With ``--record FILE`` each question name received is
appended to FILE, one per line (what "the internet" learned from the devices;
at most ``--record-max`` lines).
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import threading

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset


def question_name(query: bytes) -> str | None:
    """The first question's name of a query datagram, or None."""
    try:
        msg = dns.message.from_wire(query)
    except (dns.exception.DNSException, ValueError, KeyError):
        return None
    return msg.question[0].name.to_text() if msg.question else None


def answer(query: bytes, address: str) -> bytes | None:
    """The response to one query datagram, or None if it is not a query."""
    try:
        msg = dns.message.from_wire(query)
        if msg.flags & 0x8000 or not msg.question:  # a response, or no question
            return None
        reply = dns.message.make_response(msg)
        q = msg.question[0]
        if q.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", address))
        return reply.to_wire()
    except (dns.exception.DNSException, ValueError, KeyError):
        return None


class _Recorder:
    """Appends question names to a file, at most ``limit`` lines, from any thread."""

    def __init__(self, path: str, limit: int) -> None:
        self.path, self.limit, self.count = path, limit, 0
        self.lock = threading.Lock()

    def note(self, query: bytes) -> None:
        if not self.path:
            return
        name = question_name(query)
        with self.lock:
            if name is None or self.count >= self.limit:
                return
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(name + "\n")
            self.count += 1


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _serve_tcp_conn(conn: socket.socket, address: str, rec: _Recorder) -> None:
    with conn:
        conn.settimeout(10)
        try:
            while True:
                (size,) = struct.unpack("!H", _read_exact(conn, 2))
                query = _read_exact(conn, size)
                rec.note(query)
                reply = answer(query, address)
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except (OSError, ConnectionError, struct.error):
            return


def _serve_tcp(sock: socket.socket, address: str, rec: _Recorder) -> None:
    while True:
        conn, _peer = sock.accept()
        threading.Thread(target=_serve_tcp_conn, args=(conn, address, rec),
                         daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--answer", required=True)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--record", default="", help="append received question names here")
    ap.add_argument("--record-max", type=int, default=100_000)
    args = ap.parse_args(argv)
    rec = _Recorder(args.record, args.record_max)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", args.port))
    tcp.listen(16)
    threading.Thread(target=_serve_tcp, args=(tcp, args.answer, rec), daemon=True).start()
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        rec.note(data)
        reply = answer(data, args.answer)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    sys.exit(main())
