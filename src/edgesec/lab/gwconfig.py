"""The edgesec configuration the lab generates for its gateway namespace.

Owns: rendering a ``config.ini`` (the original's INI dialect) that runs every
service of the gateway inside the lab: subnets with a VLAN pool sized for the
requested number of devices (``allocateVlans = true`` gives each device its
own VLAN and subnet), dnsmasq ranges for every subnet, the firewall with
``natInterface`` on the gateway's wan link, RADIUS on the gateway's loopback
(the lab plays hostapd there), the mDNS reflector, capture and the vault.
All paths are relative to the lab's state directory.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
from dataclasses import dataclass
from pathlib import Path

from edgesec.atomic import write_atomic
from edgesec.config import Settings, parse_settings

POOL_NETWORK = ipaddress.IPv4Network("10.100.0.0/16")
POOL_PREFIX_LEN = 28  # 14 addresses per device subnet
POOL_FIRST_VLAN = 100
OPEN_VLAN = 1
OPEN_SUBNET = ipaddress.IPv4Network("10.0.1.0/24")
MIN_POOL = 16
API_PORT = 8080  # the management API on the gateway namespace's loopback
SLACK = 4  # spare pool subnets beyond the requested devices


@dataclass(frozen=True)
class LabSecrets:
    """Per-lab secrets: generated once, kept in the state dir (mode 0600)."""

    radius_secret: str
    wpa_passphrase: str
    crypt_passphrase: str

    @classmethod
    def generate(cls) -> LabSecrets:
        return cls(secrets.token_urlsafe(18), secrets.token_urlsafe(12), secrets.token_urlsafe(24))


def pool_prefix(devices: int) -> ipaddress.IPv4Network:
    """The smallest pool network that gives ``devices`` (plus slack) a /28 each."""
    wanted = max(MIN_POOL, devices + SLACK)
    bits = math.ceil(math.log2(wanted))
    plen = POOL_PREFIX_LEN - bits
    if plen < POOL_NETWORK.prefixlen or wanted > 4094 - POOL_FIRST_VLAN:
        raise ValueError(f"{devices} devices do not fit in the lab's VLAN pool")
    return ipaddress.IPv4Network(f"{POOL_NETWORK.network_address}/{plen}")


def render_ini(sections: dict[str, dict[str, object]]) -> str:
    """INI text in the original's dialect (strings quoted, booleans true/false)."""
    lines: list[str] = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)


def sections(
    devices: int,
    lab_secrets: LabSecrets,
    *,
    wan_ifname: str = "wan0",
    dns_server: str = "198.51.100.2",
    radius_port: int = 1812,
) -> dict[str, dict[str, object]]:
    """The config as a dict of sections (before the pool's DHCP ranges are added)."""
    gw = OPEN_SUBNET.network_address + 1
    return {
        "system": {
            "binPath": "/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin",
            "createInterfaces": True,
            "ignoreErrorOnIfCreate": True,
            "allowAllConnections": True,
            "allowAllNat": False,
            "allocateVlans": True,
            "defaultOpenVlanId": OPEN_VLAN,
            "setIpForward": True,
            "execFirewall": True,
            "execRadius": True,
            "execDhcp": True,
            "execAp": False,
            "execCapture": True,
            "execMdnsForward": True,
            "connectionDbPath": "connections.sqlite",
            "cryptDbPath": "crypt.sqlite",
            "pidFilePath": "edgesec.pid",
        },
        "capture": {
            "captureDbPath": "capture.sqlite",
            "pcapDirPath": "pcap",
            "middlewares": "header,cleaner",
            "immediate": True,
            "promiscuous": True,
        },
        "supervisor": {"supervisorControlPath": "edgesec.sock", "supervisorControlPort": 0},
        "ap": {"wpaPassphrase": lab_secrets.wpa_passphrase, "ssid": "edgesec-lab"},
        "radius": {
            "port": radius_port,
            "clientIP": "127.0.0.1",
            "clientMask": 32,
            "serverIP": "127.0.0.1",
            "serverMask": 32,
            "secret": lab_secrets.radius_secret,
            # The lab joins all its devices at once: a burst that fits them; a flood
            # of further MACs is still held to the default rate.
            "newDeviceBurst": devices + SLACK,
        },
        "nat": {"natInterface": wan_ifname},
        "firewall": {"tableName": "edgesec"},
        # Detection and containment (docs/detect.md): the lab's devices are
        # contained automatically, so `edgesec lab attack` shows the whole path.
        "detect": {"enabled": True, "containment": "quarantine", "learningWindow": 300,
                   "detectDbPath": "detect.sqlite"},
        "dns": {"servers": dns_server, "mdnsReflectIp4": True, "mdnsReflectIp6": False},
        "dhcp": {
            "dhcpConfigPath": "dnsmasq.conf",
            "dhcpScriptPath": "dnsmasq_exec.sh",
            "dhcpLeasefilePath": "dnsmasq.leases",
            f"dhcpRange{OPEN_VLAN}": f"{OPEN_VLAN},{gw + 1},{OPEN_SUBNET.broadcast_address - 1},"
            f"{OPEN_SUBNET.netmask},24h",
        },
        "api": {"socketPath": "api.sock", "port": API_PORT, "tokenFile": "api-tokens.json"},
        "interfaces": {
            "bridgePrefix": "br",
            "interfacePrefix": "br",
            f"if{OPEN_VLAN}": f"{OPEN_VLAN},{gw},{OPEN_SUBNET.broadcast_address},"
            f"{OPEN_SUBNET.netmask}",
            "vlanPoolPrefix": str(pool_prefix(devices)),
            "vlanPoolPrefixLen": POOL_PREFIX_LEN,
            "vlanPoolFirstVlan": POOL_FIRST_VLAN,
        },
    }


def render(devices: int, lab_secrets: LabSecrets, *, wan_ifname: str = "wan0",
           dns_server: str = "198.51.100.2", radius_port: int = 1812) -> str:
    """The full config text: :func:`sections` plus one DHCP range per pool subnet."""
    sect = sections(devices, lab_secrets, wan_ifname=wan_ifname, dns_server=dns_server,
                    radius_port=radius_port)
    settings = parse_settings(render_ini(sect))
    for sub in settings.interfaces.subnets:
        if sub.vlan == OPEN_VLAN:
            continue
        hosts = list(sub.network.hosts())
        sect["dhcp"][f"dhcpRange{sub.vlan}"] = (
            f"{sub.vlan},{hosts[1]},{hosts[-1]},{sub.netmask},24h"
        )
    return render_ini(sect)


def write(directory: Path, devices: int, lab_secrets: LabSecrets) -> Path:
    """Write ``directory/config.ini`` and return its path."""
    path = directory / "config.ini"
    write_atomic(path, render(devices, lab_secrets), 0o600)
    return path


def check(settings: Settings, devices: int) -> list[str]:
    """Problems that would stop ``devices`` lab devices from joining (empty if none)."""
    problems = []
    if not settings.system.exec_radius:
        problems.append("execRadius is false: the lab cannot ask edgesec about devices")
    pool = len(settings.interfaces.pool_vlans)
    if settings.system.allocate_vlans and pool and pool < devices:
        problems.append(f"the VLAN pool has {pool} subnets for {devices} devices")
    return problems
