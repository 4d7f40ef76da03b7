"""Which pool devices have lost their VLAN: the reclaim rule (pure).

A VLAN-pool subnet is a lease on a scarce resource (one VLAN per device), not
an assignment for life.  A device gives its pool VLAN back when all of these
hold:

* it is on a pool VLAN and allowed (a denied device already holds none);
* it carries no administrator intent: no label and no passphrase of its own
  (a ticket-onboarded device has both; give a device a label or a PSK to pin it);
* it is not connected (hostapd status) and holds no address (dnsmasq reports
  ``del`` when a lease expires or is released);
* it was seen at all (a join through RADIUS, or a lease report) and not for
  ``lifetime`` seconds: a record created by ``ACCEPT_MAC`` that never joined
  is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgesec.device_like import DeviceLike
from edgesec.device_status import DeviceStatus


def last_seen(dev: DeviceLike, lease_seen: Mapping[str, float]) -> float:
    """Unix seconds of the latest join or lease report of ``dev`` (0 = never seen)."""
    return max(dev.join_ts / 1_000_000, lease_seen.get(dev.mac, 0.0))


def reclaimable(devices: Iterable[DeviceLike], pool: frozenset[int] | set[int],
                lease_seen: Mapping[str, float], now: float, lifetime: float) -> list[str]:
    """MACs of the devices whose pool VLAN is reclaimed at ``now`` (see the module doc)."""
    out = []
    for d in devices:
        if (d.vlanid not in pool or not d.allow or d.label or d.psk or d.ips
                or d.status == DeviceStatus.CONNECTED):
            continue
        seen = last_seen(d, lease_seen)
        if seen and now - seen >= lifetime:
            out.append(d.mac)
    return out
