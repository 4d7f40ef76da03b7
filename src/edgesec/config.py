"""Load the original edgesec ``config.ini`` into typed, validated, frozen settings.

The INI dialect follows the original (minIni): section and key names are
case-insensitive, values may be double-quoted, ``#``/``;`` start a comment
outside quotes.  Booleans are strict (``true/false/yes/no/on/off/1/0``, any
case): the original read only the first character, so ``trust-nobody`` was
true.  Every key is described once in a section schema (name, parser,
default); unknown keys and sections are warnings with their line (errors with
``strict=True``), bad values raise :class:`ConfigError` naming file, line,
section, key and value (secret values redacted).  Cross-field checks live in
:mod:`edgesec.config_check`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgesec.config_check import Origins, parse_ip_list, parse_wpa_passphrase, redact
from edgesec.config_check import validate as _validate
from edgesec.mdns.settings import parse_service_list as parse_mdns_services

log = logging.getLogger(__name__)

IFNAMSIZ = 15  # longest Linux interface name


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names where it is.

    ``problems`` lists every problem found (the message is the first of them).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


# ---------------------------------------------------------------------------
# value parsers: str -> typed value, raising ValueError with a short reason


TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})


def parse_bool(text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def parse_int(text: str) -> int:
    """Decimal (leading zeros allowed, as minIni's strtol), or 0x/0o/0b-prefixed."""
    for base in (10, 0):
        try:
            return int(text, base)
        except ValueError:
            pass
    raise ValueError("expected an integer")


def parse_count(text: str) -> int:
    """A non-negative integer (a rate, a size, a number of seconds; 0 often means off)."""
    n = parse_int(text)
    if n < 0:
        raise ValueError("expected 0 or a positive integer")
    return n


def parse_port(text: str) -> int:
    port = parse_int(text)
    if not 0 <= port <= 65535:
        raise ValueError("expected a port number 0-65535")
    return port


def parse_ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError("expected an IPv4 address") from None


def parse_prefixlen(text: str) -> int:
    n = parse_int(text)
    if not 0 <= n <= 32:
        raise ValueError("expected a prefix length 0-32")
    return n


def parse_ifname(text: str) -> str:
    if len(text) > IFNAMSIZ or any(c in text for c in " /:\t"):
        raise ValueError(f"expected an interface name of at most {IFNAMSIZ} characters")
    return text


def parse_str(text: str) -> str:
    return text


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_reserve(text: str) -> str:
    """Free space to keep: bytes (``67108864``) or a share of the filesystem (``10%``)."""
    t = text.strip()
    try:
        value = float(t[:-1]) if t.endswith("%") else parse_int(t)
    except ValueError:
        raise ValueError("expected bytes or a percentage such as 10%") from None
    if not 0 <= value < (100 if t.endswith("%") else float("inf")):  # also rejects nan
        raise ValueError("expected bytes or a percentage below 100%")
    return t

SERVICE_NAMES = ("subnets", "firewall", "radius", "hostapd", "dhcp", "mdns", "capture")


def parse_service_list(text: str) -> tuple[str, ...]:
    """``requireServices``: comma list of service names, or ``none``."""
    names = parse_list(text.lower())
    if names == ("none",):
        return ("none",)
    bad = [n for n in names if n not in SERVICE_NAMES]
    if bad:
        raise ValueError(f"unknown service {bad[0]!r} (one of {', '.join(SERVICE_NAMES)}, "
                         "or none)")
    return names


def parse_nft_backend(text: str) -> str:
    if text not in ("auto", "library", "binary"):
        raise ValueError("expected auto, library or binary")
    return text


def parse_colon_list(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(":") if part)


# ---------------------------------------------------------------------------
# structured list values


@dataclass(frozen=True, slots=True)
class Subnet:
    """One device subnet: a VLAN, its bridge and the gateway's address on it."""

    vlan: int
    gateway: ipaddress.IPv4Address
    broadcast: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    bridge: str

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)


@dataclass(frozen=True, slots=True)
class DhcpRange:
    vlan: int
    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address
    netmask: str
    lease_time: str


