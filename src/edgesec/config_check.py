"""Cross-field validation of parsed settings: what ``run`` needs beyond each key's own parser.

:func:`edgesec.config.parse_settings` calls :func:`validate` after every key
parsed, so ``edgesec config check`` and ``edgesec run`` accept exactly the same
files.  Each check names the file and line of the key to change; all problems
are collected, the first is the :class:`ConfigError` message and the rest are
on its ``problems`` list.  Values of secret keys never appear in messages or in
``config check`` output (:func:`is_secret`, :func:`redact`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesec.config import Settings

WPA_MIN, WPA_MAX = 8, 63
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# A key named like this holds a secret (supervisorControlKey, secret, wpaPassphrase,
# a PIN, a password); paths to such files are not secrets themselves.
_SECRET_NAME = re.compile(r"(secret|passphrase|password|passwd|psk|pin|controlkey|token|key)$",
                          re.IGNORECASE)
REDACTED = "<redacted>"


def is_secret(ini_key: str) -> bool:
    """True for INI keys whose value is a secret (never printed)."""
    return bool(_SECRET_NAME.search(ini_key))


def redact(ini_key: str, value: str) -> str:
    return (REDACTED if value else "") if is_secret(ini_key) else value


def parse_wpa_passphrase(text: str) -> str:
    """WPA2-PSK: 8-63 printable ASCII characters, or 64 hex digits (the PSK itself); "" = unset."""
    if not text or _HEX64.fullmatch(text):
        return text
    if not WPA_MIN <= len(text) <= WPA_MAX:
        raise ValueError(f"a WPA passphrase has {WPA_MIN}-{WPA_MAX} characters "
                         f"(or is 64 hex digits); this one has {len(text)}")
    if not all(" " <= c <= "~" for c in text):
        raise ValueError("a WPA passphrase is printable ASCII only")
    return text


def parse_ip_list(text: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 addresses (DNS servers)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise ValueError(f"{part[:40]!r} is not an IP address") from None
    return tuple(out)


@dataclass
class Origins:
    """Where each value came from: line numbers for messages."""

    source: str
    keys: dict[tuple[str, str], int] = field(default_factory=dict)  # (section, lower key)
    subnets: dict[int, int] = field(default_factory=dict)  # explicit ifN: vlan -> line
    ranges: list[int] = field(default_factory=list)  # dhcpRangeN lines, in settings order

    def at(self, section: str, key: str) -> str:
        line = self.keys.get((section, key.lower()))
        return f"{self.source}:{line}" if line else self.source


Check = Callable[["Settings", Origins], Iterator[str]]


def check_subnets(s: Settings, o: Origins) -> Iterator[str]:
    """Explicit ``ifN`` subnets must not overlap (two bridges with one network breaks routing)."""
    explicit = [x for x in s.interfaces.subnets if x.vlan in o.subnets]
    for i, a in enumerate(explicit):
        for b in explicit[:i]:
            if a.network.overlaps(b.network):
                yield (f"{o.source}:{o.subnets[a.vlan]}: [interfaces] VLAN {a.vlan} subnet "
                       f"{a.network} overlaps VLAN {b.vlan} subnet {b.network} "
                       f"(line {o.subnets[b.vlan]})")
        if a.broadcast not in a.network or a.broadcast == a.gateway:
            yield (f"{o.source}:{o.subnets[a.vlan]}: [interfaces] VLAN {a.vlan}: broadcast "
                   f"{a.broadcast} is not a broadcast address of {a.network}")


def check_dhcp_ranges(s: Settings, o: Origins) -> Iterator[str]:
    """Each ``dhcpRangeN`` belongs to a defined VLAN and lies inside its subnet."""
    seen: dict[int, int] = {}
    for r, line in zip(s.dhcp.ranges, o.ranges, strict=False):
        where = f"{o.source}:{line}: [dhcp] range for VLAN {r.vlan}"
        if r.vlan in seen:
            yield f"{where}: VLAN {r.vlan} already has a range (line {seen[r.vlan]})"
        seen[r.vlan] = line
        subnet = s.interfaces.subnet_for_vlan(r.vlan)
        if subnet is None:
            yield f"{where}: no [interfaces] ifN entry defines VLAN {r.vlan}"
            continue
        for addr in (r.first, r.last):
            if addr not in subnet.network:
                yield f"{where}: {addr} is outside the VLAN's subnet {subnet.network}"
                break
        else:
            if int(r.first) <= int(subnet.gateway) <= int(r.last):
                yield (f"{where}: {r.first}-{r.last} contains the gateway's own "
                       f"address {subnet.gateway}")


def _radius_secret_in_vault(s: Settings) -> bool:
    in_crypt = s.crypt.radius_secret_in_vault
    return bool(s.radius.secret_in_vault if in_crypt is None else in_crypt)


def check_radius(s: Settings, o: Origins) -> Iterator[str]:
    if s.system.exec_radius and not s.radius.secret and not _radius_secret_in_vault(s):
        yield (f"{o.at('radius', 'secret')}: [radius] secret is empty but execRadius is on: "
               "set a shared secret (the same as hostapd's auth_server_shared_secret)")


def _readable(path: Path) -> str | None:
    """None if ``path`` is a readable regular file, else why not (never opens it:
    a FIFO would block ``config check``)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.strerror or "cannot read"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def check_files(s: Settings, o: Origins) -> Iterator[str]:
    """Secret files the gateway reads at start-up exist and are readable."""
    files = [("system", "cryptPassphraseFile", s.system.crypt_passphrase_file),
             ("crypt", "passphraseFile", s.crypt.passphrase_file),
             ("crypt", "pkcs11PinFile", s.crypt.pkcs11_pin_file),
             ("supervisor", "supervisorControlKeyFile",
              s.supervisor.supervisor_control_key_file)]
    for section, key, path in files:
        if path is None:
            continue
        why = _readable(path)
        if why:
            yield f"{o.at(section, key)}: [{section}] {key} = '{path}': cannot read: {why}"


