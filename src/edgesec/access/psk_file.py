"""The PSK-file backend (``[ap] pskBackend = file``): per-device WiFi passphrases and
VLANs without RADIUS (beyond the original; off by default).

Owns the pure rendering of hostapd's ``wpa_psk_file`` (``keyid=… vlanid=… MAC
passphrase`` lines, reloaded with ``RELOAD_WPA_PSK``) and of per-device WPA3
``sae_password=<pw>|mac=<mac>|vlanid=<v>|id=<keyid>`` entries, from the
registry's devices and open tickets.  A passphrase that would break either
syntax is refused with :class:`PskFileError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.registry import Device, Ticket

WILDCARD = "00:00:00:00:00:00"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


class PskFileError(ValueError):
    """A passphrase or entry that cannot be written safely."""


@dataclass(frozen=True, slots=True)
class PskEntry:
    """One line of the PSK file / one sae_password entry."""

    mac: str  # WILDCARD for "any station"
    passphrase: str
    vlan: int = 0
    keyid: str = ""


def check_passphrase(psk: str, *, sae: bool = False) -> str:
    """A WPA passphrase safe for hostapd's files: 8-63 printable ASCII, or 64 hex
    digits; no leading/trailing space (hostapd would keep or strip it
    inconsistently); for SAE entries also no ``|`` (the field separator)."""
    if _HEX64.fullmatch(psk) and not sae:
        return psk
    if not 8 <= len(psk) <= 63:
        raise PskFileError("a passphrase must be 8-63 characters (or 64 hex digits)")
    if any(not 0x20 <= ord(c) < 0x7F for c in psk):
        raise PskFileError("a passphrase must be printable ASCII (no line breaks or NUL)")
    if psk != psk.strip():
        raise PskFileError("a passphrase must not start or end with a space")
    if sae and "|" in psk:
        raise PskFileError("an SAE password must not contain '|' (hostapd's field separator)")
    return psk


def keyid_for(mac: str) -> str:
    """Key identifier hostapd reports in AP-STA-CONNECTED (``keyid=``)."""
    return "dev-" + mac.replace(":", "")


def ticket_keyid(passphrase: str) -> str:
    return "ticket-" + passphrase[-6:]


def entries_from_registry(devices: Iterable[Device], tickets: Iterable[Ticket], *,
                          default_psk: str, allow_all: bool, default_vlan: int,
                          now: float) -> list[PskEntry]:
    """Entries for every allowed device (its own passphrase, else the AP's), open
    tickets (wildcard, recognised by keyid when a station uses them) and, with
    allowAllConnections, the AP passphrase for any station."""
    out: list[PskEntry] = []
    for dev in sorted(devices, key=lambda d: d.mac):
        if not dev.allow:
            continue
        psk = dev.psk or default_psk
        if psk:
            out.append(PskEntry(dev.mac, psk, dev.vlanid, keyid_for(dev.mac)))
    for t in sorted(tickets, key=lambda t: t.created):
        if not t.used_by and t.expires > now:
            out.append(PskEntry(WILDCARD, t.passphrase, t.vlanid, ticket_keyid(t.passphrase)))
    if allow_all and default_psk:
        out.append(PskEntry(WILDCARD, default_psk, default_vlan, "default"))
    return out


def render_wpa_psk_file(entries: Iterable[PskEntry]) -> str:
    """Text of ``wpa_psk_file``; raises :class:`PskFileError` for an unsafe entry."""
    lines = ["# written by edgesec; changes are overwritten\n"]
    for e in entries:
        if not _MAC.fullmatch(e.mac):
            raise PskFileError(f"invalid MAC {e.mac!r}")
        check_passphrase(e.passphrase)
        prefix = f"keyid={e.keyid} " if e.keyid else ""
        if e.vlan > 0:
            prefix += f"vlanid={e.vlan} "
        lines.append(f"{prefix}{e.mac} {e.passphrase}\n")
    return "".join(lines)


def sae_password_items(entries: Iterable[PskEntry]) -> list[tuple[str, str]]:
    """``sae_password`` hostapd.conf items, one per entry (hex PSKs cannot be SAE
    passwords and are skipped)."""
    items = []
    for e in entries:
        if _HEX64.fullmatch(e.passphrase):
            continue
        value = check_passphrase(e.passphrase, sae=True)
        if e.mac != WILDCARD:
            value += f"|mac={e.mac}"
        if e.vlan > 0:
            value += f"|vlanid={e.vlan}"
        if e.keyid:
            value += f"|id={e.keyid}"
        items.append(("sae_password", value))
    return items


def backend_items(settings: Settings, entries: list[PskEntry]) -> list[tuple[str, str]]:
    """hostapd.conf items of the file backend: ``wpa_psk_file`` and, when the key
    management includes SAE, the ``sae_password`` entries."""
    path = settings.ap.wpa_psk_file
    if path is None:
        raise ValueError("[ap] wpaPskFile is empty: pskBackend = file needs it")
    items = [("wpa_psk_file", str(path))]
    if "SAE" in settings.ap.wpa_key_mgmt.split():
        items += sae_password_items(entries)
    return items
