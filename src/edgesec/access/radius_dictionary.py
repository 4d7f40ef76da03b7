"""A small RADIUS dictionary (pyrad format) for the attributes of hostapd's
MAC-ACL exchange; used by the tests and the benchmark's pyrad client."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyrad.dictionary import Dictionary

DICTIONARY = """\
ATTRIBUTE User-Name 1 string
ATTRIBUTE User-Password 2 string encrypt=1
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE NAS-Port 5 integer
ATTRIBUTE Service-Type 6 integer
ATTRIBUTE Framed-MTU 12 integer
ATTRIBUTE Reply-Message 18 string
ATTRIBUTE State 24 octets
ATTRIBUTE Class 25 octets
ATTRIBUTE Session-Timeout 27 integer
ATTRIBUTE Called-Station-Id 30 string
ATTRIBUTE Calling-Station-Id 31 string
ATTRIBUTE NAS-Identifier 32 string
ATTRIBUTE Proxy-State 33 octets
ATTRIBUTE Acct-Session-Id 44 string
ATTRIBUTE NAS-Port-Type 61 integer
ATTRIBUTE Tunnel-Type 64 integer has_tag
ATTRIBUTE Tunnel-Medium-Type 65 integer has_tag
ATTRIBUTE Tunnel-Password 69 string has_tag,encrypt=2
ATTRIBUTE Connect-Info 77 string
ATTRIBUTE EAP-Message 79 octets
ATTRIBUTE Message-Authenticator 80 octets
ATTRIBUTE Tunnel-Private-Group-Id 81 string has_tag
VALUE Service-Type Framed-User 2
VALUE Service-Type Call-Check 10
VALUE NAS-Port-Type Wireless-802.11 19
VALUE NAS-Port-Type Ethernet 15
VALUE Tunnel-Type VLAN 13
VALUE Tunnel-Medium-Type IEEE-802 6
"""


def pyrad_dictionary() -> Dictionary:
    """A pyrad Dictionary with the attributes above."""
    from pyrad.dictionary import Dictionary

    d = Dictionary()
    d.ReadDictionary(io.StringIO(DICTIONARY))
    return d
