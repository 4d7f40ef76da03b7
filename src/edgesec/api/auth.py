"""Who is asking, and with which scope: bearer tokens, dashboard sessions, UNIX peers.

* A bearer token (``Authorization: Bearer est_...``) carries its own scope.
* A dashboard session cookie (after logging in with a token) carries the
  token's scope; every state-changing request of a session must also send the
  session's CSRF token in ``X-CSRF-Token`` (a cookie alone is never enough).
* On the UNIX socket without a token, the peer's credentials (``SO_PEERCRED``)
  decide: root is admin, anyone else who could connect (the socket is mode
  0660, so its group) is operator.
"""

from __future__ import annotations

import hmac
import secrets
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

from edgesec.api.tokens import TokenStore, scope_allows
from edgesec.supervisor.audit import Peer

__all__ = ["Sessions", "TokenStore", "Who", "csrf_ok", "identify", "scope_allows",
           "security_headers"]

SESSION_COOKIE = "edgesec_session"
SESSION_LIFETIME_S = 12 * 3600
MAX_SESSIONS = 64
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass(frozen=True, slots=True)
class Who:
    scope: str
    via: str  # "token", "session" or "peer"
    name: str  # token id, or "uid <uid> pid <pid>" of the UNIX peer
    csrf: str = ""
    creds: tuple[int, int, int] | None = None  # (pid, uid, gid) of a UNIX peer

    def describe(self) -> str:
        return f"{self.via} {self.name} ({self.scope})"

    def peer(self) -> Peer:
        """The audit trail's source: the UNIX peer's credentials, or the token's id."""
        if self.creds is not None:
            pid, uid, gid = self.creds
            return Peer("unix", pid=pid, uid=uid, gid=gid)
        return Peer("api", addr=f"{self.via}={self.name}")


class Sessions:
    """Dashboard sessions: id -> (who, expiry); bounded, oldest evicted first."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, tuple[Who, float]] = OrderedDict()

    def open(self, scope: str, token_id: str) -> tuple[str, Who]:
        sid = secrets.token_urlsafe(24)
        who = Who(scope, "session", token_id, secrets.token_urlsafe(24))
        self._by_id[sid] = (who, time.monotonic() + SESSION_LIFETIME_S)
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return sid, who

    def get(self, sid: str) -> Who | None:
        entry = self._by_id.get(sid)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._by_id[sid]
            return None
        return entry[0]

    def close(self, sid: str) -> None:
        self._by_id.pop(sid, None)


def peer_credentials(request: web.Request) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of a UNIX-socket peer, None on TCP."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def identify(request: web.Request, tokens: TokenStore, sessions: Sessions) -> Who | None:
    header = request.headers.get("Authorization", "")
    if header:
        kind, _, value = header.partition(" ")
        record = tokens.verify(value.strip()) if kind.lower() == "bearer" else None
        return Who(record.scope, "token", record.id) if record else None
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        return sessions.get(sid)
    peer = peer_credentials(request)
    if peer is not None:
        pid, uid, _gid = peer
        return Who("admin" if uid == 0 else "operator", "peer", f"uid {uid} pid {pid}",
                   creds=peer)
    return None


def csrf_ok(request: web.Request, who: Who) -> bool:
    sent = request.headers.get("X-CSRF-Token", "")
    return bool(sent) and hmac.compare_digest(sent, who.csrf)


def security_headers(response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cache-Control", "no-store")
