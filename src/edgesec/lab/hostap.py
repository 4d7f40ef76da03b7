"""The lab's stand-in for hostapd: MAC-authentication Access-Requests.

Owns: asking edgesec's RADIUS server about a device exactly as hostapd does
with ``macaddr_acl=2`` (User-Name and User-Password = the MAC as 12 lowercase
hex digits, Calling-Station-Id ``AA-BB-CC-DD-EE-FF``, Called-Station-Id,
NAS-Port-Type 802.11, a Message-Authenticator), checking the reply's Response
Authenticator and Message-Authenticator, and reading the VLAN and the
Tunnel-Password from an Accept.  The UDP socket is opened inside the gateway's
network namespace (the server listens on the gateway's loopback), from a
short-lived thread that enters the namespace, so the caller's own namespace
never changes.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
import secrets
import socket
import struct
import threading
from dataclasses import dataclass

from edgesec.access import radius_codec as rc

CLONE_NEWNET = 0x40000000
CALLED_STATION_ID = 30
NAS_IDENTIFIER = 32
NAS_PORT_TYPE = 61
NAS_PORT_TYPE_80211 = 19
CONNECT_INFO = 77
AP_MAC = "02-00-00-00-00-01"


class JoinError(RuntimeError):
    """No valid answer from the RADIUS server."""


@dataclass(frozen=True)
class Verdict:
    """What the RADIUS server decided for one MAC."""

    accept: bool
    vlan: int | None = None
    psk: str = ""


def socket_in_netns(
    ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM
) -> socket.socket:
    """A socket created inside network namespace ``ns`` (``/run/netns/<ns>``)."""
    opened: list[socket.socket] = []
    failed: list[Exception] = []

    def enter_and_open() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            opened.append(socket.socket(family, kind))
        except Exception as exc:
            failed.append(exc)

    worker = threading.Thread(target=enter_and_open, name=f"netns-{ns}")
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return opened[0]


def access_request(
    mac: str, secret: bytes, ident: int, authenticator: bytes | None = None, *,
    password: str | None = None,
) -> tuple[bytes, bytes]:
    """hostapd's MAC-ACL Access-Request for ``mac``; returns (packet, authenticator).

    Its User-Password is the MAC, as hostapd sends, unless ``password`` is given.
    """
    auth = authenticator or secrets.token_bytes(16)
    plain = mac.replace(":", "").lower()
    pw = (password or plain).encode()
    attrs = [
        (rc.USER_NAME, plain.encode()),
        (rc.USER_PASSWORD, rc.encrypt_user_password(pw, secret, auth)),
        (rc.CALLING_STATION_ID, mac.replace(":", "-").upper().encode()),
        (CALLED_STATION_ID, f"{AP_MAC}:edgesec-lab".encode()),
        (NAS_IDENTIFIER, b"edgesec-lab"),
        (NAS_PORT_TYPE, struct.pack("!I", NAS_PORT_TYPE_80211)),
        (CONNECT_INFO, b"CONNECT 54Mbps 802.11g"),
    ]
    return rc.encode_request(ident, auth, secret, attrs, with_ma=True), auth


def parse_reply(data: bytes, ident: int, authenticator: bytes, secret: bytes) -> Verdict:
    """Check a reply's authenticators and read the verdict (hostapd's checks).

    Raises :class:`JoinError` for anything that is not a valid answer.
    """
    try:
        return _parse_reply(data, ident, authenticator, secret)
    except (rc.RadiusError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise JoinError(f"unusable RADIUS reply: {exc}") from None


def _parse_reply(data: bytes, ident: int, authenticator: bytes, secret: bytes) -> Verdict:
    reply = rc.decode(data)
    if reply.ident != ident:
        raise JoinError(f"reply id {reply.ident} does not answer request {ident}")
    raw = reply.raw
    expected = hashlib.md5(raw[:4] + authenticator + raw[20:] + secret).digest()
    if not hmac.compare_digest(expected, reply.authenticator):
        raise JoinError("bad Response Authenticator")
    off = reply.ma_offset
    if off < 0:
        raise JoinError("reply without Message-Authenticator")
    zeroed = raw[:4] + authenticator + raw[20:off] + bytes(16) + raw[off + 16 :]
    if not hmac.compare_digest(hmac.digest(secret, zeroed, "md5"), raw[off : off + 16]):
        raise JoinError("bad Message-Authenticator in reply")
    if reply.code == rc.ACCESS_REJECT:
        return Verdict(False)
    if reply.code != rc.ACCESS_ACCEPT:
        raise JoinError(f"unexpected RADIUS code {reply.code}")
    group = reply.get(rc.TUNNEL_PRIVATE_GROUP_ID)
    vlan = None
    if group is not None:
        if group and group[0] < 0x20:  # optional tag octet (RFC 2868 §3.6)
            group = group[1:]
        vlan = int(group.decode("ascii"))
    psk = ""
    pw = reply.get(rc.TUNNEL_PASSWORD)
    if pw is not None and len(pw) > 1:
        psk = rc.salt_decrypt(pw[1:], secret, authenticator).decode("utf-8", "replace")
    return Verdict(True, vlan, psk)


class HostapdClient:
    """One UDP socket in the gateway namespace asking the RADIUS server about MACs."""

    def __init__(
        self,
        ns: str,
        secret: str,
        server: tuple[str, int] = ("127.0.0.1", 1812),
        timeout: float = 1.0,
        retries: int = 3,
    ) -> None:
        self.secret = secret.encode()
        self.server = server
        self.timeout = timeout
        self.retries = retries
        self.sock = socket_in_netns(ns)
        self.sock.settimeout(timeout)
        self._ident = secrets.randbelow(256)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HostapdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def authorize(self, mac: str) -> Verdict:
        """The server's verdict for ``mac`` (retransmitting like hostapd on silence)."""
        with self._lock:
            self._ident = (self._ident + 1) % 256
            ident = self._ident
            packet, auth = access_request(mac, self.secret, ident)
            for _ in range(self.retries):
                self.sock.sendto(packet, self.server)
                try:
                    while True:
                        data = self.sock.recv(4096)
                        try:
                            return parse_reply(data, ident, auth, self.secret)
                        except JoinError:
                            continue  # a late answer to an earlier request: keep waiting
                except TimeoutError:
                    continue
        raise JoinError(f"no answer from RADIUS {self.server[0]}:{self.server[1]} for {mac}")
