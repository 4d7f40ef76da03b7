"""mDNS sockets, one per (device bridge, address family).

Owns the socket options of the reflector: bound to ``*:5353`` and to the
bridge (``SO_BINDTODEVICE``), joined to 224.0.0.251 / ff02::fb on that
bridge only, multicast TTL/hop limit 255, multicast loopback off, the
received TTL/hop limit delivered as ancillary data.  The same socket sends
the reflected packets, so they leave from the gateway's address on that
bridge with source port 5353.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

__all__ = ["MDNS_GROUP4", "MDNS_GROUP6", "MDNS_PORT", "open_socket", "receive"]

MDNS_PORT = 5353
MDNS_GROUP4 = "224.0.0.251"
MDNS_GROUP6 = "ff02::fb"
_IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
_IP_MULTICAST_ALL = 49
_IPV6_MULTICAST_ALL = 29
_RCVBUF = 1 << 21
_SO_RCVBUFFORCE = 33
_CMSG_SPACE = socket.CMSG_SPACE(4) * 2 + socket.CMSG_SPACE(20)


def open_socket(family: int, ifname: str, ifindex: int,
                address4: ipaddress.IPv4Address | None = None) -> socket.socket:
    """Open the non-blocking receive/send socket of ``ifname`` for ``family``."""
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        try:  # beyond net.core.rmem_max when we may (root): absorbs bursts
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            sock.bind(("0.0.0.0", MDNS_PORT))
            local = (address4 or ipaddress.IPv4Address(0)).packed
            mreqn = socket.inet_aton(MDNS_GROUP4) + local + struct.pack("@i", ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            socket.inet_aton("0.0.0.0") + local + struct.pack("@i", ifindex))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MULTICAST_ALL, 0)
            sock.bind(("::", MDNS_PORT))
            mreq = socket.inet_pton(socket.AF_INET6, MDNS_GROUP6) + struct.pack("@I", ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def receive(sock: socket.socket, bufsize: int) -> tuple[bytes, str, int, int | None]:
    """One datagram: (payload, source address, source port, TTL/hop limit or None).

    Raises ``BlockingIOError`` when nothing is queued.
    """
    data, ancdata, _flags, addr = sock.recvmsg(bufsize, _CMSG_SPACE)
    ttl = None
    for level, kind, value in ancdata:
        if (level == socket.IPPROTO_IP and kind == socket.IP_TTL) or (
            level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT
        ):
            ttl = int.from_bytes(value[:4], "little" if struct.pack("@i", 1)[0] else "big")
    host = addr[0].split("%", 1)[0]
    return data, host, addr[1], ttl
