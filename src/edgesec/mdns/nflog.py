"""Reader of the kernel's NFLOG netlink messages (nfnetlink_log).

Owns binding a netlink socket to one NFLOG group and turning each logged
packet into ``(source ip, destination ip, input ifindex)``.  pyroute2 has no
NFLOG support and libpcap's ``nflog:N`` would add a binding we do not
otherwise need, so this is ~100 lines of ``struct`` over a raw
``AF_NETLINK``/``NETLINK_NETFILTER`` socket, read from the asyncio loop.
Only the first 64 bytes of each packet are copied to us (addresses only).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

__all__ = ["LoggedPacket", "NflogSocket", "parse_messages"]

NETLINK_NETFILTER = 12
_NFNL_SUBSYS_ULOG = 4
_MSG_PACKET = _NFNL_SUBSYS_ULOG << 8 | 0
_MSG_CONFIG = _NFNL_SUBSYS_ULOG << 8 | 1
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_NLMSG_ERROR = 2
_CFG_CMD, _CFG_MODE = 1, 2
_CMD_BIND = 1
_COPY_PACKET = 2
_ATTR_INDEV, _ATTR_PAYLOAD = 4, 9
_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")  # family, version, res_id (big-endian value)
_NLA = struct.Struct("=HH")


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    """The addresses of one logged packet."""

    src: str
    dst: str
    indev: int


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _NLA.pack(_NLA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _config(group: int, seq: int, *attrs: bytes) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(group)) + b"".join(attrs)
    return _NLMSG.pack(_NLMSG.size + len(body), _MSG_CONFIG, _NLM_F_REQUEST | _NLM_F_ACK,
                       seq, 0) + body


def _addresses(payload: bytes) -> tuple[str, str] | None:
    if len(payload) >= 20 and payload[0] >> 4 == 4:
        return (str(ipaddress.IPv4Address(payload[12:16])),
                str(ipaddress.IPv4Address(payload[16:20])))
    if len(payload) >= 40 and payload[0] >> 4 == 6:
        return (str(ipaddress.IPv6Address(payload[8:24])),
                str(ipaddress.IPv6Address(payload[24:40])))
    return None


def parse_messages(buf: bytes) -> tuple[list[LoggedPacket], list[int]]:
    """Parse a netlink read: logged packets and error codes of ACK/error replies."""
    packets: list[LoggedPacket] = []
    errors: list[int] = []
    pos = 0
    while pos + _NLMSG.size <= len(buf):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(buf, pos)
        if length < _NLMSG.size or pos + length > len(buf):
            break
        body = buf[pos + _NLMSG.size: pos + length]
        pos += (length + 3) & ~3
        if kind == _NLMSG_ERROR and len(body) >= 4:
            errors.append(-struct.unpack_from("=i", body)[0])
            continue
        if kind != _MSG_PACKET or len(body) < _NFGEN.size:
            continue
        apos, indev, payload = _NFGEN.size, 0, b""
        while apos + _NLA.size <= len(body):
            alen, akind = _NLA.unpack_from(body, apos)
            if alen < _NLA.size:
                break
            value = body[apos + _NLA.size: apos + alen]
            akind &= 0x3FFF
            if akind == _ATTR_INDEV and len(value) >= 4:
                indev = struct.unpack("!I", value[:4])[0]
            elif akind == _ATTR_PAYLOAD:
                payload = value
            apos += (alen + 3) & ~3
        addrs = _addresses(payload)
        if addrs:
            packets.append(LoggedPacket(addrs[0], addrs[1], indev))
    return packets, errors


class NflogSocket:
    """A netlink socket bound to one NFLOG group (in the current network namespace)."""

    def __init__(self, group: int, copy_range: int = 64) -> None:
        self.group = group
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, 0))
            self._request(_config(group, 1, _attr(_CFG_CMD, bytes([_CMD_BIND]))))
            mode = struct.pack("!IBB", copy_range, _COPY_PACKET, 0)
            self._request(_config(group, 2, _attr(_CFG_MODE, mode)))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def _request(self, msg: bytes) -> None:
        self.sock.sendto(msg, (0, 0))
        _packets, errors = parse_messages(self.sock.recv(65536))
        if errors and errors[0]:
            raise OSError(errors[0], f"NFLOG group {self.group}: {os.strerror(errors[0])}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[LoggedPacket]:
        """Everything queued now (empty list when nothing is)."""
        out: list[LoggedPacket] = []
        while True:
            try:
                buf = self.sock.recv(65536)
            except BlockingIOError:
                return out
            except OSError:  # ENOBUFS: the kernel dropped some; keep going
                return out
            out.extend(parse_messages(buf)[0])

    def close(self) -> None:
        self.sock.close()
