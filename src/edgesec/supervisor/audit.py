"""The audit trail of policy changes made over the supervisor sockets.

Owns three things: who sent a request (:class:`Peer`: the UNIX sender's
pid/uid/gid from ``SCM_CREDENTIALS``, or the UDP address), which commands
change policy (:data:`POLICY_COMMANDS`), and what is recorded for each one
answered: an INFO line ``audit: ACCEPT_MAC 11:22:33:44:55:66 3 by unix pid=1
uid=0 gid=0: OK`` (structured fields on the record for ``--log-format
json``) and, when it succeeded, a timestamped ``policy`` event for
``SUBSCRIBE_EVENTS`` subscribers.  Secret arguments (a PSK) are never
recorded.  Lines are bounded like every log a peer can trigger: a burst of
:data:`AUDIT_BURST` a window, the rest counted in one summary line.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgesec.events import Event, EventBus
from edgesec.supervisor.ratelog import RateLimitedLog

log = logging.getLogger("edgesec.audit")

# Commands that change who may join, where, with which key or to whom they may talk.
# A part adding such a command adds its name here.
POLICY_COMMANDS: set[str] = {
    "ACCEPT_MAC", "DENY_MAC", "ADD_NAT", "REMOVE_NAT", "ASSIGN_PSK", "CLEAR_PSK",
    "ADD_BRIDGE", "REMOVE_BRIDGE", "CLEAR_BRIDGE", "REGISTER_TICKET", "SET_IP",
    "REMOVE_DEVICE", "ADD_GROUP_MEMBER", "REMOVE_GROUP_MEMBER", "ADD_ACCESS", "REMOVE_ACCESS",
    "SET_LABEL",  # the management API's label change (no supervisor command)
    "QUARANTINE", "RELEASE",  # edgesec.detect: containment (docs/detect.md)
}
# Argument positions never logged (command -> indexes).
SECRET_ARGS: dict[str, tuple[int, ...]] = {"ASSIGN_PSK": (1,)}
# Commands whose own events already tell subscribers (SET_IP emits IP).
NO_EVENT = frozenset({"SET_IP"})

AUDIT_BURST = 200  # lines per window: far above what an operator types, bounds a loop
AUDIT_WINDOW_S = 10.0

_UCRED = struct.Struct("3i")
CMSG_CREDS_SPACE = socket.CMSG_SPACE(_UCRED.size)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who sent a request."""

    channel: str
    addr: Any = None
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None

    def describe(self) -> str:
        """For log lines: ``unix pid=12 uid=0 gid=0`` or ``udp 127.0.0.1:4000``."""
        if self.channel == "unix":
            if self.pid is None:
                return "unix (no credentials)"
            return f"unix pid={self.pid} uid={self.uid} gid={self.gid}"
        if isinstance(self.addr, tuple) and len(self.addr) >= 2:
            return f"{self.channel} {self.addr[0]}:{self.addr[1]}"
        return f"{self.channel} {self.addr}"

    def word(self) -> str:
        """One word for an event: ``unix:pid=12:uid=0`` or ``udp:127.0.0.1:4000``."""
        return self.describe().replace(" ", ":")

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channel": self.channel}
        if self.channel == "unix":
            out.update(peer_pid=self.pid, peer_uid=self.uid, peer_gid=self.gid)
        elif isinstance(self.addr, tuple):
            out["peer_addr"] = f"{self.addr[0]}:{self.addr[1]}"
        return out


def unix_credentials(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, int, int] | None:
    """(pid, uid, gid) from ``recvmsg`` ancillary data of a ``SO_PASSCRED`` socket."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS \
                and len(data) >= _UCRED.size:
            pid, uid, gid = _UCRED.unpack_from(data)
            return pid, uid, gid
    return None


def shown_args(name: str, args: tuple[str, ...]) -> list[str]:
    hidden = SECRET_ARGS.get(name, ())
    return ["<redacted>" if i in hidden else _printable(a[:80]) for i, a in enumerate(args)]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text)


class Audit:
    """Records each policy-changing request: a log line, and an event when it succeeded."""

    def __init__(self, bus: EventBus, clock: Any = time.time) -> None:
        self.bus = bus
        self.clock = clock
        self.lines = RateLimitedLog(log, "audit lines", logging.INFO, AUDIT_BURST,
                                    AUDIT_WINDOW_S)

    def record(self, name: str, args: tuple[str, ...], peer: Peer, reply: str) -> None:
        if name not in POLICY_COMMANDS:
            return
        ok = not reply.startswith("FAIL")
        shown = shown_args(name, args)
        outcome = "OK" if ok else "FAIL"
        mac = args[1] if name == "SET_IP" and len(args) > 1 else (args[0] if args else "")
        if name == "SET_IP":
            what = "lease"
        elif name == "REGISTER_TICKET":
            what = "ticket"  # the reply is the ticket's passphrase: never logged
        else:
            what = "policy change"
        fields = {"audit": {"event": what, "command": name, "args": shown, "result": outcome,
                            **peer.fields()}}
        self._emit("audit: %s %s by %s: %s", (name, " ".join(shown), peer.describe(), outcome),
                   fields)
        if ok and name not in NO_EVENT:
            self.bus.publish(Event("policy", mac.lower() if ":" in mac else "", {
                "ts": self.clock(), "command": name, "args": shown, "source": peer.word()}))

    def _emit(self, msg: str, args: tuple[Any, ...], extra: dict[str, Any]) -> None:
        self.lines.log(msg, *args, extra=extra)


def format_policy_event(data: Mapping[str, Any]) -> str:
    """``POLICY <unix-time> <source> <COMMAND> [ARGS...]`` (an extension event)."""
    args = " ".join(a.replace(" ", "_") or "-" for a in data.get("args", ()))
    return (f"POLICY {data['ts']:.3f} {data['source']} {data['command']}"
            + (f" {args}" if args else "") + "\n")
