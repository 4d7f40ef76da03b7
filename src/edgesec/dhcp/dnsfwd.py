"""Split DNS: local names for every device, the internet's names only with NAT (pure).

Owns the decision whether DNS is split (:func:`forwarder_port`) and the
configuration of the second, forwarding dnsmasq (:func:`render_forwarder_config`).

A device without NAT must not use the gateway's resolver as a channel to the
internet (a query for ``<data>.example.com`` carries data to whoever serves
``example.com``). dnsmasq cannot pick upstream servers per client, so:

* the main dnsmasq (DHCP, port 53) answers local names only — DHCP names,
  ``/etc/hosts`` — and has no upstream server (``[dns] servers`` are not
  written to it); anything else gets REFUSED;
* a second dnsmasq (no DHCP) listens on ``forwarderPort`` of the device
  bridges and forwards to ``[dns] servers``; unqualified names and reverse
  lookups of the device subnets it asks the main instance (127.0.0.1:53), so
  DHCP names resolve the same through it;
* the firewall redirects port-53 traffic to the gateway from addresses in its
  ``nat`` set to ``forwarderPort`` (one set lookup per new flow) and accepts
  ``forwarderPort`` only from that set, so ADD_NAT/REMOVE_NAT switch a device
  between the two resolvers without restarts (:mod:`edgesec.dhcp.dnsflush`
  forgets the device's DNS flows, so a fixed source port switches too).

The split is on when ``[dns] localOnlyWithoutNat`` (default true), a NAT
interface, upstream ``servers`` and ``execDhcp`` are all set; otherwise
:func:`forwarder_port` is 0 and the main dnsmasq keeps the original's
``server=`` lines only when ``localOnlyWithoutNat = false``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesec.config import Settings

__all__ = ["forwarder_argv", "forwarder_config_path", "forwarder_port", "local_only",
           "render_forwarder_config"]

MAIN_DNS = "127.0.0.1#53"


class SplitDnsError(ValueError):
    """The split-DNS settings are inconsistent."""


def local_only(settings: Settings) -> bool:
    """Does the main dnsmasq answer local names only (no ``server=`` lines)?"""
    return settings.dns.local_only_without_nat


def forwarder_port(settings: Settings) -> int:
    """Port of the forwarding dnsmasq, or 0 when DNS is not split."""
    dns = settings.dns
    if not local_only(settings) or not dns.servers:
        return 0
    if not settings.nat.nat_interface or not settings.system.exec_dhcp:
        return 0
    port = dns.forwarder_port
    if port in (0, 53, 67):
        raise SplitDnsError(f"[dns] forwarderPort {port} is not usable (0, 53 and 67 are taken)")
    return port


def render_forwarder_config(settings: Settings) -> str:
    """dnsmasq.conf of the forwarding instance (pure)."""
    lines = [f"port={forwarder_port(settings)}", "no-resolv"]
    for server in settings.dns.servers:
        ipaddress.ip_address(server)  # validated by render_config already
        lines.append(f"server={server}")
    lines.append(f"server=//{MAIN_DNS}")
    for sub in settings.interfaces.subnets:
        lines.append(f"rev-server={sub.network},{MAIN_DNS}")
    lines += [f"interface={b}" for b in sorted({s.bridge for s in settings.interfaces.subnets})]
    lines += ["pid-file="]
    return "\n".join(lines)


def forwarder_config_path(settings: Settings) -> Path:
    """``dnsmasq-forward.conf`` beside ``dhcpConfigPath``."""
    main = settings.dhcp.dhcp_config_path
    if main is None:
        raise SplitDnsError("[dhcp] dhcpConfigPath is empty: the forwarder's config goes "
                            "beside it")
    return main.with_name(f"{main.stem}-forward{main.suffix or '.conf'}")


def forwarder_argv(settings: Settings) -> list[str]:
    """How the forwarding dnsmasq is run (as the main one, on its own config)."""
    return [str(settings.dhcp.dhcp_bin_path), "--bind-dynamic", "--no-daemon", "-C",
            str(forwarder_config_path(settings))]
