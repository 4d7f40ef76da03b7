"""In-process publish/subscribe of registry changes.

Publishers call :meth:`EventBus.publish` after a change is durable; every
subscriber callback runs synchronously in the publisher's thread.  A failing
subscriber is logged and never stops delivery to the others.

Every event kind has its own frozen dataclass (:class:`DeviceChanged`,
:class:`IpChanged`, :class:`QuarantineChanged`, :class:`AlertRaised`, ...)
whose typed fields are what subscribers read; each keeps ``kind`` and ``mac``.
:class:`Event` is their base and stays constructible as ``Event(kind, mac,
data)`` for kinds not typed yet. The wire formats (supervisor
``SUBSCRIBE_EVENTS`` lines, the API's SSE) are built from the typed fields;
:func:`payload` derives an event's mapping generically from its dataclass
fields, and the read-only ``data`` of every event is that same mapping kept
for compatibility, so it cannot disagree with the fields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
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


_BASE_FIELDS = frozenset(("kind", "mac", "data"))


def _typed(kind: str) -> Any:
    """The ``kind`` field of a typed event: fixed, not a constructor argument."""
    return field(default=kind, init=False)


def _fixed(value: str) -> Any:
    """A field every event of the class carries with the same value (e.g. mDNS ``action``)."""
    return field(default=value, init=False)


def _derived() -> Any:
    """The ``data`` field of a typed event: filled from the typed fields."""
    return field(default_factory=dict, init=False, repr=False, compare=False)


def wire_name(name: str) -> Any:
    """A typed field that the ``data`` mapping names ``name`` (e.g. an alert's ``kind``)."""
    return field(metadata={"wire": name})


def payload(event: Event) -> dict[str, Any]:
    """The mapping the wire formats carry for ``event``, from its typed fields.

    For a typed event: each field but ``kind``/``mac``/``data``, in declaration
    order, under its wire name (a class may shape it with ``_data``); for an
    untyped :class:`Event`: its ``data``.
    """
    if isinstance(event, _Typed):
        return event._data()
    return dict(event.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Typed(Event):
    """Base of the typed events: ``data`` is filled from the typed fields."""

    data: Mapping[str, Any] = _derived()

    def _data(self) -> dict[str, Any]:
        """The wire mapping: the event's own fields, generically (override to reshape)."""
        return {f.metadata.get("wire", f.name): getattr(self, f.name)
                for f in fields(self) if f.name not in _BASE_FIELDS}

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", self._data())


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceChanged(_Typed):
    """A device record was created (``old`` None), changed, or removed (``new`` None)."""

    kind: str = _typed("device")
    old: Device | None = None
    new: Device | None = None
    reason: str = ""  # why a removed device was removed

    def _data(self) -> dict[str, Any]:
        if self.new is None:
            return {"device": None, "removed": self.old, "reason": self.reason}
        return {"device": self.new}


@dataclass(frozen=True, slots=True, kw_only=True)
class IpChanged(_Typed):
    """A lease of ``ip`` was added (``type`` IP_ADD/IP_OLD) or deleted (IP_DEL)."""

    kind: str = _typed("ip")
    ip: str
    type: int
    primary: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApStatus(_Typed):
    """The access point reported a station (dis)connecting."""

    kind: str = _typed("ap")
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeAdded(_Typed):
    """``mac`` and ``peer`` may now talk to each other."""

    kind: str = _typed("bridge_added")
    peer: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeRemoved(_Typed):
    """The bridge between ``mac`` and ``peer`` is gone."""

    kind: str = _typed("bridge_removed")
    peer: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChanged(_Typed):
    """``mac`` joined (``action`` "added") or left ("removed") ``group``."""

    kind: str = _typed("group_changed")
    group: str
    action: str
    reason: str = ""  # only for "removed" (and only there on the wire)
    members: tuple[str, ...]

    def _data(self) -> dict[str, Any]:
        data = _Typed._data(self)
        if self.action != "removed":
            del data["reason"]
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class _AccessChanged(_Typed):
    """An access rule ``rule`` (from ``mac``, its source) was added or removed."""

    rule: Access
    reason: str

    def _data(self) -> dict[str, Any]:
        r = self.rule
        return {"peer": r.dst, "proto": r.proto, "port": r.port, "service": r.service,
                "rule": r, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessAdded(_AccessChanged):
    """Access rule ``rule`` (from ``mac``, its source) was added."""

    kind: str = _typed("access_added")


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRemoved(_AccessChanged):
    """Access rule ``rule`` (from ``mac``, its source) was removed."""

    kind: str = _typed("access_removed")


@dataclass(frozen=True, slots=True, kw_only=True)
class FirewallHealed(_Typed):
    """A table we own was altered by another process and has been re-applied."""

    kind: str = _typed("firewall_healed")
    family: str = "inet"
    table: str
    heals: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyChanged(_Typed):
    """A policy command succeeded (audit); ``mac`` is the device it named, if any."""

    kind: str = _typed("policy")
    ts: float
    command: str
    args: tuple[str, ...] | list[str]
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MdnsAnnounced(_Typed):
    """A device announced an mDNS record (name, type, value) from ``ip``."""

    kind: str = _typed("mdns")
    action: str = _fixed("announce")
    name: str
    type: str
    value: str
    ip: str
    interface: str
    ttl: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MdnsBridge(_Typed):
    """mDNS traffic showed ``mac`` talking to ``peer`` (auto-bridging evidence)."""

    kind: str = _typed("mdns")
    action: str = _fixed("bridge")
    peer: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineChanged(_Typed):
    """``mac`` was quarantined (``on``) or released (not ``on``) by ``source``."""

    kind: str = _typed("quarantine")
    on: bool
    reason: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRaised(_Typed):
    """Detection raised an alert of kind ``alert`` about ``mac`` ("" when none)."""

    kind: str = _typed("alert")
    alert: str = wire_name("kind")
    severity: int
    message: str


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