def parse_interface_entry(text: str, prefix: str) -> Subnet:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError('expected "vlan,gateway_ip,broadcast_ip,netmask"')
    vlan = parse_vlan(parts[0])
    gateway = ipaddress.IPv4Address(parse_ipv4(parts[1]))
    broadcast = ipaddress.IPv4Address(parse_ipv4(parts[2]))
    try:
        network = ipaddress.IPv4Network(f"{gateway}/{parts[3]}", strict=False)
    except ValueError:
        raise ValueError("expected a netmask such as 255.255.255.0") from None
    return Subnet(vlan, gateway, broadcast, network, parse_ifname(f"{prefix}{vlan}"))


def parse_dhcp_range(text: str) -> DhcpRange:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 5:
        raise ValueError('expected "vlan,first_ip,last_ip,netmask,lease_time"')
    vlan = parse_vlan(parts[0])
    first = ipaddress.IPv4Address(parse_ipv4(parts[1]))
    last = ipaddress.IPv4Address(parse_ipv4(parts[2]))
    netmask = str(ipaddress.IPv4Network(f"0.0.0.0/{parse_ipv4(parts[3])}").netmask)
    if int(last) < int(first):
        raise ValueError("last address is below the first")
    if not re.fullmatch(r"\d+[smhdw]?|infinite", parts[4]):
        raise ValueError("expected a lease time such as 24h, 30m or infinite")
    return DhcpRange(vlan, first, last, netmask, parts[4])


def parse_vlan(text: str) -> int:
    vlan = parse_int(text)
    if not 0 <= vlan <= 4094:
        raise ValueError("expected a VLAN id 0-4094")
    return vlan


# ---------------------------------------------------------------------------
# settings dataclasses: field name = snake_case of the INI key


def key(ini: str, parser: Callable[[str], Any], default: Any) -> Any:
    """Declare a setting read from INI key ``ini`` with ``parser``."""
    return field(default=default, metadata={"ini": ini, "parser": parser})


def path_key(ini: str, default: str) -> Any:
    return field(default=Path(default) if default else None, metadata={"ini": ini, "path": True})


@dataclass(frozen=True)
class SystemSettings:
    bin_path: tuple[str, ...] = key(
        "binPath", parse_colon_list, ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")
    )
    create_interfaces: bool = key("createInterfaces", parse_bool, True)
    ignore_error_on_if_create: bool = key("ignoreErrorOnIfCreate", parse_bool, True)
    allow_all_connections: bool = key("allowAllConnections", parse_bool, False)
    allow_all_nat: bool = key("allowAllNat", parse_bool, False)
    ap_detect: bool = key("apDetect", parse_bool, False)
    generate_ssid: bool = key("generateSsid", parse_bool, False)
    allocate_vlans: bool = key("allocateVlans", parse_bool, False)
    default_open_vlan_id: int = key("defaultOpenVlanId", parse_vlan, 0)
    exec_ap: bool = key("execAp", parse_bool, False)
    exec_radius: bool = key("execRadius", parse_bool, False)
    exec_dhcp: bool = key("execDhcp", parse_bool, False)
    exec_capture: bool = key("execCapture", parse_bool, False)
    exec_mdns_forward: bool = key("execMdnsForward", parse_bool, False)
    exec_firewall: bool = key("execFirewall", parse_bool, False)
    exec_crypt: bool = key("execCrypt", parse_bool, True)
    set_ip_forward: bool = key("setIpForward", parse_bool, False)
    connection_db_path: Path | None = path_key("connectionDbPath", "edgesec.sqlite")
    crypt_db_path: Path | None = path_key("cryptDbPath", "crypt.sqlite")
    pid_file_path: Path | None = path_key("pidFilePath", "edgesec.pid")
    crypt_passphrase_file: Path | None = path_key("cryptPassphraseFile", "")
    crypt_backend: str = key("cryptBackend", parse_str, "passphrase")
    store_psk_in_vault: bool = key("storePskInVault", parse_bool, False)
    # empty: the enabled ones of subnets, firewall, radius, dhcp (gateway.required_services)
    require_services: tuple[str, ...] = key("requireServices", parse_service_list, ())


