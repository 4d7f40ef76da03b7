"""hostapd.conf / VLAN file / PSK file generation and control-interface parsing (pure)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.access import psk_file
from edgesec.access.hostapd_conf import (
    HostapdConfigError,
    render_hostapd_conf,
    render_vlan_file,
)
from edgesec.access.wpa_ctrl import parse_event, parse_sta_mac
from edgesec.config import Subnet, load_settings

# The [ap]/[radius] values of the original's tests/ap/test_hostapd.c, as an INI file.
ORIGINAL_INI = """\
[system]
allowAllConnections = false
[ap]
apBinPath = "/tmp/hostapd"
apFilePath = "/tmp/hostapd-test.conf"
apLogPath = "/tmp/hostapd.log"
interface = "wlan0"
device = "wl0"
ssid = "IOTH_IMX7"
wpaPassphrase = "1234554321"
driver = "nl80211"
hwMode = "g"
channel = 11
wmmEnabled = 1
authAlgs = 1
wpa = 2
wpaKeyMgmt = "WPA-PSK"
rsnPairwise = "CCMP"
ctrlInterface = "/var/run/hostapd"
macaddrAcl = 2
dynamicVlan = 1
vlanFile = "/tmp/hostapd-test.vlan"
loggerStdout = -1
loggerStdoutLevel = 0
loggerSyslog = -1
loggerSyslogLevel = 0
ignoreBroadcastSsid = 0
wpaPskRadius = 2
[radius]
port = 1812
clientIP = "192.168.1.2"
clientMask = 32
serverIP = "192.168.1.1"
serverMask = 32
secret = "radius"
[interfaces]
interfacePrefix = "br"
if0 = "0,10.0.0.1,10.0.0.255,255.255.255.0"
if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"
if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"
"""

# Expected output of the original's test, verbatim.
ORIGINAL_CONF = """\
interface=wlan0
driver=nl80211
ssid=IOTH_IMX7
hw_mode=g
channel=11
wmm_enabled=1
auth_algs=1
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
ctrl_interface=/var/run/hostapd
own_ip_addr=192.168.1.2
auth_server_addr=192.168.1.1
auth_server_port=1812
auth_server_shared_secret=radius
macaddr_acl=2
dynamic_vlan=1
vlan_bridge=br
vlan_file=/tmp/hostapd-test.vlan
logger_stdout=-1
logger_stdout_level=0
logger_syslog=-1
logger_syslog_level=0
ignore_broadcast_ssid=0
wpa_psk_radius=2
"""


@pytest.fixture
def original(tmp_path: Path):
    p = tmp_path / "config.ini"
    p.write_text(ORIGINAL_INI)
    return load_settings(p)


def test_conf_matches_original(original) -> None:
    assert render_hostapd_conf(original) == ORIGINAL_CONF
    assert "wpa_passphrase" not in render_hostapd_conf(original)


def test_vlan_tagged_interface_adds_naming(original) -> None:
    s = dataclasses.replace(original, ap=dataclasses.replace(original.ap,
                                                             vlan_tagged_interface="eth0"))
    assert render_hostapd_conf(s).endswith("wpa_psk_radius=2\nvlan_naming=1\n"
                                           "vlan_tagged_interface=eth0\n")


def test_vlan_file_maps_each_vlan_to_its_bridge(original) -> None:
    assert render_vlan_file(original) == "1\twlan0.1\tbr1\n2\twlan0.2\tbr2\n*\twlan0.#\n"


def test_vlan_file_rejects_too_long_names(original) -> None:
    sub = Subnet(4000, ipaddress.IPv4Address("10.1.0.1"), ipaddress.IPv4Address("10.1.0.255"),
                 ipaddress.IPv4Network("10.1.0.0/24"), "br4000")
    s = dataclasses.replace(
        original, ap=dataclasses.replace(original.ap, interface="wlan-long-nm"),
        interfaces=dataclasses.replace(original.interfaces, subnets=(sub,)))
    with pytest.raises(HostapdConfigError, match="longer than 15"):
        render_vlan_file(s)


@pytest.mark.parametrize("ssid", ["evil\nwpa_psk_radius=0", "a\rb", "x\0"])
def test_line_break_injection_refused(original, ssid: str) -> None:
    s = dataclasses.replace(original, ap=dataclasses.replace(original.ap, ssid=ssid))
    with pytest.raises(HostapdConfigError, match="line break"):
        render_hostapd_conf(s)


def test_extra_keys_replace_or_append(original) -> None:
    text = render_hostapd_conf(original, extra={"driver": "wired", "ieee8021x": "1"})
    assert "driver=wired\n" in text and "driver=nl80211" not in text
    assert text.endswith("ieee8021x=1\n")
    with pytest.raises(HostapdConfigError):
        render_hostapd_conf(original, extra={"bad key": "1"})
    with pytest.raises(HostapdConfigError):
        render_hostapd_conf(original, extra={"eap_user_file": "/x\nmacaddr_acl=0"})


def test_file_backend_has_no_radius_keys(original) -> None:
    items = [("wpa_psk_file", "/run/x.psk")]
    text = render_hostapd_conf(original, backend="file", backend_items=items)
    assert "auth_server" not in text and "wpa_psk_radius" not in text
    assert "macaddr_acl=0\n" in text and "wpa_psk_file=/run/x.psk\n" in text
    with pytest.raises(HostapdConfigError, match="pskBackend"):
        render_hostapd_conf(original, backend="bogus")


def _dev(mac: str, allow: bool = True, psk: str = "", vlan: int = 0) -> SimpleNamespace:
    return SimpleNamespace(mac=mac, allow=allow, psk=psk, vlanid=vlan)


def _ticket(pw: str, vlan: int, used: str = "", expires: float = 1e12) -> SimpleNamespace:
    return SimpleNamespace(passphrase=pw, vlanid=vlan, used_by=used, created=1, expires=expires)


def test_psk_file_rendering() -> None:
    devs = [_dev("02:00:00:00:00:02", psk="own passphrase 2", vlan=3),
            _dev("02:00:00:00:00:01"),
            _dev("02:00:00:00:00:03", allow=False, psk="denied-device-psk")]
    tickets = [_ticket("1234567890123456", 5), _ticket("9999999999999999", 6, used="x"),
               _ticket("8888888888888888", 6, expires=0)]
    entries = psk_file.entries_from_registry(devs, tickets, default_psk="the-ap-passphrase",
                                             allow_all=True, default_vlan=1, now=100)
    text = psk_file.render_wpa_psk_file(entries)
    assert text.splitlines()[1:] == [
        "keyid=dev-020000000001 02:00:00:00:00:01 the-ap-passphrase",
        "keyid=dev-020000000002 vlanid=3 02:00:00:00:00:02 own passphrase 2",
        "keyid=ticket-123456 vlanid=5 00:00:00:00:00:00 1234567890123456",
        "keyid=default vlanid=1 00:00:00:00:00:00 the-ap-passphrase",
    ]
    sae = psk_file.sae_password_items(entries[:2])
    assert sae == [
        ("sae_password", "the-ap-passphrase|mac=02:00:00:00:00:01|id=dev-020000000001"),
        ("sae_password", "own passphrase 2|mac=02:00:00:00:00:02|vlanid=3|id=dev-020000000002"),
    ]


@pytest.mark.parametrize("bad", ["short", "x" * 64, "new\nline-passphrase", " leading-space",
                                 "trailing-space ", "nul\0inside-passphrase", "tab\tinside-pass"])
def test_psk_file_refuses_unsafe_passphrases(bad: str) -> None:
    with pytest.raises(psk_file.PskFileError):
        psk_file.render_wpa_psk_file([psk_file.PskEntry("02:00:00:00:00:01", bad)])


def test_sae_refuses_separator_and_hex_psk_skipped() -> None:
    with pytest.raises(psk_file.PskFileError, match=r"\|"):
        psk_file.sae_password_items([psk_file.PskEntry("02:00:00:00:00:01", "pass|mac=ff")])
    hexpsk = "ab" * 32
    assert psk_file.check_passphrase(hexpsk) == hexpsk
    assert psk_file.sae_password_items([psk_file.PskEntry("02:00:00:00:00:01", hexpsk)]) == []


@given(st.text(max_size=70))
@settings(max_examples=200, deadline=None)
def test_fuzz_psk_file_line_safety(pw: str) -> None:
    """Whatever is accepted yields exactly one well-formed line per entry."""
    try:
        text = psk_file.render_wpa_psk_file([psk_file.PskEntry("02:00:00:00:00:01", pw, 4, "k")])
    except psk_file.PskFileError:
        return
    lines = text.splitlines()
    assert len(lines) == 2 and lines[1] == f"keyid=k vlanid=4 02:00:00:00:00:01 {pw}"


@pytest.mark.parametrize(("text", "mac", "status", "fields"), [
    ("<3>AP-STA-CONNECTED 02:00:00:00:00:01", "02:00:00:00:00:01", 1, {}),
    ("<3>AP-STA-CONNECTED 02:00:00:00:00:01 keyid=dev-1 vlan_id=3", "02:00:00:00:00:01", 1,
     {"keyid": "dev-1", "vlan_id": "3"}),
    ("<3>AP-STA-DISCONNECTED AA:00:00:00:00:02\n", "aa:00:00:00:00:02", 2, {}),
])
def test_parse_event(text: str, mac: str, status: int, fields: dict) -> None:
    ev = parse_event(text)
    assert ev is not None and (ev.mac, ev.status, ev.fields) == (mac, status, fields)


@pytest.mark.parametrize("text", ["OK", "<3>CTRL-EVENT-EAP-STARTED 02:00:00:00:00:01",
                                  "<3>AP-STA-CONNECTED", "<3>AP-STA-CONNECTED nonsense", ""])
def test_parse_event_ignores_others(text: str) -> None:
    assert parse_event(text) is None


@given(st.text(max_size=120))
@settings(max_examples=300, deadline=None)
def test_fuzz_parse_event(text: str) -> None:
    ev = parse_event(text)
    assert ev is None or (len(ev.mac) == 17 and ev.status in (1, 2))


def test_parse_sta_mac() -> None:
    assert parse_sta_mac("02:00:00:00:00:01\nflags=[AUTHORIZED]\n") == "02:00:00:00:00:01"
    assert parse_sta_mac("FAIL\n") is None and parse_sta_mac("") is None
