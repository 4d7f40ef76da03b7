"""hostapd.conf and VLAN-file generation from ``[ap]``/``[radius]``/``[interfaces]`` (pure).

Owns the text of the files hostapd reads.  The RADIUS backend writes every key
the original writes, in its order; the PSK-file backend (``[ap] pskBackend =
file``) replaces the RADIUS keys by ``wpa_psk_file``/``sae_password`` (see
:mod:`edgesec.access.psk_file`).  Safer than the original: a value containing a
line break (which would inject extra hostapd keys) is refused, and so is a
VLAN interface name longer than the kernel allows.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesec.config import Settings

IFNAMSIZ = 15
_KEY = re.compile(r"[a-z][a-z0-9_]*")


class HostapdConfigError(ValueError):
    """A setting that cannot be written into hostapd's files."""


def _value(key: str, value: object) -> str:
    text = str(value)
    if any(c in text for c in "\n\r\0"):
        raise HostapdConfigError(f"hostapd key {key}: value {text!r} contains a line break or NUL")
    return text


def _path(value: object) -> str:
    return "" if value is None else str(value)


def hostapd_ssid(settings: Settings) -> str:
    """``[ap] ssid``, or the host name (31 chars) when ``[system] generateSsid``."""
    if settings.system.generate_ssid:
        return socket.gethostname()[:31]
    return settings.ap.ssid


def hostapd_conf_items(settings: Settings, *, backend: str = "radius",
                       backend_items: Iterable[tuple[str, str]] = (),
                       extra: Mapping[str, object] | None = None) -> list[tuple[str, str]]:
    """The (key, value) lines of hostapd.conf in the original's order.

    ``backend="radius"``: own_ip_addr/auth_server_*/macaddr_acl/wpa_psk_radius as
    the original.  ``backend="file"``: the RADIUS keys are left out and
    ``backend_items`` (from :mod:`psk_file`) are written instead.  ``extra`` keys
    replace a generated key of the same name or are appended (e.g. the
    ``ieee8021x``/``eap_server`` keys of the wired test bed).
    """
    ap, radius = settings.ap, settings.radius
    items: list[tuple[str, object]] = [
        ("interface", ap.interface),
        ("driver", ap.driver),
        ("ssid", hostapd_ssid(settings)),
        ("hw_mode", ap.hw_mode),
        ("channel", ap.channel),
        ("wmm_enabled", ap.wmm_enabled),
        ("auth_algs", ap.auth_algs),
        ("wpa", ap.wpa),
        ("wpa_key_mgmt", ap.wpa_key_mgmt),
        ("rsn_pairwise", ap.rsn_pairwise),
        ("ctrl_interface", _path(ap.ctrl_interface)),
    ]
    if backend == "radius":
        items += [
            ("own_ip_addr", radius.client_ip),
            ("auth_server_addr", radius.server_ip),
            ("auth_server_port", radius.port),
            ("auth_server_shared_secret", radius.secret),
            ("macaddr_acl", ap.macaddr_acl),
        ]
    elif backend == "file":
        items.append(("macaddr_acl", 0))
    else:
        raise HostapdConfigError(f"[ap] pskBackend = {backend!r}: expected radius or file")
    items += [
        ("dynamic_vlan", ap.dynamic_vlan),
        ("vlan_bridge", settings.interfaces.interface_prefix),
        ("vlan_file", _path(ap.vlan_file)),
        ("logger_stdout", ap.logger_stdout),
        ("logger_stdout_level", ap.logger_stdout_level),
        ("logger_syslog", ap.logger_syslog),
        ("logger_syslog_level", ap.logger_syslog_level),
        ("ignore_broadcast_ssid", ap.ignore_broadcast_ssid),
    ]
    if backend == "radius":
        items.append(("wpa_psk_radius", ap.wpa_psk_radius))
    else:
        items += list(backend_items)
    if ap.vlan_tagged_interface:
        items += [("vlan_naming", 1), ("vlan_tagged_interface", ap.vlan_tagged_interface)]
    out = [(k, _value(k, v)) for k, v in items]
    for key, value in (extra or {}).items():
        if not _KEY.fullmatch(key):
            raise HostapdConfigError(f"extra hostapd key {key!r} is not a hostapd key name")
        text = _value(key, value)
        for i, (k, _) in enumerate(out):
            if k == key:
                out[i] = (key, text)
                break
        else:
            out.append((key, text))
    return out


def render_hostapd_conf(settings: Settings, *, backend: str = "radius",
                        backend_items: Iterable[tuple[str, str]] = (),
                        extra: Mapping[str, object] | None = None) -> str:
    """hostapd.conf text: one ``key=value`` per line (arguments: :func:`hostapd_conf_items`)."""
    items = hostapd_conf_items(settings, backend=backend, backend_items=backend_items,
                               extra=extra)
    return "".join(f"{k}={v}\n" for k, v in items)


def render_vlan_file(settings: Settings) -> str:
    """The VLAN file: one ``<vlan> <iface>.<vlan> <bridge>`` line per configured subnet
    (VLAN 0 means "untagged" to hostapd and is skipped), then the original's
    wildcard line ``*\\t<iface>.#`` for anything else."""
    iface = settings.ap.interface
    lines = []
    for subnet in settings.interfaces.subnets:
        if subnet.vlan < 1:
            continue
        name = f"{iface}.{subnet.vlan}"
        if len(name) > IFNAMSIZ:
            raise HostapdConfigError(
                f"VLAN interface name {name!r} is longer than {IFNAMSIZ} characters; "
                "use a shorter [ap] interface")
        lines.append(f"{subnet.vlan}\t{_value('vlan_file', name)}\t"
                     f"{_value('vlan_file', subnet.bridge)}\n")
    lines.append(f"*\t{_value('vlan_file', iface)}.#\n")
    return "".join(lines)