@dataclass(frozen=True)
class CaptureSettings:
    capture_db_path: Path | None = path_key("captureDbPath", "capture.sqlite")
    filter: str = key("filter", parse_str, "")
    promiscuous: bool = key("promiscuous", parse_bool, False)
    buffer_timeout: int = key("bufferTimeout", parse_int, 10)
    immediate: bool = key("immediate", parse_bool, False)
    middleware_params: str = key("middlewareParams", parse_str, "")
    middlewares: tuple[str, ...] = key("middlewares", parse_list, ("header", "cleaner"))
    capture_interfaces: tuple[str, ...] = key("captureInterfaces", parse_list, ())
    pcap_dir_path: Path | None = path_key("pcapDirPath", "")
    pcap_rotate_size: int = key("pcapRotateSize", parse_int, 16 * 1024 * 1024)
    pcap_store_size: int = key("pcapStoreSize", parse_int, 256 * 1024 * 1024)
    pcap_rotate_seconds: int = key("pcapRotateSeconds", parse_int, 60)
    flow_timeout: int = key("flowTimeout", parse_int, 120)
    eve_path: Path | None = path_key("evePath", "")
    buffer_size: int = key("bufferSize", parse_int, 0)
    # bounds and write batching (docs/capture.md "Storage bounds")
    capture_rate: int = key("captureRate", parse_int, 5000)
    capture_db_size: int = key("captureDbSize", parse_int, 64 * 1024 * 1024)
    capture_max_age: int = key("captureMaxAge", parse_int, 7 * 24 * 3600)
    capture_reserve: str = key("captureReserve", parse_reserve, "10%")
    commit_interval: int = key("commitInterval", parse_int, 5)
    eve_rotate_size: int = key("eveRotateSize", parse_int, 8 * 1024 * 1024)


@dataclass(frozen=True)
class SupervisorSettings:
    supervisor_control_port: int = key("supervisorControlPort", parse_port, 32001)
    supervisor_control_path: Path | None = path_key("supervisorControlPath", "edgesec.sock")
    supervisor_control_address: str = key("supervisorControlAddress", parse_ipv4, "127.0.0.1")
    supervisor_control_key: str = key("supervisorControlKey", parse_str, "")
    supervisor_control_key_file: Path | None = path_key("supervisorControlKeyFile", "")
    allow_unauthenticated_udp: bool = key("allowUnauthenticatedUdp", parse_bool, False)


@dataclass(frozen=True)
class ApSettings:
    ap_bin_path: Path | None = path_key("apBinPath", "/usr/sbin/hostapd")
    ap_file_path: Path | None = path_key("apFilePath", "hostapd.conf")
    ap_log_path: Path | None = path_key("apLogPath", "")
    interface: str = key("interface", parse_ifname, "")
    device: str = key("device", parse_str, "")
    vlan_tagged_interface: str = key("vlanTaggedInterface", parse_ifname, "")
    ssid: str = key("ssid", parse_str, "edgesec")
    wpa_passphrase: str = key("wpaPassphrase", parse_wpa_passphrase, "")
    driver: str = key("driver", parse_str, "nl80211")
    hw_mode: str = key("hwMode", parse_str, "g")
    channel: int = key("channel", parse_int, 11)
    wmm_enabled: int = key("wmmEnabled", parse_int, 1)
    auth_algs: int = key("authAlgs", parse_int, 1)
    wpa: int = key("wpa", parse_int, 2)
    wpa_key_mgmt: str = key("wpaKeyMgmt", parse_str, "WPA-PSK")
    rsn_pairwise: str = key("rsnPairwise", parse_str, "CCMP")
    ctrl_interface: Path | None = path_key("ctrlInterface", "/var/run/hostapd")
    macaddr_acl: int = key("macaddrAcl", parse_int, 2)
    dynamic_vlan: int = key("dynamicVlan", parse_int, 1)
    vlan_file: Path | None = path_key("vlanFile", "hostapd.vlan")
    logger_stdout: int = key("loggerStdout", parse_int, -1)
    logger_stdout_level: int = key("loggerStdoutLevel", parse_int, 0)
    logger_syslog: int = key("loggerSyslog", parse_int, -1)
    logger_syslog_level: int = key("loggerSyslogLevel", parse_int, 0)
    ignore_broadcast_ssid: int = key("ignoreBroadcastSsid", parse_int, 0)
    wpa_psk_radius: int = key("wpaPskRadius", parse_int, 2)
    psk_backend: str = key("pskBackend", parse_str, "radius")
    wpa_psk_file: Path | None = path_key("wpaPskFile", "hostapd.wpa_psk")