def check_supervisor(s: Settings, o: Origins) -> Iterator[str]:
    """A UDP control socket off loopback needs a key (requests are then authenticated)."""
    sup = s.supervisor
    if not sup.supervisor_control_port:
        return
    if ipaddress.ip_address(sup.supervisor_control_address).is_loopback:
        return
    if sup.supervisor_control_key or sup.supervisor_control_key_file is not None:
        return
    yield (f"{o.at('supervisor', 'supervisorControlAddress')}: [supervisor] the UDP socket "
           f"would listen on {sup.supervisor_control_address}, which is not loopback: set "
           "supervisorControlKey (or supervisorControlKeyFile) so that requests are "
           "authenticated, or bind 127.0.0.1")


def check_default_vlan(s: Settings, o: Origins) -> Iterator[str]:
    vlan = s.system.default_open_vlan_id
    if s.interfaces.subnets and s.interfaces.subnet_for_vlan(vlan) is None:
        yield (f"{o.at('system', 'defaultOpenVlanId')}: [system] defaultOpenVlanId = {vlan}: "
               "no [interfaces] ifN entry has that VLAN")


def check_control_path(s: Settings, o: Origins) -> Iterator[str]:
    path = s.supervisor.supervisor_control_path
    if path is not None and len(str(path).encode()) > 107:
        yield (f"{o.at('supervisor', 'supervisorControlPath')}: [supervisor] "
               f"supervisorControlPath = '{path}': longer than a UNIX socket path may be "
               "(107 bytes)")


# Other parts may append their own checks here (one function per rule).
CHECKS: list[Check] = [check_default_vlan, check_control_path, check_subnets,
                       check_dhcp_ranges, check_radius, check_files, check_supervisor]


def validate(settings: Settings, origins: Origins) -> list[str]:
    """Every cross-field problem of ``settings``, one line each (empty when fine)."""
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(settings, origins))
    return problems
