"""Which services the gateway must have running, and refusing to run without them.

Owns the rule of principle 7 (fail closed): the enforcing services the config
enables (``subnets`` = the device bridges, ``firewall``) are always required;
``[system] requireServices`` names further ones (default: RADIUS and DHCP when
enabled; ``none`` for no further ones). IPv4 forwarding is switched on only
after the enforcing services are up, and off again when the gateway refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesec.config import Settings

log = logging.getLogger(__name__)

ENFORCING = ("subnets", "firewall")
DEFAULT_REQUIRED = ("subnets", "firewall", "radius", "dhcp")


class GatewayRefused(RuntimeError):
    """A required service is not running: the gateway will not run (forwarding off)."""


def required_services(settings: Settings, enabled: Collection[str]) -> frozenset[str]:
    """The services that must be up: enabled enforcing ones plus ``requireServices``."""
    listed = settings.system.require_services
    required = {n for n in ENFORCING if n in enabled}
    if not listed:
        return frozenset(required | {n for n in DEFAULT_REQUIRED if n in enabled})
    if listed == ("none",):
        return frozenset(required)
    off = [n for n in listed if n not in enabled]
    if off:
        raise GatewayRefused(f"[system] requireServices names {', '.join(off)}, which the "
                             "config does not enable")
    return frozenset(required | set(listed))


def set_ip_forward(on: bool = True) -> bool:
    """:func:`edgesec.net.links.set_ip_forward`, imported when used: links needs
    pyroute2 (~12 MB), which a gateway without ``setIpForward`` never loads."""
    from edgesec.net.links import set_ip_forward as switch

    return switch(on=on)


def refuse_if_missing(required: Collection[str], failed: Mapping[str, str],
                      settings: Settings) -> None:
    """Raise :class:`GatewayRefused` when a required service failed; forwarding goes off."""
    missing = [n for n in sorted(required) if n in failed]
    if not missing:
        return
    forwarding = ""
    if settings.system.set_ip_forward:
        try:
            set_ip_forward(on=False)
            forwarding = "; IPv4 forwarding is off"
        except OSError as exc:
            forwarding = f"; IPv4 forwarding could not be switched off: {exc}"
    reasons = "; ".join(f"{n} {failed[n]}" for n in missing)
    raise GatewayRefused(f"required service(s) not running: {reasons}{forwarding}")


def hold_forwarding_off(settings: Settings) -> None:
    """``setIpForward``: forwarding off while the enforcing services start.

    After a crash (``kill -9``: no clean stop) forwarding is still on; the
    bridges come up before the firewall table is re-applied, so hold it off.
    """
    if settings.system.set_ip_forward and set_ip_forward(on=False):
        log.info("IPv4 forwarding held off until the firewall is in place")


def enable_forwarding(settings: Settings) -> bool:
    """``setIpForward``: switch forwarding on (enforcement is in place); True if we did."""
    if not settings.system.set_ip_forward:
        return False
    changed = set_ip_forward(on=True)
    if changed:
        log.info("IPv4 forwarding enabled")
    return changed