@dataclass(frozen=True)
class RadiusSettings:
    port: int = key("port", parse_port, 1812)
    client_ip: str = key("clientIP", parse_ipv4, "127.0.0.1")
    client_mask: int = key("clientMask", parse_prefixlen, 32)
    server_ip: str = key("serverIP", parse_ipv4, "127.0.0.1")
    server_mask: int = key("serverMask", parse_prefixlen, 32)
    secret: str = key("secret", parse_str, "")
    require_message_authenticator: bool = key("requireMessageAuthenticator", parse_bool, True)
    secret_in_vault: bool = key("secretInVault", parse_bool, False)
    # Admissions of devices without a record (token bucket; 0 = no limit).
    new_device_rate: int = key("newDeviceRate", parse_count, 30)  # per minute
    new_device_burst: int = key("newDeviceBurst", parse_count, 10)


@dataclass(frozen=True)
class NatSettings:
    nat_bridge: str = key("natBridge", parse_str, "")
    nat_interface: str = key("natInterface", parse_ifname, "")


@dataclass(frozen=True)
class FirewallSettings:
    firewall_bin_path: Path | None = path_key("firewallBinPath", "")
    table_name: str = key("tableName", parse_str, "edgesec")
    nft_backend: str = key("nftBackend", parse_nft_backend, "auto")
    nft_bin_path: str = key("nftBinPath", parse_str, "")


def parse_forwarder_port(text: str) -> int:
    """``[dns] forwarderPort``: a port that DNS (53) and DHCP (67) do not already use."""
    port = parse_port(text)
    if port in (0, 53, 67):
        raise ValueError("expected a free port other than 0, 53 and 67")
    return port


@dataclass(frozen=True)
class DnsSettings:
    servers: tuple[str, ...] = key("servers", parse_ip_list, ())
    mdns_reflect_ip4: bool = key("mdnsReflectIp4", parse_bool, False)
    mdns_reflect_ip6: bool = key("mdnsReflectIp6", parse_bool, False)
    mdns_filter: str = key("mdnsFilter", parse_str, "")
    mdns_auto_bridge: bool = key("mdnsAutoBridge", parse_bool, True)
    mdns_bridge_expiry: int = key("mdnsBridgeExpiry", parse_int, 3600)
    mdns_service_allow: tuple[str, ...] = key("mdnsServiceAllow", parse_mdns_services, ())
    mdns_rate_limit: int = key("mdnsRateLimit", parse_int, 50)
    mdns_rate_burst: int = key("mdnsRateBurst", parse_int, 100)
    mdns_bridge_passive: bool = key("mdnsBridgePassive", parse_bool, False)
    mdns_max_packet: int = key("mdnsMaxPacket", parse_int, 9000)
    mdns_discovery_ttl: int = key("mdnsDiscoveryTtl", parse_int, 600)
    mdns_log_group: int = key("mdnsLogGroup", parse_int, 5353)
    local_only_without_nat: bool = key("localOnlyWithoutNat", parse_bool, True)
    forwarder_port: int = key("forwarderPort", parse_forwarder_port, 5053)


@dataclass(frozen=True)
class DhcpSettings:
    dhcp_bin_path: Path | None = path_key("dhcpBinPath", "/usr/sbin/dnsmasq")
    dhcp_config_path: Path | None = path_key("dhcpConfigPath", "dnsmasq.conf")
    dhcp_script_path: Path | None = path_key("dhcpScriptPath", "dnsmasq_exec.sh")
    dhcp_leasefile_path: Path | None = path_key("dhcpLeasefilePath", "dnsmasq.leases")
    ranges: tuple[DhcpRange, ...] = ()

    def range_for_vlan(self, vlan: int) -> DhcpRange | None:
        return next((r for r in self.ranges if r.vlan == vlan), None)


