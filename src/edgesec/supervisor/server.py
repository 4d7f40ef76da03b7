"""The supervisor's sockets: a UNIX datagram socket and a UDP socket, plus event fan-out.

Safer than the original (docs/supervisor.md): UDP is served only with a
shared key (every request authenticated: HMAC + timestamp + nonce against
replay), or as plain text on loopback after an explicit opt-in
(``allowUnauthenticatedUdp``); otherwise it stays off and the UNIX socket
(mode 0660) is the only way in.  The UDP port is bound exclusively (no
``SO_REUSEADDR``), so no other local user can bind it beside us, and a port
someone else holds is a refusal to start.  Every malformed datagram is
answered ``FAIL`` with a rate-limited log line; event subscribers that go
away are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from edgesec.events import Event, EventBus
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.audit import (
    CMSG_CREDS_SPACE,
    POLICY_COMMANDS,
    Audit,
    Peer,
    unix_credentials,
)
from edgesec.supervisor.commands import Address, Channel, CommandTable, Request
from edgesec.supervisor.ratelog import RateLimitedLog
from edgesec.supervisor.reader import ReaderThread

log = logging.getLogger(__name__)

MAX_SUBSCRIBERS = 64
MAX_SEND_FAILURES = 3
READ_BATCH = 64  # datagrams handled per wake-up before other tasks run
RECV_SIZE = proto.MAX_DATAGRAM + 1  # one byte more than allowed: oversize is detected


class ConfigurationError(RuntimeError):
    """The supervisor cannot start as configured."""


def bind_udp_exclusive(address: str, port: int) -> socket.socket:
    """A UDP socket bound to ``address:port`` that nobody can bind beside it.

    Without ``SO_REUSEADDR``/``SO_REUSEPORT`` the kernel refuses any other
    socket on the same port that overlaps our address (the same address or
    the wildcard), whoever owns it; and a port already held by someone else
    is refused to us, which we report instead of sharing it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"[supervisor] UDP {address}:{port} is already bound by another process "
                f"(see: ss -ulpn 'sport = :{port}'); refusing to share the control port. "
                "Stop that process or choose another supervisorControlPort") from None
        raise ConfigurationError(f"[supervisor] cannot bind UDP {address}:{port}: "
                                 f"{exc.strerror or exc}") from None
    return sock


class _Endpoint:
    """One listening socket, read from the event loop with ``add_reader``.

    Not asyncio's datagram transport: for one-datagram request/reply that
    measured 2.5-3x slower (bench/supervisor.py; a 256 KiB buffer allocated
    per read and a loop iteration per datagram).  Here each wake-up drains up
    to ``READ_BATCH`` datagrams and replies with a direct ``sendto``; a reply
    that cannot be sent at once (the client's queue is full, it went away)
    is dropped and the client times out, as with any lost datagram.
    """

    def __init__(self, server: SupervisorServer, channel: Channel, sock: socket.socket) -> None:
        self.server = server
        self.channel = channel
        self.sock = sock
        # UNIX senders' pid/uid/gid arrive with each datagram (the audit trail's source).
        self.creds = channel == "unix"
        self.reader: ReaderThread | None = None
        if self.creds:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def on_readable(self) -> None:
        """Drain up to ``READ_BATCH`` datagrams (``add_reader`` callback)."""
        sock = self.sock
        for _ in range(READ_BATCH):
            anc = None
            try:
                if self.creds:
                    # The kernel attaches credentials when a datagram is *sent* to a
                    # SO_PASSCRED socket, so they cannot be skipped per command; they
                    # are only decoded for a policy-changing one (Peer, audit trail).
                    data, anc, _flags, addr = sock.recvmsg(RECV_SIZE, CMSG_CREDS_SPACE)
                else:
                    data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("%s socket error: %s", self.channel, exc)
                return
            self.answer(data, anc, addr)

    def answer(self, data: bytes, anc: list[tuple[int, int, bytes]] | None, addr: Any) -> None:
        """Reply to one datagram, in the loop.  Constant replies (PING_SUPERVISOR) skip
        parsing and dispatch and are counted like any request; not on authenticated
        UDP (framed)."""
        server = self.server
        constant = server.table.constants.get(data) if self.channel != "udp-auth" else None
        reply: bytes | None
        if constant is not None:
            reply, key = constant
            server.table.results[key] += 1
        else:
            try:
                reply = server.handle(data, addr, self.channel, ancdata=anc)
            except Exception:  # handle() never raises; this is the last line of defence
                log.exception("%s: request from %s failed", self.channel, addr)
                reply = proto.FAIL.encode()
        if reply is not None and addr:
            try:
                # never blocks: the UNIX socket is in blocking mode for its reader thread
                self.sock.sendto(reply, socket.MSG_DONTWAIT, addr)
            except OSError as exc:
                log.debug("%s: reply to %s dropped: %s", self.channel, addr, exc)


