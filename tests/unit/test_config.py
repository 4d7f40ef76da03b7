"""Loading the original ``config.ini``: the shipped example, broken files, fuzzing.

The example must carry every key SPEC.md §1 lists, and each must reach the
settings with the value written in the file.  Broken files give one
:class:`ConfigError` line naming file, section, key and value, and
``edgesec config check`` turns that into exit code 2 without a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesec.config import (
    SECTIONS,
    ConfigError,
    Settings,
    load_settings,
    parse_settings,
    read_ini,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "packaging" / "config.ini"

# SPEC.md §1, section by section (numbered ifN/dhcpRangeN entries checked separately).
SPEC_KEYS: dict[str, list[str]] = {
    "system": ["binPath", "createInterfaces", "ignoreErrorOnIfCreate", "allowAllConnections",
               "allowAllNat", "apDetect", "generateSsid", "allocateVlans", "defaultOpenVlanId",
               "execAp", "execRadius", "execDhcp", "execCapture", "execMdnsForward",
               "execFirewall", "setIpForward", "connectionDbPath", "cryptDbPath", "pidFilePath"],
    "capture": ["captureDbPath", "filter", "promiscuous", "bufferTimeout", "immediate",
                "middlewareParams"],
    "supervisor": ["supervisorControlPort", "supervisorControlPath"],
    "ap": ["apBinPath", "apFilePath", "apLogPath", "interface", "device", "vlanTaggedInterface",
           "ssid", "wpaPassphrase", "driver", "hwMode", "channel", "wmmEnabled", "authAlgs",
           "wpa", "wpaKeyMgmt", "rsnPairwise", "ctrlInterface", "macaddrAcl", "dynamicVlan",
           "vlanFile", "loggerStdout", "loggerStdoutLevel", "loggerSyslog", "loggerSyslogLevel",
           "ignoreBroadcastSsid", "wpaPskRadius"],
    "radius": ["port", "clientIP", "clientMask", "serverIP", "serverMask", "secret"],
    "nat": ["natBridge", "natInterface"],
    "firewall": ["firewallBinPath"],
    "dns": ["servers", "mdnsReflectIp4", "mdnsReflectIp6", "mdnsFilter"],
    "dhcp": ["dhcpBinPath", "dhcpConfigPath", "dhcpScriptPath", "dhcpLeasefilePath"],
    "interfaces": ["bridgePrefix", "interfacePrefix"],
}


def _field_for(section: str, ini: str):
    for f in fields(SECTIONS[section]):
        if f.metadata.get("ini") == ini:
            return f
    raise AssertionError(f"[{section}] {ini} has no settings field")


# -- the shipped example --------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Settings:
    return load_settings(EXAMPLE)


@pytest.mark.parametrize(("section", "ini"),
                         [(s, k) for s, keys in SPEC_KEYS.items() for k in keys])
def test_example_has_and_parses_every_spec_key(example: Settings, section: str, ini: str) -> None:
    lines = {(ln.section, ln.key): ln.value for ln in read_ini(EXAMPLE.read_text(), "x")}
    assert (section, ini.lower()) in lines, f"packaging/config.ini lacks [{section}] {ini}"
    raw = lines[(section, ini.lower())]
    f = _field_for(section, ini)
    value = getattr(getattr(example, section), f.name)
    if f.metadata.get("path"):
        expected = None if not raw else (
            Path(raw) if Path(raw).is_absolute() else EXAMPLE.parent / raw)
        assert value == expected
    else:
        assert value == f.metadata["parser"](raw)


def test_example_values(example: Settings) -> None:
    assert example.path == EXAMPLE
    assert example.system.allow_all_connections is False
    assert example.system.bin_path[0] == "/usr/local/sbin"
    assert example.supervisor.supervisor_control_port == 32001
    assert example.supervisor.supervisor_control_address == "127.0.0.1"
    assert example.radius.client_mask == 32 and example.radius.port == 1812
    assert example.dns.servers == ("8.8.4.4", "8.8.8.8")
    assert example.ap.wpa_passphrase == "1234554321" and example.ap.dynamic_vlan == 2


def test_example_interfaces_and_ranges(example: Settings) -> None:
    subnets = example.interfaces.subnets
    assert [s.vlan for s in subnets] == list(range(11))
    s8 = example.interfaces.subnet_for_vlan(8)
    assert s8 is not None and s8.bridge == "br8"
    assert s8.gateway == ipaddress.IPv4Address("10.0.8.1")
    assert s8.broadcast == ipaddress.IPv4Address("10.0.8.255")
    assert s8.network == ipaddress.IPv4Network("10.0.8.0/24")
    assert example.interfaces.subnet_for_ip("10.0.3.77").vlan == 3
    assert example.interfaces.subnet_for_ip("192.168.1.1") is None
    ranges = example.dhcp.ranges
    assert [r.vlan for r in ranges] == list(range(11))
    r10 = example.dhcp.range_for_vlan(10)
    assert (str(r10.first), str(r10.last), r10.netmask, r10.lease_time) == (
        "10.0.10.2", "10.0.10.254", "255.255.255.0", "24h")


def test_example_loads_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgesec.config")
    load_settings(EXAMPLE)
    assert caplog.records == []


def test_config_check_prints_effective_settings() -> None:
    out = subprocess.run([sys.executable, "-m", "edgesec.cli", "config", "check", str(EXAMPLE)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "[supervisor]" in out.stdout
    assert "supervisorControlPort = 32001" in out.stdout
    assert "vlan8 = br8 10.0.8.1/24 bcast 10.0.8.255" in out.stdout


# -- dialect -------------------------------------------------------------------------------


def test_quotes_comments_case_and_booleans(tmp_path: Path) -> None:
    text = """