@dataclass(frozen=True)
class InterfacesSettings:
    bridge_prefix: str = key("bridgePrefix", parse_str, "br")
    interface_prefix: str = key("interfacePrefix", parse_str, "br")
    vlan_pool_prefix: str = key("vlanPoolPrefix", parse_str, "")
    vlan_pool_prefix_len: int = key("vlanPoolPrefixLen", parse_prefixlen, 28)
    vlan_pool_first_vlan: int = key("vlanPoolFirstVlan", parse_vlan, 100)
    # Seconds after which a pool device never seen again gives its VLAN back (0 = never).
    vlan_pool_lifetime: int = key("vlanPoolLifetime", parse_count, 600)
    subnets: tuple[Subnet, ...] = ()

    def subnet_for_vlan(self, vlan: int) -> Subnet | None:
        index = self.__dict__.get("_by_vlan")
        if index is None:
            index = {s.vlan: s for s in self.subnets}
            object.__setattr__(self, "_by_vlan", index)
        return index.get(vlan)

    def subnet_for_ip(self, ip: str) -> Subnet | None:
        try:
            addr = ipaddress.IPv4Address(ip.split("/")[0])
        except ValueError:
            return None
        return next((s for s in self.subnets if addr in s.network), None)

    @property
    def pool_vlans(self) -> frozenset[int]:
        """VLANs generated from the pool (each meant for one device).

        Only subnets inside ``vlanPoolPrefix`` of the pool's size count, so an
        explicit ``ifN`` whose VLAN happens to be above ``vlanPoolFirstVlan``
        (a shared subnet) is never handed out as a private one.
        """
        cached = self.__dict__.get("_pool_vlans")
        if cached is None:
            cached = frozenset()
            if self.vlan_pool_prefix:
                pool = ipaddress.IPv4Network(self.vlan_pool_prefix, strict=False)
                cached = frozenset(
                    s.vlan for s in self.subnets
                    if s.vlan >= self.vlan_pool_first_vlan
                    and s.network.prefixlen == self.vlan_pool_prefix_len
                    and s.network.subnet_of(pool))
            object.__setattr__(self, "_pool_vlans", cached)
        return cached


@dataclass(frozen=True)
class CryptSection:
    """``[crypt]`` (new): vault backend options (docs/crypt.md).

    The keys with an alias (``backend``, ``passphraseFile``, ``radiusSecretInVault``,
    ``pskInVault``) default to "unset" (``None``/``""``) so that
    :meth:`edgesec.crypt.settings.CryptSettings.from_settings` can fall back to
    the ``[system]``/``[radius]`` key; the others carry their defaults here.
    """

    backend: str = key("backend", parse_str, "")
    passphrase_file: Path | None = path_key("passphraseFile", "")
    credential_name: str = key("credentialName", parse_str, "edgesec-crypt-passphrase")
    kdf_log_n: int = key("kdfLogN", parse_int, 17)  # scrypt N = 2^17, r = 8, p = 1
    pkcs11_module: Path | None = path_key("pkcs11Module", "/usr/lib/softhsm/libsofthsm2.so")
    pkcs11_token: str = key("pkcs11Token", parse_str, "edgesec")
    pkcs11_pin_file: Path | None = path_key("pkcs11PinFile", "")
    pkcs11_pin_credential: str = key("pkcs11PinCredential", parse_str,
                                     "edgesec-crypt-pkcs11-pin")
    pkcs11_key_label: str = key("pkcs11KeyLabel", parse_str, "edgesec-vault-root")
    radius_secret_in_vault: bool | None = key("radiusSecretInVault", parse_bool, None)
    psk_in_vault: bool | None = key("pskInVault", parse_bool, None)


def parse_containment(text: str) -> str:
    value = text.strip().lower()
    if value not in ("alert", "quarantine"):
        raise ValueError("expected alert or quarantine")
    return value


