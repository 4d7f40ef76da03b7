"""In-process publish/subscribe of registry changes.

Publishers call :meth:`EventBus.publish` after a change is durable; every
subscriber callback runs synchronously in the publisher's thread.  A failing
subscriber is logged and never stops delivery to the others.

Every event kind has its own frozen dataclass (:class:`DeviceChanged`,
:class:`IpChanged`, ...) whose typed fields are what subscribers read; each
keeps ``kind`` and ``mac``. :class:`Event` is their base and stays
constructible as ``Event(kind, mac, data)`` for kinds not typed yet. The
read-only ``data`` mapping of every event is the compatibility view that the
wire formats (supervisor ``SUBSCRIBE_EVENTS`` lines, the API's SSE) are built
from; typed events derive it from their fields, so it cannot disagree with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgesec.groups import Access
    from edgesec.registry import Device

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that changed: ``kind`` names it, ``mac`` is the device (or "").

    Constructed directly it is an untyped event carrying ``data``; the typed
    subclasses below compute ``data`` from their own fields.
    """

    kind: str
    mac: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


def _typed(kind: str) -> Any:
    """The ``kind`` field of a typed event: fixed, not a constructor argument."""
    return field(default=kind, init=False)


def _derived() -> Any:
    """The ``data`` field of a typed event: filled from the typed fields."""
    return field(default_factory=dict, init=False, repr=False, compare=False)


class _Typed:
    """Mixin: ``__post_init__`` stores :meth:`_data` as the compatibility ``data``."""

    __slots__ = ()

    def _data(self) -> dict[str, Any]:
        raise NotImplementedError

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", self._data())


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceChanged(_Typed, Event):
    """A device record was created (``old`` None), changed, or removed (``new`` None)."""

    kind: str = _typed("device")
    data: Mapping[str, Any] = _derived()
    old: Device | None = None
    new: Device | None = None
    reason: str = ""  # why a removed device was removed

    def _data(self) -> dict[str, Any]:
        if self.new is None:
            return {"device": None, "removed": self.old, "reason": self.reason}
        return {"device": self.new}


@dataclass(frozen=True, slots=True, kw_only=True)
class IpChanged(_Typed, Event):
    """A lease of ``ip`` was added (``type`` IP_ADD/IP_OLD) or deleted (IP_DEL)."""

    kind: str = _typed("ip")
    data: Mapping[str, Any] = _derived()
    ip: str
    type: int
    primary: int

    def _data(self) -> dict[str, Any]:
        return {"ip": self.ip, "type": self.type, "primary": self.primary}


@dataclass(frozen=True, slots=True, kw_only=True)
class ApStatus(_Typed, Event):
    """The access point reported a station (dis)connecting."""

    kind: str = _typed("ap")
    data: Mapping[str, Any] = _derived()
    status: int

    def _data(self) -> dict[str, Any]:
        return {"status": self.status}


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeAdded(_Typed, Event):
    """``mac`` and ``peer`` may now talk to each other."""

    kind: str = _typed("bridge_added")
    data: Mapping[str, Any] = _derived()
    peer: str
    reason: str

    def _data(self) -> dict[str, Any]:
        return {"peer": self.peer, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeRemoved(_Typed, Event):
    """The bridge between ``mac`` and ``peer`` is gone."""

    kind: str = _typed("bridge_removed")
    data: Mapping[str, Any] = _derived()
    peer: str
    reason: str

    def _data(self) -> dict[str, Any]:
        return {"peer": self.peer, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChanged(_Typed, Event):
    """``mac`` joined (``action`` "added") or left ("removed") ``group``."""

    kind: str = _typed("group_changed")
    data: Mapping[str, Any] = _derived()
    group: str
    action: str
    members: tuple[str, ...]
    reason: str = ""  # only for "removed"

    def _data(self) -> dict[str, Any]:
        if self.action == "removed":
            return {"group": self.group, "action": self.action, "reason": self.reason,
                    "members": self.members}
        return {"group": self.group, "action": self.action, "members": self.members}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessAdded(_Typed, Event):
    """Access rule ``rule`` (from ``mac``, its source) was added."""

    kind: str = _typed("access_added")
    data: Mapping[str, Any] = _derived()
    rule: Access
    reason: str

    def _data(self) -> dict[str, Any]:
        r = self.rule
        return {"peer": r.dst, "proto": r.proto, "port": r.port, "service": r.service,
                "rule": r, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRemoved(_Typed, Event):
    """Access rule ``rule`` (from ``mac``, its source) was removed."""

    kind: str = _typed("access_removed")
    data: Mapping[str, Any] = _derived()
    rule: Access
    reason: str

    def _data(self) -> dict[str, Any]:
        r = self.rule
        return {"peer": r.dst, "proto": r.proto, "port": r.port, "service": r.service,
                "rule": r, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class FirewallHealed(_Typed, Event):
    """A table we own was altered by another process and has been re-applied."""

    kind: str = _typed("firewall_healed")
    data: Mapping[str, Any] = _derived()
    table: str
    heals: int
    reason: str
    family: str = "inet"

    def _data(self) -> dict[str, Any]:
        return {"family": self.family, "table": self.table, "heals": self.heals,
                "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyChanged(_Typed, Event):
    """A policy command succeeded (audit); ``mac`` is the device it named, if any."""

    kind: str = _typed("policy")
    data: Mapping[str, Any] = _derived()
    ts: float
    command: str
    args: tuple[str, ...] | list[str]
    source: str

    def _data(self) -> dict[str, Any]:
        return {"ts": self.ts, "command": self.command, "args": self.args,
                "source": self.source}


@dataclass(frozen=True, slots=True, kw_only=True)
class MdnsAnnounced(_Typed, Event):
    """A device announced an mDNS record (name, type, value) from ``ip``."""

    kind: str = _typed("mdns")
    data: Mapping[str, Any] = _derived()
    name: str
    type: str
    value: str
    ip: str
    interface: str
    ttl: int

    def _data(self) -> dict[str, Any]:
        return {"action": "announce", "name": self.name, "type": self.type,
                "value": self.value, "ip": self.ip, "interface": self.interface,
                "ttl": self.ttl}


@dataclass(frozen=True, slots=True, kw_only=True)
class MdnsBridge(_Typed, Event):
    """mDNS traffic showed ``mac`` talking to ``peer`` (auto-bridging evidence)."""

    kind: str = _typed("mdns")
    data: Mapping[str, Any] = _derived()
    peer: str
    reason: str

    def _data(self) -> dict[str, Any]:
        return {"action": "bridge", "peer": self.peer, "reason": self.reason}


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out of :class:`Event` objects to subscriber callbacks."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register ``callback``; returns a function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", callback, event.kind)
