"""edgesec's RADIUS server: asyncio UDP, answers hostapd's MAC-ACL Access-Requests.

Owns the network side of admission: which clients may ask (``clientIP/clientMask``
and the shared secret), BlastRADIUS protection (Message-Authenticator required on
requests, always sent on replies), duplicate detection with a reply cache, and
the translation of the registry's :class:`Admission` into Accept/Reject with the
VLAN tunnel attributes and a salt-encrypted Tunnel-Password.  The decision itself
is the registry's (``admit(mac, passphrase)``); this module holds no policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from edgesec.access import radius_codec as rc
from edgesec.access.newdevices import NewDeviceLimiter
from edgesec.supervisor.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.registry import Admission, Registry

log = logging.getLogger(__name__)
audit_log = logging.getLogger("edgesec.audit.radius")  # decisions: shown at every verbosity

# Every decision is an INFO line (the audit trail); a flood of requests is bounded
# to this many lines a window, the rest counted in one summary line.
DECISION_BURST = 200
DECISION_WINDOW_S = 10.0
BAD_SECRET_WINDOW_S = 60.0  # one "bad shared secret?" warning per window

READ_BATCH = 64  # datagrams handled per wake-up of the event loop

DUPLICATE_TTL = 30.0  # seconds a reply is kept for retransmissions (RFC 5080 §2.2.2)
DUPLICATE_MAX = 8192  # cached replies at most; the oldest are evicted first


class Admitting(Protocol):
    """What the server needs from the registry (an ``is_known(mac) -> bool`` method,
    if present, lets newly seen MACs be told apart for ``newDeviceRate``)."""

    def admit(self, mac: str, passphrase: str | None = None) -> Admission: ...


@dataclass(slots=True)
class RadiusCounters:
    """Per-server counters (RFC 2619 in spirit), shown by ``status()``."""

    requests: int = 0
    accepts: int = 0
    rejects: int = 0
    duplicates: int = 0
    malformed: int = 0
    unknown_client: int = 0
    bad_authenticator: int = 0
    missing_authenticator: int = 0
    unknown_code: int = 0
    policy_errors: int = 0
    rate_limited: int = 0  # unknown devices rejected by [radius] newDeviceRate

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class RadiusConfig:
    """Everything the server needs, independent of the INI layout."""

    secret: bytes
    server_ip: str = "127.0.0.1"
    port: int = 1812
    clients: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network("127.0.0.1/32"))
    require_message_authenticator: bool = True
    new_device_rate: int = 0  # admissions of unknown devices per minute; 0 = no limit
    new_device_burst: int = 10

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("[radius] secret must not be empty: RADIUS needs a shared secret")


class RadiusServer:
    """The request handler (decode, check, admit, reply); one per bound socket."""

    def __init__(self, config: RadiusConfig, policy: Admitting,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.policy = policy
        self.counters = RadiusCounters()
        self._clock = clock
        self._secret = config.secret
        self._net = int(config.clients.network_address)
        self._mask = int(config.clients.netmask)
        self._client_ok: dict[str, bool] = {}
        self._cache: dict[tuple[Any, int, bytes], tuple[float, bytes]] = {}
        self._order: deque[tuple[float, tuple[Any, int, bytes]]] = deque()
        self.new_devices = NewDeviceLimiter(config.new_device_rate, config.new_device_burst,
                                            clock)
        self._is_known: Callable[[str], bool] | None = getattr(policy, "is_known", None)
        # Accepts and rejects are logged (the audit trail), but a flood of them
        # cannot fill the log.
        self.decisions = RateLimitedLog(audit_log, "RADIUS decisions", logging.INFO,
                                        DECISION_BURST, DECISION_WINDOW_S, clock)
        # A flood of unknown MACs is expected to hit the new-device limit: a few
        # lines a window and a count, not one audit line per refused stranger.
        self.rate_limited_log = RateLimitedLog(audit_log, "new devices over newDeviceRate",
                                               logging.INFO, 10, DECISION_WINDOW_S, clock)
        self.bad_secret = RateLimitedLog(log, "requests with a bad Message-Authenticator",
                                         logging.WARNING, 1, BAD_SECRET_WINDOW_S, clock)

    # -- the request path ----------------------------------------------------------
    def client_allowed(self, ip: str) -> bool:
        ok = self._client_ok.get(ip)
        if ok is None:
            try:
                ok = (int(ipaddress.IPv4Address(ip)) & self._mask) == self._net
            except ValueError:
                ok = False
            if len(self._client_ok) > 4096:
                self._client_ok.clear()
            self._client_ok[ip] = ok
        return ok

    def handle(self, data: bytes, addr: Any) -> bytes | None:
        """Process one datagram; return the reply bytes or None to stay silent."""
        c = self.counters
        if not self.client_allowed(addr[0]):
            c.unknown_client += 1
            return None
        try:
            req = rc.decode(data)
        except rc.RadiusError as exc:
            c.malformed += 1
            log.debug("radius: malformed packet from %s: %s", addr, exc)
            return None
        if req.code != rc.ACCESS_REQUEST:
            c.unknown_code += 1
            return None
        c.requests += 1
        key = (addr, req.ident, req.authenticator)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            c.duplicates += 1
            return cached[1]
        if req.ma_offset < 0:
            c.missing_authenticator += 1
            if self.config.require_message_authenticator:
                log.debug("radius: Access-Request from %s without Message-Authenticator dropped",
                          addr)
                return None
            log.warning("radius: Access-Request from %s without Message-Authenticator "
                        "(accepted because requireMessageAuthenticator=false)", addr)
        elif not rc.verify_request_ma(req, self._secret):
            c.bad_authenticator += 1
            self.bad_secret.log("radius: bad shared secret from %s? (the Message-Authenticator "
                                "of its Access-Request does not verify; dropped)", _client(addr))
            return None
        reply = self._decide(req, addr)
        self._remember(key, now, reply)
        return reply

    def _remember(self, key: tuple[Any, int, bytes], now: float, reply: bytes) -> None:
        """Cache a reply.  Keys are queued in expiry order, so expired entries are
        dropped from the front in amortised O(1), and the oldest when full."""
        cache, order = self._cache, self._order
        while order and (order[0][0] <= now or len(cache) >= DUPLICATE_MAX):
            _, old = order.popleft()
            cache.pop(old, None)
        expiry = now + DUPLICATE_TTL
        cache[key] = (expiry, reply)
        order.append((expiry, key))

    def _decide(self, req: rc.Request, addr: Any = None) -> bytes:
        secret = self._secret
        c = self.counters
        mac, passphrase, why = self._identify(req)
        if mac is None:
            c.rejects += 1
            self._log_reject(None, why, addr)
            return rc.encode_reply(rc.ACCESS_REJECT, req, secret)
        limiter = self.new_devices
        new = limiter.enabled and self._is_known is not None and not self._is_known(mac)
        if new and not limiter.available():
            c.rate_limited += 1
            c.rejects += 1
            self.rate_limited_log.log(
                "radius: reject %s (new devices over newDeviceRate; %d rate-limited so far) "
                "from %s", mac, c.rate_limited, _client(addr),
                extra={"audit": {"event": "radius-reject", "mac": mac,
                                 "reason": "newDeviceRate", "client": _client(addr)}})
            return rc.encode_reply(rc.ACCESS_REJECT, req, secret)
        try:
            adm = self.policy.admit(mac, passphrase)
        except Exception as exc:  # the registry refused or failed: never crash, never accept
            c.policy_errors += 1
            c.rejects += 1
            if isinstance(exc, (ValueError, sqlite3.OperationalError)):  # pool full, disk full
                log.warning("radius: admission of %s failed: %s", mac, exc)
            else:
                log.exception("radius: admission of %s failed", mac)
            return rc.encode_reply(rc.ACCESS_REJECT, req, secret)
        if not adm.accept or not 0 <= adm.vlan <= 4094:
            c.rejects += 1
            self._log_reject(mac, adm.reason or "refused", addr)
            return rc.encode_reply(rc.ACCESS_REJECT, req, secret)
        if new:
            limiter.take()
        attrs = rc.vlan_attributes(adm.vlan)
        psk = adm.psk.encode()  # the registry's answer (a device's own, a ticket's or the AP's)
        if psk:
            attrs += rc.tunnel_password_attribute(psk, secret, req.authenticator)
        c.accepts += 1
        # the hot path: no work for a line that is not logged (level off, burst used up)
        if audit_log.isEnabledFor(logging.INFO) and not self.decisions.saturated():
            self._log_accept(mac, adm, addr)
        return rc.encode_reply(rc.ACCESS_ACCEPT, req, secret, attrs)

    def _log_reject(self, mac: str | None, reason: str, addr: Any) -> None:
        if self.decisions.saturated():  # a flood: counted, nothing built
            return
        client = _client(addr)
        fields: dict[str, Any] = {"event": "radius-reject", "reason": reason, "client": client}
        if mac is None:
            self.decisions.log("radius: reject (%s) from %s", reason, client,
                               extra={"audit": fields})
        else:
            fields["mac"] = mac
            self.decisions.log("radius: reject %s (%s) from %s", mac, reason, client,
                               extra={"audit": fields})

    def _log_accept(self, mac: str, adm: Admission, addr: Any) -> None:
        how = adm.reason or "admitted"
        self.decisions.log("radius: accept %s vlan %d (%s) from %s", mac, adm.vlan, how,
                           _client(addr),
                           extra={"audit": {"event": "radius-accept", "mac": mac,
                                            "vlan": adm.vlan, "how": how,
                                            "client": _client(addr)}})

    def _identify(self, req: rc.Request) -> tuple[str | None, str | None, str]:
        """(mac, passphrase or None, reason) from the request's attributes.

        The MAC comes from Calling-Station-Id, else User-Name; if both name a MAC
        they must agree.  A User-Password equal to the MAC (hostapd's MAC-ACL
        request) means "no passphrase"; anything else is passed on as a
        passphrase (tickets).
        """
        station = req.get(rc.CALLING_STATION_ID)
        user = req.get(rc.USER_NAME)
        if user is None:
            return None, None, "no User-Name"
        mac_station = rc.parse_mac(station) if station is not None else None
        mac_user = rc.parse_mac(user)
        if mac_station and mac_user and mac_station != mac_user:
            return None, None, f"User-Name {mac_user} differs from Calling-Station-Id"
        mac = mac_station or mac_user
        if mac is None:
            return None, None, "no MAC in Calling-Station-Id or User-Name"
        pw = req.get(rc.USER_PASSWORD)
        if pw is None:
            return None, None, f"{mac}: no User-Password"
        try:
            plain = rc.decrypt_user_password(pw, self._secret, req.authenticator)
        except rc.RadiusError as exc:
            return None, None, f"{mac}: {exc}"
        if rc.parse_mac(plain) == mac:
            return mac, None, ""
        try:
            return mac, plain.decode("utf-8"), ""
        except UnicodeDecodeError:
            return None, None, f"{mac}: User-Password is not text"


class RadiusService:
    """Service wrapper (start/stop/status) around one bound :class:`RadiusServer`."""

    name = "radius"

    def __init__(self, config: RadiusConfig, policy: Admitting) -> None:
        self.config = config
        self.protocol = RadiusServer(config, policy)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = config.port

    async def start(self) -> None:
        # A plain non-blocking socket drained by add_reader (up to READ_BATCH
        # datagrams per wake-up, replies sent directly): asyncio's datagram
        # transport costs a callback and a buffer check per packet.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((self.config.server_ip, self.config.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable, sock)
        self._sock = sock
        self.port = sock.getsockname()[1]
        log.info("radius: listening on %s:%d for clients %s", self.config.server_ip,
                 self.port, self.config.clients)

    def _readable(self, sock: socket.socket) -> None:
        handle = self.protocol.handle
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(rc.MAX_PACKET + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors reported on the socket
                log.debug("radius socket error: %s", exc)
                continue
            reply = handle(data, addr)
            if reply is not None:
                try:
                    sock.sendto(reply, addr)
                except OSError as exc:
                    log.debug("radius: reply to %s not sent: %s", addr, exc)

    async def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def counters(self) -> dict[str, float]:
        """Requests, accepts, rejects and drops by reason (for metrics)."""
        c = self.protocol.counters.as_dict()
        out: dict[str, float] = {k: c.pop(k) for k in ("requests", "accepts", "rejects")}
        out.update({f"dropped|reason={k}": v for k, v in c.items()})
        return out

    def status(self) -> str:
        if self._sock is None:
            return "stopped"
        c = self.protocol.counters
        return (f"listening {self.config.server_ip}:{self.port} requests {c.requests} "
                f"accepts {c.accepts} rejects {c.rejects} dropped "
                f"{c.malformed + c.unknown_client + c.bad_authenticator} "
                f"rate-limited {c.rate_limited}")


def _client(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def radius_config_from_settings(settings: Settings) -> RadiusConfig:
    """Map ``[radius]`` to :class:`RadiusConfig`."""
    r = settings.radius
    clients = ipaddress.IPv4Network(f"{r.client_ip}/{r.client_mask}", strict=False)
    return RadiusConfig(
        secret=r.secret.encode(),
        server_ip=r.server_ip or "127.0.0.1",
        port=r.port,
        clients=clients,
        require_message_authenticator=r.require_message_authenticator,
        new_device_rate=r.new_device_rate,
        new_device_burst=r.new_device_burst,
    )


def build_radius_service(settings: Settings, registry: Registry) -> RadiusService:
    """Factory for the gateway: the RADIUS service answering from ``registry``.

    With ``[radius] secretInVault = true`` (or ``[crypt] radiusSecretInVault``)
    the shared secret is read from the vault entry ``edgesec/radius/secret``
    instead of the config file.
    """
    from edgesec.crypt.service import radius_secret  # the config's secret unless switched

    config = dataclasses.replace(
        radius_config_from_settings(settings),
        secret=radius_secret(settings, registry.vault))
    return RadiusService(config, registry)