@dataclass(frozen=True)
class DetectSettings:
    """``[detect]`` (new, docs/detect.md): detection and containment of devices."""

    enabled: bool = key("enabled", parse_bool, False)
    detect_db_path: Path | None = path_key("detectDbPath", "detect.sqlite")
    eve_path: Path | None = path_key("evePath", "")
    containment: str = key("containment", parse_containment, "alert")
    quarantine_severity: int = key("quarantineSeverity", parse_int, 3)
    quarantine_seconds: int = key("quarantineSeconds", parse_int, 0)
    quarantine_devices: tuple[str, ...] = key("quarantineDevices", parse_list, ())
    alert_only_devices: tuple[str, ...] = key("alertOnlyDevices", parse_list, ())
    exempt_devices: tuple[str, ...] = key("exemptDevices", parse_list, ())
    learning_window: int = key("learningWindow", parse_int, 86400)
    scan_window: int = key("scanWindow", parse_int, 60)
    scan_ports: int = key("scanPorts", parse_int, 15)
    scan_hosts: int = key("scanHosts", parse_int, 25)
    lateral_targets: int = key("lateralTargets", parse_int, 6)
    lateral_window: int = key("lateralWindow", parse_int, 10)
    dns_window: int = key("dnsWindow", parse_int, 60)
    dns_suspicious: int = key("dnsSuspicious", parse_int, 10)
    dns_label_length: int = key("dnsLabelLength", parse_int, 40)
    dns_entropy: float = key("dnsEntropy", float, 3.9)
    nxdomain_burst: int = key("nxdomainBurst", parse_int, 20)
    upload_window: int = key("uploadWindow", parse_int, 60)
    upload_factor: int = key("uploadFactor", parse_int, 10)
    upload_min_bytes: int = key("uploadMinBytes", parse_int, 2 * 1024 * 1024)
    upload_ceiling: int = key("uploadCeiling", parse_int, 64 * 1024 * 1024)
    spoof_packets: int = key("spoofPackets", parse_int, 3)
    new_device_flood: int = key("newDeviceFlood", parse_int, 10)
    alerts_per_minute: int = key("alertsPerMinute", parse_int, 60)
    interfaces: tuple[str, ...] = key("interfaces", parse_list, ())


@dataclass(frozen=True)
class ApiSettings:
    """``[api]``: the management API (HTTP + JSON, metrics, dashboard); see docs/api.md."""

    socket_path: Path | None = path_key("socketPath", "/run/edgesec/api.sock")
    socket_group: str = key("socketGroup", parse_str, "")
    address: str = key("address", parse_ipv4, "127.0.0.1")
    port: int = key("port", parse_port, 0)
    token_file: Path | None = path_key("tokenFile", "api-tokens.json")
    cert_file: Path | None = path_key("certFile", "")
    key_file: Path | None = path_key("keyFile", "")


