"""The mDNS reflector's settings: its view of the ``[dns]`` section.

The keys (``mdnsReflectIp4``, ``mdnsAutoBridge``, ``mdnsRateLimit``...) are
declared, defaulted and parsed once, by :class:`edgesec.config.DnsSettings`
(see docs/configuration.md); :class:`MdnsSettings` is the typed value the
service holds, with the range checks the reflector needs.
:func:`parse_service_list` is the parser the loader uses for
``mdnsServiceAllow`` (service types normalised to ``_x._tcp.local``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesec.config import Settings

__all__ = ["MdnsSettings", "parse_service_list"]


def parse_service_list(value: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a comma list (or sequence) of service types to ``_x._tcp.local``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        name = str(item).strip().strip('"').lower().rstrip(".")
        if not name:
            continue
        if not name.endswith(".local"):
            name += ".local"
        labels = name.split(".")
        if len(labels) < 3 or labels[-2] not in ("_tcp", "_udp") or not labels[-3].startswith("_"):
            raise ValueError(f"mdnsServiceAllow: {item!r} is not a service type like _http._tcp")
        out.append(name)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class MdnsSettings:
    """Everything the mDNS service needs beyond the subnet list.

    Built only by :meth:`from_settings`; the defaults are those of
    :class:`edgesec.config.DnsSettings` (``MdnsSettings.from_settings(Settings())``).
    """

    reflect_ip4: bool
    reflect_ip6: bool
    auto_bridge: bool
    bridge_passive: bool
    bridge_expiry: float
    service_allow: tuple[str, ...]
    rate_limit: float
    rate_burst: int
    max_packet: int
    discovery_ttl: float
    log_group: int

    def __post_init__(self) -> None:
        if self.rate_limit <= 0 or self.rate_burst < 1:
            raise ValueError("mdnsRateLimit and mdnsRateBurst must be positive")
        if not 12 <= self.max_packet <= 65535:
            raise ValueError("mdnsMaxPacket must be within 12..65535")
        if self.bridge_expiry < 0 or self.discovery_ttl <= 0:
            raise ValueError("mdnsBridgeExpiry must be >= 0 and mdnsDiscoveryTtl > 0")
        if not 0 < self.log_group < 65536:
            raise ValueError("mdnsLogGroup must be within 1..65535")

    @classmethod
    def from_settings(cls, settings: Settings) -> MdnsSettings:
        """The reflector's view of ``settings.dns``."""
        dns = settings.dns
        return cls(
            reflect_ip4=dns.mdns_reflect_ip4,
            reflect_ip6=dns.mdns_reflect_ip6,
            auto_bridge=dns.mdns_auto_bridge,
            bridge_passive=dns.mdns_bridge_passive,
            bridge_expiry=float(dns.mdns_bridge_expiry),
            service_allow=dns.mdns_service_allow,
            rate_limit=float(dns.mdns_rate_limit),
            rate_burst=dns.mdns_rate_burst,
            max_packet=dns.mdns_max_packet,
            discovery_ttl=float(dns.mdns_discovery_ttl),
            log_group=dns.mdns_log_group,
        )
