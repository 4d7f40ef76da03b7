"""What the detection engine knows: its thresholds and the registry's view (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgesec.config import DetectSettings


@dataclass(frozen=True)
class DetectConfig:
    """Thresholds (``[detect]`` keys, see docs/detect.md)."""

    learning_window: int = 86400
    scan_window: int = 60
    scan_ports: int = 15
    scan_hosts: int = 25
    lateral_targets: int = 6
    lateral_window: int = 10
    dns_window: int = 60
    dns_suspicious: int = 10
    dns_label_length: int = 40
    dns_entropy: float = 3.9
    nxdomain_burst: int = 20
    upload_window: int = 60
    upload_factor: int = 10
    upload_min_bytes: int = 2 * 1024 * 1024
    upload_ceiling: int = 64 * 1024 * 1024
    spoof_packets: int = 3
    new_device_flood: int = 10
    alerts_per_minute: int = 60
    # DNS to the gateway may arrive redirected to the split-DNS forwarder's port
    # (with br_netfilter the bridge tap sees the packet after the redirect)
    dns_forward_port: int = 0

    @classmethod
    def from_settings(cls, settings: DetectSettings) -> DetectConfig:
        """The thresholds of a ``[detect]`` section (keys it lacks keep their defaults)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)
                      if hasattr(settings, f.name)})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class DeviceView:
    """What the engine knows of one registry device."""

    mac: str
    ips: tuple[str, ...] = ()
    nat: bool = False
    peers: frozenset[str] = frozenset()  # IPs it is bridged to


@dataclass
class World:
    gateway_ips: frozenset[str] = frozenset()
    gateway_macs: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network, ...] = ()
    devices: dict[str, DeviceView] = field(default_factory=dict)
    by_ip: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, gateway_ips: Iterable[str], gateway_macs: Iterable[str],
              networks: Iterable[str], devices: Iterable[DeviceView]) -> World:
        devs = {d.mac: d for d in devices}
        return cls(frozenset(gateway_ips), frozenset(m.lower() for m in gateway_macs),
                   tuple(ipaddress.IPv4Network(n, strict=False) for n in networks), devs,
                   {ip: d.mac for d in devs.values() for ip in d.ips})

    def internal(self, ip: str) -> bool:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self.networks)