@dataclass(frozen=True)
class Settings:
    """Everything edgesec reads from ``config.ini``."""

    path: Path | None = None
    system: SystemSettings = field(default_factory=SystemSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    ap: ApSettings = field(default_factory=ApSettings)
    radius: RadiusSettings = field(default_factory=RadiusSettings)
    nat: NatSettings = field(default_factory=NatSettings)
    firewall: FirewallSettings = field(default_factory=FirewallSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    dhcp: DhcpSettings = field(default_factory=DhcpSettings)
    interfaces: InterfacesSettings = field(default_factory=InterfacesSettings)
    crypt: CryptSection = field(default_factory=CryptSection)
    detect: DetectSettings = field(default_factory=DetectSettings)
    api: ApiSettings = field(default_factory=ApiSettings)


SECTIONS: dict[str, type] = {
    "system": SystemSettings,
    "capture": CaptureSettings,
    "supervisor": SupervisorSettings,
    "ap": ApSettings,
    "radius": RadiusSettings,
    "nat": NatSettings,
    "firewall": FirewallSettings,
    "dns": DnsSettings,
    "dhcp": DhcpSettings,
    "interfaces": InterfacesSettings,
    "crypt": CryptSection,
    "detect": DetectSettings,
    "api": ApiSettings,
}

# ---------------------------------------------------------------------------
# the INI reader


@dataclass
class IniLine:
    section: str
    key: str
    value: str
    lineno: int


def strip_value(raw: str) -> str:
    """Remove a trailing comment outside quotes and de-quote the value."""
    out: list[str] = []
    quoted = False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
            continue
        if not quoted and ch in "#;":
            break
        out.append(ch)
    return "".join(out).strip()


def read_ini(text: str, source: str,
             headers: dict[str, int] | None = None) -> list[IniLine]:
    """Split INI text into (section, key, value) lines; names lower-cased.

    ``headers``, when given, receives each section's first header line.
    """
    lines: list[IniLine] = []
    section = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                raise ConfigError(f"{source}:{lineno}: section header without ']': {line!r}")
            section = line[1:end].strip().lower()
            if headers is not None:
                headers.setdefault(section, lineno)
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{source}:{lineno}: expected 'key = value', got {line!r}")
        lines.append(IniLine(section, name.strip().lower(), strip_value(value), lineno))
    return lines


def _parse_section(cls: type, section: str, entries: dict[str, IniLine], base: Path,
                   source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(cls):
        ini = f.metadata.get("ini")
        if ini is None:
            continue
        entry = entries.pop(ini.lower(), None)
        if entry is None:
            if f.metadata.get("path") and isinstance(f.default, Path):
                values[f.name] = _resolve(f.default, base)
            continue
        if f.metadata.get("path"):
            values[f.name] = _resolve(Path(entry.value), base) if entry.value else None
            continue
        try:
            values[f.name] = f.metadata["parser"](entry.value)
        except ValueError as exc:
            shown = redact(ini, entry.value)
            raise ConfigError(
                f"{source}:{entry.lineno}: [{section}] {ini} = {shown!r}: {exc}"
            ) from None
    return values


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path)


def _numbered(entries: dict[str, IniLine], stem: str) -> list[IniLine]:
    """Pop ``stemN`` keys in numeric order."""
    found = []
    for name in list(entries):
        m = re.fullmatch(re.escape(stem) + r"(\d+)", name)
        if m:
            found.append((int(m.group(1)), entries.pop(name)))
    return [line for _, line in sorted(found, key=lambda t: t[0])]


def _pool_subnets(ifs: dict[str, Any], explicit: list[Subnet], prefix: str) -> list[Subnet]:
    pool = ifs.get("vlan_pool_prefix", "")
    if not pool:
        return []
    network = ipaddress.IPv4Network(pool, strict=False)
    plen = ifs.get("vlan_pool_prefix_len", 28)
    first_vlan = ifs.get("vlan_pool_first_vlan", 100)
    if plen > 30 or plen < network.prefixlen:
        raise ValueError(f"vlanPoolPrefixLen {plen} does not fit in {network}")
    used = {s.vlan for s in explicit}
    out = []
    vlan = first_vlan
    for sub in network.subnets(new_prefix=plen):
        while vlan in used:
            vlan += 1
        if vlan > 4094:
            break
        if any(sub.overlaps(s.network) for s in explicit):
            continue
        hosts = list(sub.hosts()) if plen >= 24 else None
        gateway = hosts[0] if hosts else sub.network_address + 1
        out.append(Subnet(vlan, gateway, sub.broadcast_address, sub,
                          parse_ifname(f"{prefix}{vlan}")))
        vlan += 1
    return out


def parse_settings(text: str, source: str = "<config>", base: Path | None = None,
                   strict: bool = False) -> Settings:
    """Parse INI text into :class:`Settings`; raise :class:`ConfigError` on bad values.

    The same validation serves ``edgesec run`` and ``edgesec config check``.
    With ``strict``, unknown sections and keys are errors instead of warnings.
    """
    base = base or Path.cwd()
    headers: dict[str, int] = {}
    by_section: dict[str, dict[str, IniLine]] = {}
    origins = Origins(source)
    for line in read_ini(text, source, headers):
        by_section.setdefault(line.section, {})[line.key] = line
        origins.keys[(line.section, line.key)] = line.lineno

    parsed: dict[str, dict[str, Any]] = {}
    for name, cls in SECTIONS.items():
        parsed[name] = _parse_section(cls, name, by_section.get(name, {}), base, source)

    ifs = parsed["interfaces"]
    prefix = ifs.get("interface_prefix", "br")
    explicit: list[Subnet] = []
    for entry in _numbered(by_section.get("interfaces", {}), "if"):
        try:
            explicit.append(parse_interface_entry(entry.value, prefix))
        except ValueError as exc:
            raise ConfigError(
                f"{source}:{entry.lineno}: [interfaces] {entry.key} = {entry.value!r}: {exc}"
            ) from None
        first = origins.subnets.setdefault(explicit[-1].vlan, entry.lineno)
        if first != entry.lineno:
            raise ConfigError(f"{source}:{entry.lineno}: [interfaces] {entry.key}: VLAN "
                              f"{explicit[-1].vlan} is already listed on line {first}")
    try:
        pool = _pool_subnets(ifs, explicit, prefix)
    except ValueError as exc:
        raise ConfigError(f"{origins.at('interfaces', 'vlanPoolPrefix')}: [interfaces] "
                          f"vlanPoolPrefix: {exc}") from None
    ifs["subnets"] = tuple(explicit + pool)

    ranges: list[DhcpRange] = []
    for entry in _numbered(by_section.get("dhcp", {}), "dhcprange"):
        try:
            ranges.append(parse_dhcp_range(entry.value))
        except ValueError as exc:
            raise ConfigError(
                f"{source}:{entry.lineno}: [dhcp] {entry.key} = {entry.value!r}: {exc}"
            ) from None
        origins.ranges.append(entry.lineno)
    parsed["dhcp"]["ranges"] = tuple(ranges)

    _unknown(by_section, headers, source, strict)

    settings = Settings(
        path=Path(source) if source != "<config>" else None,
        **{name: cls(**parsed[name]) for name, cls in SECTIONS.items()},
    )
    problems = _validate(settings, origins)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more, problems)
    return settings


def _unknown(by_section: dict[str, dict[str, IniLine]], headers: dict[str, int], source: str,
             strict: bool) -> None:
    """Warn about (or, strict, refuse) sections and keys no schema reads."""
    problems = []
    for section in headers.keys() | by_section.keys():
        if section not in SECTIONS:
            line = headers.get(section) or min(e.lineno for e in by_section[section].values())
            problems.append((line, f"{source}:{line}: unknown section [{section}]"))
            continue
        for entry in by_section.get(section, {}).values():
            problems.append((entry.lineno,
                             f"{source}:{entry.lineno}: unknown key [{section}] {entry.key}"))
    problems.sort()
    if strict and problems:
        texts = [f"{text} (--strict)" for _, text in problems]
        more = f" (and {len(texts) - 1} more)" if len(texts) > 1 else ""
        raise ConfigError(texts[0] + more, texts)
    for _, text in problems:
        log.warning("%s ignored", text)


def load_settings(path: str | Path, strict: bool = False) -> Settings:
    """Read and parse a config file; relative paths resolve against its directory."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return parse_settings(text, str(p), p.resolve().parent, strict)


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(section, key, value) rows of the effective settings, for ``config check``."""
    rows: list[tuple[str, str, str]] = []
    for name in SECTIONS:
        sect = getattr(settings, name)
        for f in fields(sect):
            value = getattr(sect, f.name)
            ini = f.metadata.get("ini")
            if ini is not None:
                if isinstance(value, tuple):
                    value = (":" if f.name == "bin_path" else ",").join(value)
                text = "" if value is None else str(value)
                if not f.metadata.get("path"):
                    text = redact(ini, text)
                rows.append((name, ini, text))
        if name == "interfaces":
            for s in settings.interfaces.subnets:
                rows.append((name, f"vlan{s.vlan}",
                             f"{s.bridge} {s.gateway}/{s.network.prefixlen} bcast {s.broadcast}"))
        if name == "dhcp":
            for r in settings.dhcp.ranges:
                rows.append((name, f"range{r.vlan}",
                             f"{r.first}-{r.last} {r.netmask} {r.lease_time}"))
    return rows
