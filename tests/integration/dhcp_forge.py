"""Forged DHCP from a device: DISCOVER + REQUEST with a chosen ``chaddr`` (scapy).

Run inside a device namespace: ``python dhcp_forge.py IFACE MAC [MAC ...]``.
The Ethernet source stays the interface's own address; only the BOOTP client
hardware address is forged, as a device claiming other devices' MACs would.
Prints ``{mac: leased address or null}`` as JSON.
"""

from __future__ import annotations

import json
import random
import sys

from scapy.all import BOOTP, DHCP, IP, UDP, Ether, conf, get_if_hwaddr, srp1


def _option(pkt: object, name: str) -> object:
    for opt in pkt[DHCP].options:  # type: ignore[index]
        if isinstance(opt, tuple) and opt[0] == name:
            return opt[1]
    return None


def lease(iface: str, mac: str) -> str | None:
    chaddr = bytes.fromhex(mac.replace(":", ""))
    xid = random.getrandbits(32)
    base = (Ether(src=get_if_hwaddr(iface), dst="ff:ff:ff:ff:ff:ff")
            / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67))
    bootp = BOOTP(chaddr=chaddr, xid=xid, flags=0x8000)
    offer = srp1(base / bootp / DHCP(options=[("message-type", "discover"), "end"]),
                 iface=iface, timeout=3, retry=2)
    if offer is None or DHCP not in offer or _option(offer, "message-type") != 2:
        return None
    addr = offer[BOOTP].yiaddr
    request = DHCP(options=[("message-type", "request"), ("requested_addr", addr),
                            ("server_id", _option(offer, "server_id")), "end"])
    ack = srp1(base / bootp / request, iface=iface, timeout=3, retry=2)
    if ack is None or DHCP not in ack or _option(ack, "message-type") != 5:
        return None
    return addr


def main(argv: list[str]) -> int:
    conf.verb = 0
    conf.checkIPaddr = False  # replies come from the server's address, not 255.255.255.255
    iface, macs = argv[0], argv[1:]
    print(json.dumps({mac: lease(iface, mac) for mac in macs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
