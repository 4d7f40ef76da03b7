"""Groups and one-way access rules: policy at human scale, kept beside the devices.

Owns two kinds of registry state (durable in :class:`~edgesec.store.Store`,
published on the :class:`~edgesec.events.EventBus` after the commit, exactly
like bridges):

* **group memberships** — a group is a named set of devices that may reach
  each other in both directions; it exists while it has members;
* **access rules** — ``src`` may open new connections to ``dst`` (optionally
  only ``tcp/<port>`` or ``udp/<port>``); ``dst`` may only answer them.

The registry holds one :class:`GroupPolicy` as ``registry.groups``; the
firewall reads it through :meth:`GroupPolicy.peers`/:meth:`rules_of` and
derives set elements in :mod:`edgesec.net.policy`. Every request that would
change nothing or names something unknown is refused with
:class:`~edgesec.registry.RegistryError` before anything is written.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgesec.events import AccessAdded, AccessRemoved, EventBus, GroupChanged
from edgesec.registry import RegistryError, normalise_mac
from edgesec.store import AccessRow, MembershipRow, Store

GROUP_NAME = re.compile(r"[a-z0-9_-]{1,32}")
PROTOS = ("tcp", "udp")
# Bounds (operator-driven state, but still bounded: a group of n members costs
# n*(n-1) directed address pairs in the kernel's set).
MAX_GROUP_MEMBERS = 256
MAX_MEMBERSHIPS = 16_384
MAX_GROUP_PAIRS = 262_144  # sum over groups of n*(n-1)
MAX_ACCESS_RULES = 65_536


@dataclass(frozen=True, slots=True, order=True)
class Access:
    """``src`` may open connections to ``dst`` (``proto``/``port``, or any when empty)."""

    src: str
    dst: str
    proto: str = ""
    port: int = 0

    @property
    def service(self) -> str:
        """``tcp/80``, ``udp/53`` or ``any`` (the protocol's and GET_ACCESS's spelling)."""
        return f"{self.proto}/{self.port}" if self.proto else "any"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} {self.service}"


def check_group_name(name: str) -> str:
    """A group name: 1-32 characters of ``[a-z0-9_-]``."""
    if not GROUP_NAME.fullmatch(name):
        raise RegistryError(f"invalid group name {name[:40]!r}: 1-32 characters of [a-z0-9_-]")
    return name


def parse_service(text: str) -> tuple[str, int]:
    """``tcp/<port>``/``udp/<port>`` (port 1-65535) or ``any`` -> (proto, port); ("", 0) = any."""
    if text == "any":
        return "", 0
    proto, sep, port = text.partition("/")
    if not sep or proto not in PROTOS:
        raise RegistryError(f"invalid service {text[:40]!r}: expected tcp/<port> or udp/<port>")
    if not (port.isascii() and port.isdigit() and len(port) <= 5) or not 1 <= int(port) <= 65535:
        raise RegistryError(f"invalid port in {text[:40]!r}: expected 1-65535")
    return proto, int(port)


class GroupPolicy:
    """Group memberships and access rules of the registry, durable before they return."""

    def __init__(self, store: Store, bus: EventBus, known: Callable[[str], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.bus = bus
        self.known = known
        self.clock = clock
        self._members: dict[str, dict[str, int]] = {}  # group -> mac -> created
        self._groups_of: dict[str, set[str]] = {}
        self._rules: dict[Access, int] = {}  # rule -> created
        self._rules_of: dict[str, set[Access]] = {}
        self._pairs = 0
        for m in store.load_memberships():
            self._add_member(m.group, m.mac, m.created)
        for r in store.load_access():
            self._add_rule(Access(r.mac_from, r.mac_to, r.proto, r.port), r.created)

    # -- reads -----------------------------------------------------------------
    def memberships(self) -> list[tuple[str, str]]:
        """Every ``(group, mac)``, sorted."""
        return sorted((g, m) for g, members in self._members.items() for m in members)

    def members(self, group: str) -> list[str]:
        return list(self._members.get(group, ()))

    def groups_of(self, mac: str) -> list[str]:
        return sorted(self._groups_of.get(mac, ()))

    def peers(self, mac: str) -> set[str]:
        """Devices sharing at least one group with ``mac`` (not itself)."""
        out: set[str] = set()
        for g in self._groups_of.get(mac, ()):
            out.update(self._members[g])
        out.discard(mac)
        return out

    def rules(self) -> list[Access]:
        return sorted(self._rules)

    def rules_of(self, mac: str) -> list[Access]:
        """Access rules in which ``mac`` is either end."""
        return list(self._rules_of.get(mac, ()))

    def related(self, mac: str) -> set[str]:
        """Every device whose firewall rows depend on ``mac`` through groups or rules."""
        out = self.peers(mac)
        for r in self._rules_of.get(mac, ()):
            out.add(r.dst if r.src == mac else r.src)
        return out

    # -- in-memory bookkeeping ---------------------------------------------------
    def _add_member(self, group: str, mac: str, created: int) -> None:
        members = self._members.setdefault(group, {})
        self._pairs += 2 * len(members)
        members[mac] = created
        self._groups_of.setdefault(mac, set()).add(group)

    def _drop_member(self, group: str, mac: str) -> None:
        members = self._members[group]
        del members[mac]
        self._pairs -= 2 * len(members)
        if not members:
            del self._members[group]
        mine = self._groups_of[mac]
        mine.discard(group)
        if not mine:
            del self._groups_of[mac]

    def _add_rule(self, rule: Access, created: int) -> None:
        self._rules[rule] = created
        for mac in (rule.src, rule.dst):
            self._rules_of.setdefault(mac, set()).add(rule)

    def _drop_rule(self, rule: Access) -> None:
        del self._rules[rule]
        for mac in (rule.src, rule.dst):
            mine = self._rules_of[mac]
            mine.discard(rule)
            if not mine:
                del self._rules_of[mac]

    def _known(self, mac: str) -> str:
        mac = normalise_mac(mac)
        if not self.known(mac):
            raise RegistryError(f"unknown device {mac}")
        return mac

    # -- writes ------------------------------------------------------------------
    def add_member(self, group: str, mac: str) -> None:
        """Put a known device into ``group`` (created with its first member)."""
        group = check_group_name(group)
        mac = self._known(mac)
        members = self._members.get(group, {})
        if mac in members:
            raise RegistryError(f"{mac} is already a member of group {group}")
        if len(members) >= MAX_GROUP_MEMBERS:
            raise RegistryError(f"group {group} is full ({MAX_GROUP_MEMBERS} members)")
        if sum(len(m) for m in self._members.values()) >= MAX_MEMBERSHIPS:
            raise RegistryError(f"too many group memberships (at most {MAX_MEMBERSHIPS})")
        if self._pairs + 2 * len(members) > MAX_GROUP_PAIRS:
            raise RegistryError(f"groups would hold more than {MAX_GROUP_PAIRS} device pairs")
        now = int(self.clock())
        with self.store.transaction():
            self.store.put_membership(MembershipRow(group, mac, now))
        self._add_member(group, mac, now)
        self.bus.publish(GroupChanged(mac, group=group, action="added",
                                      members=tuple(self._members[group])))

    def remove_member(self, group: str, mac: str, reason: str = "manual") -> None:
        group = check_group_name(group)
        mac = normalise_mac(mac)
        if mac not in self._members.get(group, {}):
            raise RegistryError(f"{mac} is not a member of group {group}")
        with self.store.transaction():
            self.store.delete_membership(group, mac)
        self._drop_member(group, mac)
        self._published_removal(group, mac, reason)

    def _published_removal(self, group: str, mac: str, reason: str) -> None:
        self.bus.publish(GroupChanged(mac, group=group, action="removed", reason=reason,
                                      members=tuple(self._members.get(group, ()))))

    def add_access(self, src: str, dst: str, proto: str = "", port: int = 0) -> Access:
        """Let ``src`` open connections to ``dst`` (one direction only)."""
        rule = self._rule(src, dst, proto, port)
        if rule in self._rules:
            raise RegistryError(f"access rule {rule} already exists")
        if len(self._rules) >= MAX_ACCESS_RULES:
            raise RegistryError(f"too many access rules (at most {MAX_ACCESS_RULES})")
        now = int(self.clock())
        with self.store.transaction():
            self.store.put_access(AccessRow(rule.src, rule.dst, rule.proto, rule.port, now))
        self._add_rule(rule, now)
        self.bus.publish(AccessAdded(rule.src, rule=rule, reason="manual"))
        return rule

    def remove_access(self, src: str, dst: str, proto: str = "", port: int = 0,
                      reason: str = "manual") -> Access:
        rule = Access(normalise_mac(src), normalise_mac(dst), proto, port)
        if rule not in self._rules:
            raise RegistryError(f"access rule {rule} does not exist")
        with self.store.transaction():
            self.store.delete_access(rule.src, rule.dst, rule.proto, rule.port)
        self._drop_rule(rule)
        self.bus.publish(AccessRemoved(rule.src, rule=rule, reason=reason))
        return rule

    def _rule(self, src: str, dst: str, proto: str, port: int) -> Access:
        src, dst = self._known(src), self._known(dst)
        if src == dst:
            raise RegistryError("a device needs no access rule to itself")
        if proto or port:
            parse_service(f"{proto}/{port}")  # validates both
        return Access(src, dst, proto, port)

    def forget(self, mac: str, reason: str = "device removed") -> int:
        """Remove every membership and access rule of ``mac`` in one transaction.

        Returns how many memberships and rules went.
        """
        mac = normalise_mac(mac)
        if mac not in self._groups_of and mac not in self._rules_of:
            return 0
        with self.store.transaction():
            self.store.delete_memberships_of(mac)
        return self.forgotten(mac, reason)

    def forgotten(self, mac: str, reason: str) -> int:
        """``mac``'s memberships and rules were deleted from the store (in the caller's
        transaction, ``Store.delete_memberships_of``): drop them here and publish.

        The device-removal hook: ``Registry._remove_devices`` deletes the rows
        with the device's and calls this after the commit.
        """
        groups = sorted(self._groups_of.get(mac, ()))
        rules = sorted(self._rules_of.get(mac, ()))
        for g in groups:
            self._drop_member(g, mac)
        for r in rules:
            self._drop_rule(r)
        for g in groups:
            self._published_removal(g, mac, reason)
        for r in rules:
            self.bus.publish(AccessRemoved(r.src, rule=r, reason=reason))
        return len(groups) + len(rules)