; comment
# another
[SYSTEM]
AllowAllConnections = "TRUE"   ; trailing comment
allownat = yes
allowAllNat = 1
execDhcp = Off
defaultOpenVlanId = 0x2
[interfaces]
if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"
[ap]
wpaPassphrase = "pass;with#chars"
"""
    s = parse_settings(text)
    assert s.system.allow_all_connections and s.system.allow_all_nat
    assert not s.system.exec_dhcp and s.system.default_open_vlan_id == 2
    assert s.ap.wpa_passphrase == "pass;with#chars"


def test_integers_with_leading_zeros_and_prefixes() -> None:
    s = parse_settings("[ap]\nchannel = 06\nwpa = 0x2\n[radius]\nclientMask = 024\n")
    assert (s.ap.channel, s.ap.wpa, s.radius.client_mask) == (6, 2, 24)


def test_relative_paths_resolve_against_the_config_dir(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "config.ini").write_text(
        '[system]\nconnectionDbPath = "db/conn.sqlite"\npidFilePath = "/run/x.pid"\n'
        '[supervisor]\nsupervisorControlPath = "edgesec.sock"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(Path("../etc/config.ini"))
    assert s.system.connection_db_path == conf_dir.resolve() / "db/conn.sqlite"
    assert s.supervisor.supervisor_control_path == conf_dir.resolve() / "edgesec.sock"
    assert s.system.pid_file_path == Path("/run/x.pid")
    # defaults that are relative resolve there too
    assert s.system.crypt_db_path == conf_dir.resolve() / "crypt.sqlite"


def test_new_supervisor_and_pool_keys(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k3y\n")
    s = load_settings(_write(tmp_path, """
