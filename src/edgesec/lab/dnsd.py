"""A tiny DNS server for the lab's wan namespace ("the internet's resolver").

Run as ``python -m edgesec.lab.dnsd --answer 198.51.100.2 [--port 53]``. Answers
every A query with ``--answer`` (TTL 60), AAAA and others with an empty
NOERROR, and ignores what does not parse. edgesec's dnsmasq forwards the
devices' lookups here, so their DNS traffic gets real answers. Prints
``ready`` once bound.
"""

from __future__ import annotations

import argparse
import socket
import sys

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--answer", required=True)
    ap.add_argument("--port", type=int, default=53)
    args = ap.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        reply = answer(data, args.answer)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    sys.exit(main())
