"""What a SIGHUP can apply live: the differences between two Settings, by section.

``[interfaces]``, ``[dhcp]``, ``[dns]``, ``[nat]``, ``[firewall]`` and
``[capture]`` are handed to the services that consume them: through their
``reload(settings)`` hook, or, for a service without one, by rebuilding and
restarting that one service in place.  The other sections (``[system]``, ``[supervisor]``,
``[radius]``, ``[ap]``, ``[crypt]``) hold sockets, paths, secrets and the set of
services to run, which only a restart changes.  Sections are compared field by
field and reported with their INI key names, so the log says exactly what was
applied and what waits for a restart.
"""

from __future__ import annotations

import dataclasses

from edgesec.config import SECTIONS, Settings

# section -> services that apply its changes live (when they have a reload hook)
LIVE: dict[str, tuple[str, ...]] = {
    "interfaces": ("subnets", "firewall", "hostapd", "dhcp", "mdns", "capture"),
    "dhcp": ("dhcp",),
    "dns": ("dhcp", "mdns"),
    "nat": ("firewall",),
    "firewall": ("firewall",),
    "capture": ("capture",),
}
RESTART_ONLY = tuple(s for s in SECTIONS if s not in LIVE)


def changed_keys(old: Settings, new: Settings) -> dict[str, list[str]]:
    """Section -> INI keys whose value differs (field names where a field has no key)."""
    out: dict[str, list[str]] = {}
    for section in SECTIONS:
        a, b = getattr(old, section), getattr(new, section)
        if a == b:
            continue
        keys = [f.metadata.get("ini", f.name) for f in dataclasses.fields(a)
                if getattr(a, f.name) != getattr(b, f.name)]
        out[section] = keys or ["(changed)"]
    return out


def affected(changes: dict[str, list[str]]) -> set[str]:
    """Names of the services that consume a changed live section."""
    return {svc for section in changes for svc in LIVE.get(section, ())}


def restart_needed(changes: dict[str, list[str]]) -> list[str]:
    """Human-readable list of the changes that only a restart of the daemon applies."""
    return [f"[{section}] {', '.join(keys)}" for section, keys in changes.items()
            if section in RESTART_ONLY]


def validate(settings: Settings) -> None:
    """Checks beyond the config loader that a live service would otherwise fail on
    half-way through a reload (raises ValueError with the reason)."""
    if settings.system.exec_dhcp:
        from edgesec.dhcp.dnsmasq import render_config

        render_config(settings)
