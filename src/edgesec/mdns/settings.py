"""mDNS reflector settings (``[dns]`` keys) as one frozen dataclass.

Owns the defaults and validation of the reflector's own keys.  The lead's
``edgesec.config`` carries the raw values on ``settings.dns`` (snake_case
fields); :meth:`MdnsSettings.from_settings` reads them with ``getattr`` so a
config module that does not yet know a key still yields the documented
default.  Keys (INI name -> field, default):

================== ========================= =========
mdnsReflectIp4     mdns_reflect_ip4           true (as edgesec.config)
mdnsReflectIp6     mdns_reflect_ip6           true (as edgesec.config)
mdnsFilter         mdns_filter                ""  (kept for compatibility, unused)
mdnsAutoBridge     mdns_auto_bridge           true
mdnsBridgeExpiry   mdns_bridge_expiry         3600 (seconds, 0 = never)
mdnsServiceAllow   mdns_service_allow         ""  (comma list, empty = all)
mdnsRateLimit      mdns_rate_limit            50  (packets/s per source+iface)
mdnsMaxPacket      mdns_max_packet            9000 (bytes)
mdnsBridgePassive  mdns_bridge_passive        false
mdnsRateBurst      mdns_rate_burst            100 (packets)
mdnsDiscoveryTtl   mdns_discovery_ttl         600 (seconds)
mdnsLogGroup       mdns_log_group             5353 (NFLOG group)
================== ========================= =========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MdnsSettings", "parse_service_list"]


def parse_service_list(value: Any) -> tuple[str, ...]:
    """Normalise a comma list (or sequence) of service types to ``_x._tcp.local``."""
    if value is None:
        return ()
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


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class MdnsSettings:
    """Everything the mDNS service needs beyond the subnet list."""

    reflect_ip4: bool = True
    reflect_ip6: bool = True
    auto_bridge: bool = True
    bridge_passive: bool = False
    bridge_expiry: float = 3600.0
    service_allow: tuple[str, ...] = ()
    rate_limit: float = 50.0
    rate_burst: int = 100
    max_packet: int = 9000
    discovery_ttl: float = 600.0
    log_group: int = 5353

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
    def from_settings(cls, settings: Any) -> MdnsSettings:
        """Build from ``settings.dns`` (fields missing there take the defaults)."""
        dns = getattr(settings, "dns", settings)
        d = cls()

        def get(name: str, default: Any) -> Any:
            value = getattr(dns, name, None)
            return default if value is None else value

        return cls(
            reflect_ip4=_as_bool(get("mdns_reflect_ip4", d.reflect_ip4)),
            reflect_ip6=_as_bool(get("mdns_reflect_ip6", d.reflect_ip6)),
            auto_bridge=_as_bool(get("mdns_auto_bridge", d.auto_bridge)),
            bridge_passive=_as_bool(get("mdns_bridge_passive", d.bridge_passive)),
            bridge_expiry=float(get("mdns_bridge_expiry", d.bridge_expiry)),
            service_allow=parse_service_list(get("mdns_service_allow", "")),
            rate_limit=float(get("mdns_rate_limit", d.rate_limit)),
            rate_burst=int(get("mdns_rate_burst", d.rate_burst)),
            max_packet=int(get("mdns_max_packet", d.max_packet)),
            discovery_ttl=float(get("mdns_discovery_ttl", d.discovery_ttl)),
            log_group=int(get("mdns_log_group", d.log_group)),
        )