[supervisor]
supervisorControlAddress = 10.1.2.3
supervisorControlKeyFile = key
[interfaces]
if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"
vlanPoolPrefix = 10.64.0.0/24
vlanPoolPrefixLen = 28
vlanPoolFirstVlan = 100
[system]
defaultOpenVlanId = 1
"""))
    assert s.supervisor.supervisor_control_address == "10.1.2.3"
    assert s.supervisor.supervisor_control_key_file == tmp_path / "key"
    pool = [x for x in s.interfaces.subnets if x.vlan >= 100]
    assert [x.vlan for x in pool] == list(range(100, 116))
    assert pool[0].network == ipaddress.IPv4Network("10.64.0.0/28")
    assert str(pool[0].gateway) == "10.64.0.1" and pool[0].bridge == "br100"
    assert s.interfaces.pool_vlans == frozenset(range(100, 116))


def test_explicit_subnets_are_never_pool_vlans() -> None:
    s = parse_settings("\n".join([
        "[system]", "defaultOpenVlanId = 1", "[interfaces]",
        'if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"',
        'if120 = "120,10.0.120.1,10.0.120.255,255.255.255.0"',
        "vlanPoolPrefix = 10.64.0.0/26", "vlanPoolPrefixLen = 28",
    ]))
    assert sorted(x.vlan for x in s.interfaces.subnets) == [1, 100, 101, 102, 103, 120]
    assert s.interfaces.pool_vlans == frozenset({100, 101, 102, 103})


# -- broken files ---------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


BROKEN = [
    ("system", "requireServices", "firewall,telnet"),
    ("firewall", "nftBackend", "iptables"),
    ("system", "allowAllConnections", "maybe"),
    ("system", "defaultOpenVlanId", "5000"),
    ("supervisor", "supervisorControlPort", "70000"),
    ("supervisor", "supervisorControlAddress", "localhost"),
    ("radius", "clientIP", "10.0.0"),
    ("radius", "clientMask", "33"),
    ("ap", "channel", "eleven"),
    ("ap", "interface", "an-interface-name-too-long"),
    ("interfaces", "if1", "1,10.0.1.1,10.0.1.255"),
    ("interfaces", "if2", "2,10.0.2.1,10.0.2.255,255.0.255.0"),
    ("dhcp", "dhcpRange1", "1,10.0.1.9,10.0.1.2,255.255.255.0,24h"),
    ("dhcp", "dhcpRange1", "1,10.0.1.2,10.0.1.9,255.255.255.0,forever"),
]


@pytest.mark.parametrize(("section", "ini", "value"), BROKEN)
def test_bad_value_names_file_section_key_and_value(tmp_path: Path, section: str, ini: str,
                                                    value: str) -> None:
    path = _write(tmp_path, f'[{section}]\n{ini} = "{value}"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    msg = str(err.value)
    assert "\n" not in msg
    for part in (str(path), f"[{section}]", ini.lower() if ini[-1].isdigit() else ini, value):
        assert part in msg, f"{part!r} missing from {msg!r}"


@pytest.mark.parametrize("text", [
    "[system\nexecAp = true\n",
    "[system]\njust some words\n",
    "[system]\n= value\n",
    "[system]\ndefaultOpenVlanId = 7\n"
    "[interfaces]\nif1 = \"1,10.0.1.1,10.0.1.255,255.255.255.0\"\n",
    "[interfaces]\nif1 = \"1,10.0.1.1,10.0.1.255,255.255.255.0\"\n"
    "if2 = \"1,10.0.2.1,10.0.2.255,255.255.255.0\"\n",
    "[interfaces]\nvlanPoolPrefix = 10.0.0.0/8\nvlanPoolPrefixLen = 31\n",
    "[interfaces]\nvlanPoolPrefix = not-a-network\n",
    "[supervisor]\nsupervisorControlPath = /" + "x" * 120 + "\n",
])
def test_structural_errors_are_config_errors(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=str(path).replace("/", "\\/")):
        load_settings(path)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.ini")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path)
    bad = tmp_path / "latin1.ini"
    bad.write_bytes(b"[ap]\nssid = caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_settings(bad)


def test_unknown_key_and_section_are_warnings(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgesec.config")
    path = _write(tmp_path, "[system]\nexecAp = false\nfrobnicate = 3\n[nonsense]\na = b\n")
    s = load_settings(path)
    assert s.system.exec_ap is False
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "frobnicate" in messages and "[system]" in messages
    assert "[nonsense]" in messages


def _config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgesec.cli", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


def test_config_check_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '[supervisor]\nsupervisorControlPort = "70000"\n')
    out = _config_check(path)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(path) in lines[0] and "supervisorControlPort" in lines[0] and "70000" in lines[0]
    assert "Traceback" not in out.stderr


def test_config_check_unknown_key_warns_and_succeeds(tmp_path: Path) -> None:
    out = _config_check(_write(tmp_path, "[system]\nfrobnicate = 3\n"))
    assert out.returncode == 0
    assert "warning" in out.stderr and "frobnicate" in out.stderr


def test_run_with_bad_config_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, '[system]\nexecAp = "perhaps"\n')
    out = subprocess.run([sys.executable, "-m", "edgesec.cli", "run", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "execAp" in out.stderr and "perhaps" in out.stderr


# -- fuzzing ----------------------------------------------------------------------------------

KNOWN = [(s, f.metadata["ini"]) for s, cls in SECTIONS.items() for f in fields(cls)
         if "ini" in f.metadata] + [("interfaces", "if1"), ("interfaces", "if2"),
                                     ("dhcp", "dhcpRange1")]
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["true", "0", "-1", "4094", "4095", "65536", "10.0.1.1", "255.255.255.0",
                     "1,10.0.1.1,10.0.1.255,255.255.255.0", "1,10.0.1.2,10.0.1.9,255.255.255.0,1h",
                     "10.0.0.0/16", "28", '"quoted"', "a,b,c", "", "0x10", "br"]),
)


@given(st.text(max_size=400))
def test_fuzz_arbitrary_text_only_config_errors(text: str) -> None:
    try:
        settings = parse_settings(text)
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(settings, Settings)


@given(st.lists(st.tuples(st.sampled_from(KNOWN), VALUES), max_size=8))
def test_fuzz_known_keys_only_config_errors(entries: list) -> None:
    text = "\n".join(f"[{s}]\n{k} = {v}" for (s, k), v in entries)
    try:
        settings = parse_settings(text)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip()
        return
    assert isinstance(settings, Settings)


def test_require_services_and_nft_keys(tmp_path: Path) -> None:
    s = load_settings(_write(tmp_path, """
[system]
requireServices = "DHCP, mdns"
[firewall]
nftBackend = binary
nftBinPath = /opt/nft/sbin/nft
"""))
    assert s.system.require_services == ("dhcp", "mdns")
    assert (s.firewall.nft_backend, s.firewall.nft_bin_path) == ("binary", "/opt/nft/sbin/nft")
    d = load_settings(_write(tmp_path, "[system]\nrequireServices = none\n"))
    assert d.system.require_services == ("none",)
    assert load_settings(_write(tmp_path, "")).system.require_services == ()
