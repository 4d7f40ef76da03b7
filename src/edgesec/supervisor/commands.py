"""Supervisor command handlers: argument checks, registry calls, reply text.

Each handler takes a :class:`Request` and returns the full reply.  A handler
returns only after the registry committed the change, so ``OK`` means durable.
Argument rules follow the original (cmd_processor.c) except that extra
arguments are refused instead of ignored.
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from edgesec.registry import Registry, RegistryError, normalise_mac
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

Channel = Literal["unix", "udp", "udp-auth"]
Address = str | tuple[str, int]  # where replies go: a UNIX socket path or (ip, port)


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    args: tuple[str, ...]
    channel: Channel = "unix"
    peer: tuple[Channel, Address | None] | None = None  # None: an unbound UNIX client


Handler = Callable[[Request], str]


class CommandError(ValueError):
    """Bad arguments; answered FAIL and logged."""


@dataclass(slots=True)
class _Entry:
    handler: Handler
    arity: tuple[int, ...] | None  # allowed argument counts, None = handler checks
    secret: bool = False


@dataclass
class CommandTable:
    """Name -> handler; extra families (crypt, mDNS) register themselves."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    # Refused requests are logged, but a client looping on a bad command
    # cannot flood the log.
    refusals: RateLimitedLog = field(
        default_factory=lambda: RateLimitedLog(log, "refused commands", logging.INFO))
    # (command, "ok" | "fail") -> count; unknown commands count as "unknown"
    results: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Exact request datagram -> (reply, results key) of argument-less commands with a
    # constant reply: the server answers these without parsing (docs/supervisor.md).
    constants: dict[bytes, tuple[bytes, tuple[str, str]]] = field(default_factory=dict)

    def register(self, name: str, handler: Handler, arity: tuple[int, ...] | None = None,
                 secret: bool = False) -> None:
        self.entries[name] = _Entry(handler, arity, secret)
        for datagram in [d for d, (_, key) in self.constants.items() if key[0] == name]:
            del self.constants[datagram]  # in place: the server holds this dict

    def register_constant(self, name: str, reply: str) -> None:
        """An argument-less command that always answers ``reply`` (``PING_SUPERVISOR``)."""
        self.register(name, lambda _: reply, (0,))
        for datagram in (name, f"{name}\n", f"{name}\r\n"):
            self.constants[datagram.encode()] = (
                reply.encode(), (name, "fail" if reply == proto.FAIL else "ok"))

    def register_family(self, names: frozenset[str], handle: Callable[[str, tuple[str, ...]], str],
                        secret: frozenset[str] = frozenset()) -> None:
        """Register commands served by one ``handle(name, args) -> reply`` function."""
        def handler(r: Request) -> str:
            return handle(r.name, r.args)

        for name in names:
            self.register(name, handler, None, name in secret)

    def dispatch(self, request: Request) -> str:
        reply = self._dispatch(request)
        name = request.name if request.name in self.entries else "unknown"
        self.results[name, "fail" if reply == proto.FAIL else "ok"] += 1
        return reply

    def _dispatch(self, request: Request) -> str:
        entry = self.entries.get(request.name)
        if entry is None:
            self.refusals.log("unknown command %.40r", request.name)
            return proto.FAIL
        if entry.arity is not None and len(request.args) not in entry.arity:
            self.refusals.log("%s: expected %s arguments, got %d", request.name,
                              " or ".join(map(str, entry.arity)), len(request.args))
            return proto.FAIL
        if entry.secret and request.channel == "udp":
            log.warning("%s refused: secret-returning command over unauthenticated UDP",
                        request.name)
            return proto.FAIL
        try:
            return entry.handler(request)
        except (CommandError, RegistryError) as exc:
            self.refusals.log("%s: %s", request.name, exc)
            return proto.FAIL
        except sqlite3.OperationalError as exc:  # disk full, I/O error: expected, one line
            log.error("%s failed: %s", request.name, exc)
            return proto.FAIL
        except Exception:
            log.exception("%s failed", request.name)
            return proto.FAIL


