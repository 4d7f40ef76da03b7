"""dnsmasq's lease hook: ``python -m edgesec.dhcp.hook [--socket PATH] ACTION MAC IP [HOST]``.

Owns the translation of one dnsmasq ``dhcp-script`` call into one supervisor
command, ``SET_IP <action> <mac> <ip> <interface>`` (type first, as the
original's code sends it), sent to the supervisor's UNIX socket; it waits for
the reply.  The fourth word (new) is the interface the request came in on,
from dnsmasq's ``DNSMASQ_INTERFACE`` (``-`` when dnsmasq did not set it, as
for ``old`` at its start-up): it marks the command as a lease report, which
the registry accepts only for a known device on the VLAN of that interface,
so a forged ``chaddr`` creates and changes nothing.

Nothing from the client is trusted: the action must be ``add``/``old``/``del``
(``arp-add``, ``arp-del``, ``init``, ``tftp`` are ignored with exit 0), the MAC
must be six hex octets (normalised to lower case), the address IPv4. The
hostname is chosen by the client and is never forwarded. Exit status: 0 sent
and answered OK (or ignored), 1 rejected or answered otherwise, 2 unreachable.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from dataclasses import dataclass

ACTIONS = ("add", "old", "del")
IGNORED = ("arp-add", "arp-del", "init", "tftp", "relay-snoop")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_IFNAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")


class HookError(ValueError):
    """The arguments dnsmasq passed are not a lease we report."""


@dataclass(frozen=True)
class LeaseEvent:
    action: str
    mac: str
    ip: str
    interface: str = "-"

    def command(self) -> str:
        return f"SET_IP {self.action} {self.mac} {self.ip} {self.interface}"


def interface_from(value: str | None) -> str:
    """dnsmasq's ``DNSMASQ_INTERFACE`` as one word; ``-`` when unset.

    A name that is not a Linux interface name is refused (it cannot have come
    from dnsmasq)."""
    if not value:
        return "-"
    if value == "-" or not _IFNAME.fullmatch(value):
        raise HookError(f"invalid DNSMASQ_INTERFACE {value[:20]!r}")
    return value


def parse_lease_args(args: list[str], interface: str | None = None) -> LeaseEvent | None:
    """Validate dnsmasq's arguments; None for actions we ignore; HookError when invalid.

    ``interface`` is ``DNSMASQ_INTERFACE`` (None or "" when dnsmasq did not set it).
    """
    if not args:
        raise HookError("no action given")
    action = args[0]
    if action in IGNORED:
        return None
    if action not in ACTIONS:
        raise HookError(f"unknown action {action[:20]!r}")
    if len(args) < 3:
        raise HookError(f"{action}: expected MAC and IP")
    if len(args) > 4:
        raise HookError(f"{action}: too many arguments")
    mac, ip = args[1], args[2]
    if not _MAC.fullmatch(mac):
        raise HookError(f"invalid MAC {mac[:40]!r}")
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise HookError(f"invalid IPv4 address {ip[:40]!r}") from None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback or int(addr) == 0xFFFFFFFF:
        raise HookError(f"{addr} is not a lease address")
    return LeaseEvent(action, mac.lower(), str(addr), interface_from(interface))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgesec.dhcp.hook", description=__doc__)
    ap.add_argument("--socket", required=True, help="supervisor UNIX socket")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("args", nargs=argparse.REMAINDER)
    opts = ap.parse_args(argv)
    try:
        event = parse_lease_args(opts.args, os.environ.get("DNSMASQ_INTERFACE"))
    except HookError as exc:
        print(f"edgesec lease hook: {exc}", file=sys.stderr)
        return 1
    if event is None:
        return 0
    from edgesec.supervisor.client import ClientError, SupervisorClient

    try:
        with SupervisorClient(unix_path=opts.socket, timeout=opts.timeout) as client:
            reply = client.request(event.command())
    except ClientError as exc:
        print(f"edgesec lease hook: {exc}", file=sys.stderr)
        return 2
    if reply != "OK\n":
        print(f"edgesec lease hook: {event.command()} answered {reply.strip()!r}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
