"""The automatic bridging rule and its bookkeeping.

Owns the decision "device B started a connection to address X: bridge B with
the device that announced X?" (:func:`decide`, pure) and the application of
that decision through the registry plus the expiry of auto-created bridges
(:class:`AutoBridger`).

The rule (safer than the original, which trusted any A record):

1. auto-bridging is switched on (``mdnsAutoBridge``);
2. X is the leased address of a known device A (``registry.device_by_ip``)
   and A itself announced X over mDNS (so a device announcing a victim's
   address gains nothing);
3. the connecting source is a known device B, B != A;
4. B discovered X: B itself queried one of the names resolving to X (the
   host name, the service instance or the service type) within the discovery
   window.  Merely sharing a bridge onto which an answer was reflected is not
   enough by default (every device of a subnet receives every reflected
   answer, which says nothing about intent); ``passive=True``
   (``mdnsBridgePassive``) also accepts that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgesec.mdns.knowledge import Knowledge
from edgesec.mdns.names import NameOwners

if TYPE_CHECKING:
    from edgesec.registry import Device, Registry

__all__ = ["AutoBridger", "Decision", "decide", "owner_mac"]

log = logging.getLogger(__name__)

DeviceLookup = Callable[[str], "Device | None"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of the rule: ``bridge`` with a human-readable ``reason``.

    ``code`` names the outcome in one word (``bridge``, ``disabled``,
    ``not-leased``, ``not-announced``, ``unknown-source``, ``same-device``,
    ``not-discovered``, ``name-conflict``) for counters.
    """

    bridge: bool
    a: str  # announcer MAC ("" when unknown)
    b: str  # connecting device MAC ("" when unknown)
    reason: str
    code: str = ""


def owner_mac(lookup: DeviceLookup, ip: str) -> str:
    """MAC of the device whose leased address is ``ip``, or ""."""
    try:
        dev = lookup(ip)
    except Exception:  # registry raises on malformed input; treat as unknown
        return ""
    return dev.mac if dev is not None else ""


def decide(
    knowledge: Knowledge,
    lookup: DeviceLookup,
    src_ip: str,
    dst_ip: str,
    interface: str,
    now: float,
    enabled: bool = True,
    passive: bool = False,
    owners: NameOwners | None = None,
) -> Decision:
    """Apply the rule to a first packet ``src_ip`` -> ``dst_ip`` seen on ``interface``.

    ``owners`` (optional) explains a refusal: when the name ``src_ip`` asked
    for was claimed for ``dst_ip`` against its owner, the code is
    ``name-conflict`` instead of ``not-discovered``.
    """
    if not enabled:
        return Decision(False, "", "", "auto-bridging disabled", "disabled")
    a = owner_mac(lookup, dst_ip)
    if not a:
        return Decision(False, "", "", f"{dst_ip} is not a device's leased address",
                        "not-leased")
    if a not in knowledge.announcers_of(dst_ip, now):
        return Decision(False, a, "", f"{dst_ip} was not announced by its owner {a}",
                        "not-announced")
    b = owner_mac(lookup, src_ip)
    if not b:
        return Decision(False, a, "", f"source {src_ip} is not a known device",
                        "unknown-source")
    if a == b:
        return Decision(False, a, b, "source and destination are the same device",
                        "same-device")
    if knowledge.queried(src_ip, knowledge.names_for(dst_ip, now), now):
        how = f"{src_ip} queried its name"
    elif passive and knowledge.exposed_to(interface, dst_ip, now) == a:
        how = f"the answer was reflected onto {interface}"
    else:
        refused = owners.refused_at(dst_ip, now) if owners is not None else {}
        asked = sorted(n for n in refused if knowledge.queried(src_ip, {n}, now))
        if asked:
            c = refused[asked[0]]
            return Decision(False, a, b, f"{src_ip} asked for {c.name}, which belongs to "
                            f"{c.owner} ({c.why}); {a} claimed it", "name-conflict")
        return Decision(False, a, b, f"{src_ip} never discovered {dst_ip}", "not-discovered")
    names = sorted(n for n in knowledge.names_for(dst_ip, now) if "._" not in n)
    label = names[0] if names else dst_ip
    return Decision(True, a, b, f"mdns: {b} connected to {label} ({dst_ip}) of {a}; {how}",
                    "bridge")


class AutoBridger:
    """Turns positive decisions into ``registry.add_bridge`` calls.

    The bridge goes through the same registry path as ``ADD_BRIDGE`` (durable,
    firewall, ``bridge_added`` event carrying the reason).  With an expiry
    (``mdnsBridgeExpiry``, default one hour) the registry stores the bridge
    with a lifetime and drops it when due (:meth:`expire`, and the gateway's
    housekeeping).  A later positive decision for the same pair — a new
    connection after B discovered A again — extends the lifetime, written at
    most once per quarter of it; traffic on connections already open does not.
    A permanent bridge (made by ``ADD_BRIDGE``) is never given a lifetime.
    """

    def __init__(self, registry: Registry, expiry: float = 0.0) -> None:
        self.registry = registry
        self.expiry = expiry
        self.created = 0
        self.refreshed = 0

    def apply(self, decision: Decision) -> bool:
        """Create (or extend) the bridge of a positive decision; True when one was made."""
        if not decision.bridge:
            return False
        ttl = int(self.expiry)
        try:
            if any(getattr(self.registry.get(m), "quarantined", False)
                   for m in (decision.a, decision.b)):
                log.info("mdns auto-bridge %s<->%s: a quarantined device is never bridged",
                         decision.a, decision.b)
                return False
            existing = self.registry.bridge(decision.a, decision.b)
            if existing is not None:
                expires = existing.expires
                if ttl and expires and expires - self.registry.clock() < ttl * 3 / 4:
                    self.registry.add_bridge(decision.a, decision.b, reason=existing.reason,
                                             ttl=ttl)
                    self.refreshed += 1
                return False
            self.registry.add_bridge(decision.a, decision.b, reason=decision.reason, ttl=ttl)
        except Exception as exc:
            log.warning("mdns auto-bridge %s<->%s refused: %s", decision.a, decision.b, exc)
            return False
        self.created += 1
        log.info("auto-bridge %s<->%s: %s", decision.a, decision.b, decision.reason)
        return True

    def expire(self) -> int:
        """Drop expired bridges (registry-wide); return how many went."""
        if self.expiry <= 0:
            return 0
        try:
            return int(self.registry.expire_bridges())
        except Exception as exc:
            log.warning("mdns bridge expiry failed: %s", exc)
            return 0