def parse_vlan(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 4094:
        raise CommandError(f"invalid VLAN id {text!r}")
    return int(text)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


class NetworkCommands:
    """The original's network and system commands over a :class:`Registry`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        # GET_ALL reply, rebuilt only after a device changed (formatting 1,000 lines
        # on every request cost ~1 ms; see bench/supervisor.py).
        self._all: tuple[int, str] | None = None

    def get_all(self, _q: Request) -> str:
        generation = self.registry.generation
        if self._all is None or self._all[0] != generation:
            self._all = (generation, proto.format_devices(self.registry.devices()))
        return self._all[1]

    def install(self, table: CommandTable) -> None:
        r = self.registry
        table.register_constant("PING_SUPERVISOR", proto.PONG)
        table.register("SET_IP", self.set_ip, (3, 4))
        table.register("ACCEPT_MAC", lambda q: self._ok(r.accept_mac(q.args[0],
                                                                     parse_vlan(q.args[1]))), (2,))
        table.register("DENY_MAC", lambda q: self._ok(r.deny_mac(q.args[0])), (1,))
        table.register("ADD_NAT", lambda q: self._ok(r.set_nat(q.args[0], True)), (1,))
        table.register("REMOVE_NAT", lambda q: self._ok(r.set_nat(q.args[0], False)), (1,))
        table.register("ASSIGN_PSK", lambda q: self._ok(r.assign_psk(q.args[0], q.args[1])), (2,))
        table.register("CLEAR_PSK", lambda q: self._ok(r.clear_psk(q.args[0])), (1,))
        table.register("GET_MAP", self.get_map, (1,))
        table.register("GET_ALL", self.get_all, (0,))
        table.register("ADD_BRIDGE", self.add_bridge, (2,))
        table.register("REMOVE_BRIDGE", self.remove_bridge, (2,))
        table.register("CLEAR_BRIDGE", lambda q: self._ok(r.clear_bridges(q.args[0])), (1,))
        table.register("GET_BRIDGES", lambda _: proto.format_bridges(r.bridges()), (0,))
        table.register("REGISTER_TICKET", self.register_ticket, (3,))
        table.register("REMOVE_DEVICE", lambda q: self._ok(r.remove_device(q.args[0])), (1,))
        from edgesec.supervisor.group_commands import GroupCommands  # (imports this module)
        GroupCommands(r.groups).install(table)

    @staticmethod
    def _ok(_result: object) -> str:
        return proto.OK

    def set_ip(self, q: Request) -> str:
        """``SET_IP type mac ip [interface]``: the 4th word (new) marks a lease hook report."""
        kind, mac, ip = q.args[:3]
        interface = q.args[3] if len(q.args) == 4 else None
        self.registry.set_ip(kind, mac, ip, interface)
        return proto.OK

    def get_map(self, q: Request) -> str:
        dev = self.registry.get(q.args[0])
        return proto.format_device(dev) if dev else proto.OK

    def _macs_of(self, a: str, b: str) -> tuple[str, str]:
        """ADD_BRIDGE takes two MACs or two IPv4 addresses of known devices."""
        if _is_ipv4(a) and _is_ipv4(b):
            da, db = self.registry.device_by_ip(a), self.registry.device_by_ip(b)
            if da is None or db is None:
                raise CommandError("both addresses must belong to known devices")
            return da.mac, db.mac
        return normalise_mac(a), normalise_mac(b)

    def add_bridge(self, q: Request) -> str:
        a, b = self._macs_of(*q.args)
        self.registry.add_bridge(a, b)
        return proto.OK

    def remove_bridge(self, q: Request) -> str:
        a, b = self._macs_of(*q.args)
        self.registry.remove_bridge(a, b)
        return proto.OK

    def register_ticket(self, q: Request) -> str:
        issuer, label, vlan = q.args
        return self.registry.register_ticket(issuer, label, parse_vlan(vlan)).passphrase + "\n"