class SupervisorServer:
    """Serves a :class:`CommandTable` on the configured sockets."""

    name = "supervisor"

    def __init__(self, table: CommandTable, bus: EventBus, unix_path: Path | None,
                 udp_address: str = "127.0.0.1", udp_port: int = 0, key: bytes = b"",
                 allow_plain_udp: bool = False) -> None:
        self.table = table
        self.bus = bus
        self.unix_path = unix_path
        self.udp_address = udp_address
        self.key = key
        loopback = ipaddress.ip_address(udp_address).is_loopback
        # A configured key authenticates UDP everywhere; off loopback it is required.
        self.udp_authenticated = bool(key) or not loopback
        if not loopback and udp_port and not key:
            raise ConfigurationError(
                f"[supervisor] the UDP socket would listen on {udp_address}, which is not "
                "loopback: set supervisorControlKey (or supervisorControlKeyFile) so that "
                "requests are authenticated, or bind 127.0.0.1")
        # Plain loopback UDP makes every local user an administrator: only on request.
        self.udp_off_reason = ""
        if udp_port and not key and not allow_plain_udp:
            self.udp_off_reason = "no key"
            udp_port = 0
        self.udp_port = udp_port
        self.subscribers: collections.OrderedDict[tuple[Channel, Address], int] = \
            collections.OrderedDict()
        self.bad = RateLimitedLog(log, "malformed datagrams")
        self.malformed = 0
        self._seen_nonces: dict[str, float] = {}
        self._endpoints: list[_Endpoint] = []
        self._unsubscribe = bus.subscribe(self._on_event)
        self.audit = Audit(bus)
        self.bound_udp: tuple[str, int] | None = None
        table.register("SUBSCRIBE_EVENTS", self._subscribe, (0,))
        table.register("UNSUBSCRIBE_EVENTS", self._unsubscribe_peer, (0,))

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # UDP first: a port held by someone else refuses the start before anything exists.
        udp = bind_udp_exclusive(self.udp_address, self.udp_port) if self.udp_port else None
        if self.unix_path is not None:
            path = self.unix_path
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                path.unlink()  # a stale socket: the gateway holds the state lock
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            old = os.umask(0o117)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
            os.chmod(path, 0o660)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
            await self._serve(loop, sock, "unix")
        if udp is not None:
            self.bound_udp = udp.getsockname()
            await self._serve(loop, udp, "udp-auth" if self.udp_authenticated else "udp")
        elif self.udp_off_reason:
            log.warning("[supervisor] UDP control is off: no supervisorControlKey is set. "
                        "Set a key (authenticated UDP) or allowUnauthenticatedUdp = true "
                        "(any local user could then control the gateway); the UNIX socket "
                        "%s is unaffected", self.unix_path)
        log.info("supervisor listening on %s and udp %s", self.unix_path, self.bound_udp)

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                     channel: Channel) -> None:
        endpoint = _Endpoint(self, channel, sock)
        if channel == "unix":  # its own reader thread (supervisor/reader.py)
            endpoint.reader = ReaderThread(sock, RECV_SIZE, self.table.constants,
                                           endpoint.answer, loop)
            endpoint.reader.start()
        else:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), endpoint.on_readable)
        self._endpoints.append(endpoint)

    async def stop(self) -> None:
        self._unsubscribe()
        loop = asyncio.get_running_loop()
        for endpoint in self._endpoints:
            if endpoint.reader is not None:
                endpoint.reader.stop()
                self.table.results.update(endpoint.reader.counts)  # the thread has ended
            else:
                loop.remove_reader(endpoint.sock.fileno())
            endpoint.sock.close()
        self._endpoints.clear()
        if self.unix_path is not None and self.unix_path.exists():
            self.unix_path.unlink()

    def counters(self) -> dict[str, float]:
        """Requests by command and result, and malformed datagrams (for metrics)."""
        out: dict[str, float] = {"malformed_requests": self.malformed}
        results = collections.Counter(self.table.results)
        for endpoint in self._endpoints:
            if endpoint.reader is not None:
                # dict(): one C-level copy (the thread may add a key meanwhile)
                results.update(dict(endpoint.reader.counts))
        for (command, result), n in results.items():
            out[f"requests|command={command}|result={result}"] = n
        return out

    def status(self) -> str:
        udp = f"off ({self.udp_off_reason})" if self.udp_off_reason else self.bound_udp
        return (f"listening unix={self.unix_path} udp={udp} "
                f"subscribers={len(self.subscribers)} malformed={self.malformed}")

    # -- requests ----------------------------------------------------------------
    def handle(self, data: bytes, addr: Any, channel: Channel,
               creds: tuple[int, int, int] | None = None,
               ancdata: list[tuple[int, int, bytes]] | None = None) -> bytes | None:
        """The reply to one request datagram (None: no reply).  The sender's
        credentials come decoded (``creds``) or as ``recvmsg`` ancillary data,
        decoded only for a policy-changing command."""
        nonce = ""
        if channel == "udp-auth":
            try:
                text, nonce, ts = proto.verify_request(self.key, data)
                self._check_replay(nonce, ts)
            except proto.ProtocolError as exc:
                self.malformed += 1
                self.bad.log("unauthenticated UDP datagram from %s: %s", addr, exc)
                return None  # no oracle for attackers
            data = text.encode()
        try:
            command = proto.parse_command(data)
        except proto.ProtocolError as exc:
            self.malformed += 1
            self.bad.log("malformed command from %s: %s", addr or "unbound client", exc)
            reply = proto.FAIL
        else:
            reply = self.table.dispatch(Request(command.name, command.args, channel,
                                                (channel, addr)))
            if command.name in POLICY_COMMANDS:
                if creds is None and ancdata:
                    creds = unix_credentials(ancdata)
                self.audit.record(command.name, command.args,
                                  Peer(channel, addr, *(creds or (None, None, None))), reply)
        if channel == "udp-auth":
            return proto.sign_reply(self.key, nonce, reply)
        return reply.encode()

    def _check_replay(self, nonce: str, ts: int) -> None:
        now = time.time()
        if len(self._seen_nonces) > 10_000:
            cutoff = now - 2 * proto.AUTH_WINDOW_S
            self._seen_nonces = {n: t for n, t in self._seen_nonces.items() if t > cutoff}
        if nonce in self._seen_nonces:
            raise proto.ProtocolError("replayed nonce")
        self._seen_nonces[nonce] = now

    # -- events ------------------------------------------------------------------
    def _subscribe(self, q: Request) -> str:
        channel, addr = q.peer if q.peer is not None else (q.channel, None)
        if not addr:
            return proto.FAIL  # an unbound UNIX client cannot receive events
        key = (channel, addr)
        self.subscribers[key] = 0
        self.subscribers.move_to_end(key)
        while len(self.subscribers) > MAX_SUBSCRIBERS:
            dropped, _ = self.subscribers.popitem(last=False)
            log.warning("too many event subscribers: dropped the oldest %s", dropped)
        return proto.OK

    def _unsubscribe_peer(self, q: Request) -> str:
        channel, addr = q.peer if q.peer is not None else (q.channel, None)
        if addr:
            self.subscribers.pop((channel, addr), None)
        return proto.OK

    def _on_event(self, event: Event) -> None:
        text = proto.event_line(event)
        if text is None or not self.subscribers:
            return
        self.broadcast(text.encode())

    def broadcast(self, payload: bytes) -> None:
        socks = {ep.channel: ep.sock for ep in self._endpoints if ep.sock is not None}
        for key in list(self.subscribers):
            channel, addr = key
            sock = socks.get(channel)
            if sock is None:
                continue
            try:
                sock.sendto(payload, socket.MSG_DONTWAIT, addr)
                self.subscribers[key] = 0
            except (BlockingIOError, InterruptedError):
                pass  # a slow subscriber misses one event; it is not dropped for that
            except OSError as exc:
                failures = self.subscribers.get(key, 0) + 1
                if failures >= MAX_SEND_FAILURES or isinstance(
                        exc, (FileNotFoundError, ConnectionRefusedError)):
                    log.info("event subscriber %s went away (%s): dropped", addr, exc)
                    self.subscribers.pop(key, None)
                else:
                    self.subscribers[key] = failures
