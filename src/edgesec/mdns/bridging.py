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
from typing import Any

from edgesec.mdns.knowledge import Knowledge

__all__ = ["AutoBridger", "Decision", "decide", "owner_mac"]

log = logging.getLogger(__name__)

DeviceLookup = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of the rule: ``bridge`` with a human-readable ``reason``."""

    bridge: bool
    a: str  # announcer MAC ("" when unknown)
    b: str  # connecting device MAC ("" when unknown)
    reason: str


def owner_mac(lookup: DeviceLookup, ip: str) -> str:
    """MAC of the device whose leased address is ``ip``, or ""."""
    try:
        dev = lookup(ip)
    except Exception:  # registry raises on malformed input; treat as unknown
        return ""
    return getattr(dev, "mac", "") if dev is not None else ""


def decide(
    knowledge: Knowledge,
    lookup: DeviceLookup,
    src_ip: str,
    dst_ip: str,
    interface: str,
    now: float,
    enabled: bool = True,
    passive: bool = False,
) -> Decision:
    """Apply the rule to a first packet ``src_ip`` -> ``dst_ip`` seen on ``interface``."""
    if not enabled:
        return Decision(False, "", "", "auto-bridging disabled")
    a = owner_mac(lookup, dst_ip)
    if not a:
        return Decision(False, "", "", f"{dst_ip} is not a device's leased address")
    if a not in knowledge.announcers_of(dst_ip, now):
        return Decision(False, a, "", f"{dst_ip} was not announced by its owner {a}")
    b = owner_mac(lookup, src_ip)
    if not b:
        return Decision(False, a, "", f"source {src_ip} is not a known device")
    if a == b:
        return Decision(False, a, b, "source and destination are the same device")
    if knowledge.queried(src_ip, knowledge.names_for(dst_ip, now), now):
        how = f"{src_ip} queried its name"
    elif passive and knowledge.exposed_to(interface, dst_ip, now) == a:
        how = f"the answer was reflected onto {interface}"
    else:
        return Decision(False, a, b, f"{src_ip} never discovered {dst_ip}")
    names = sorted(n for n in knowledge.names_for(dst_ip, now) if "._" not in n)
    label = names[0] if names else dst_ip
    return Decision(True, a, b, f"mdns: {b} connected to {label} ({dst_ip}) of {a}; {how}")


class AutoBridger:
    """Turns positive decisions into ``registry.add_bridge`` calls.

    The bridge goes through the same registry path as ``ADD_BRIDGE`` (durable,
    firewall, ``bridge_added`` event carrying the reason).  With an expiry the
    registry stores the bridge with a lifetime; :meth:`expire` asks the
    registry to drop bridges whose lifetime has passed.
    """

    def __init__(self, registry: Any, expiry: float = 0.0) -> None:
        self.registry = registry
        self.expiry = expiry
        self.created = 0

    def apply(self, decision: Decision) -> bool:
        """Create the bridge for a positive decision; True when a bridge was made."""
        if not decision.bridge:
            return False
        try:
            if self.registry.has_bridge(decision.a, decision.b):
                return False
            if any(getattr(self.registry.get(m), "quarantined", False)
                   for m in (decision.a, decision.b)):
                log.info("mdns auto-bridge %s<->%s: a quarantined device is never bridged",
                         decision.a, decision.b)
                return False
            self.registry.add_bridge(
                decision.a, decision.b, reason=decision.reason, ttl=int(self.expiry)
            )
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
