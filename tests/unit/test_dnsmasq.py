"""dnsmasq configuration generated from the original's example config (and variants)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgesec.config import Settings, load_settings, parse_settings
from edgesec.dhcp.dnsfwd import (
    forwarder_argv,
    forwarder_config_path,
    forwarder_port,
    render_forwarder_config,
)
from edgesec.dhcp.dnsmasq import (
    DhcpConfigError,
    range_tag,
    render_config,
    render_hook_script,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "config.ini"


def _original_dns(path: Path) -> Settings:
    """The example config with the original's DNS (upstream for every device)."""
    text = path.read_text()
    assert "localOnlyWithoutNat = true" in text
    text = text.replace("localOnlyWithoutNat = true", "localOnlyWithoutNat = false")
    return parse_settings(text, base=path.parent)


def test_example_config_keeps_the_original_lines_in_order() -> None:
    lines = render_config(_original_dns(EXAMPLE)).splitlines()
    assert lines[:5] == [
        "no-resolv",
        "server=8.8.4.4",
        "server=8.8.8.8",
        "dhcp-leasefile=/run/edgesec/dnsmasq.leases",
        "dhcp-script=/run/edgesec/dnsmasq_exec.sh",
    ]
    # ap.interface = wlan0: VLAN 0 is the interface itself, VLAN n is wlan0.n
    assert lines[5] == "dhcp-range=wlan0,10.0.0.2,10.0.0.254,255.255.255.0,24h"
    assert lines[6] == "dhcp-range=wlan0.1,10.0.1.2,10.0.1.254,255.255.255.0,24h"
    assert lines[15] == "dhcp-range=wlan0.10,10.0.10.2,10.0.10.254,255.255.255.0,24h"
    # ours, after the original's: only device bridges are served, no ping delay
    extra = lines[16:]
    assert sorted(x for x in extra if x.startswith("interface=")) == sorted(
        f"interface=br{v}" for v in range(11))
    assert "interface=eth0" not in extra  # never the WAN (natInterface)
    assert "no-ping" in extra


def _settings(extra: str = "", wifi: str = "") -> object:
    text = f"""
[system]
defaultOpenVlanId = 1
[ap]
interface = "{wifi}"
[dns]
servers = "1.1.1.1"
[dhcp]
dhcpConfigPath = "/x/dnsmasq.conf"
dhcpScriptPath = "/x/hook.sh"
dhcpLeasefilePath = "/x/leases"
dhcpRange1 = "1,10.0.1.2,10.0.1.254,255.255.255.0,24h"
[interfaces]
interfacePrefix = "br"
if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"
{extra}
"""
    return parse_settings(text)


def test_tag_without_wifi_interface_uses_interface_prefix() -> None:
    assert "dhcp-range=br1,10.0.1.2,10.0.1.254,255.255.255.0,24h" in render_config(_settings())
    assert range_tag(7, "averyverylongprefix") == "averyverylo7"


def test_tag_longer_than_an_interface_name_is_an_error() -> None:
    with pytest.raises(DhcpConfigError, match="longer than 15"):
        range_tag(12345, "", "wlanabcdefgh")


def test_pool_subnets_get_ranges_and_interfaces() -> None:
    s = _settings('vlanPoolPrefix = "10.200.0.0/24"\nvlanPoolPrefixLen = 28\n'
                  'vlanPoolFirstVlan = 100')
    text = render_config(s)
    assert "dhcp-range=br100,10.200.0.2,10.200.0.14,255.255.255.240,24h" in text
    assert "dhcp-range=br115,10.200.0.242,10.200.0.254,255.255.255.240,24h" in text
    assert "interface=br115" in text


def test_generated_config_is_accepted_by_dnsmasq(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE)
    for name, text in (("dnsmasq.conf", render_config(settings)),
                       ("forward.conf", render_forwarder_config(settings))):
        conf = tmp_path / name
        conf.write_text(text + "\n")
        res = subprocess.run(["dnsmasq", "--test", "-C", str(conf)], capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr
        assert "syntax check OK" in res.stderr


def test_split_dns_by_default_main_instance_has_no_upstream() -> None:
    settings = load_settings(EXAMPLE)  # natInterface, servers and execDhcp are set
    main = render_config(settings).splitlines()
    assert not [x for x in main if x.startswith("server=")]
    assert forwarder_port(settings) == 5053
    fwd = render_forwarder_config(settings).splitlines()
    assert fwd[:4] == ["port=5053", "no-resolv", "server=8.8.4.4", "server=8.8.8.8"]
    assert "server=//127.0.0.1#53" in fwd  # DHCP names: asked of the main instance
    assert "rev-server=10.0.1.0/24,127.0.0.1#53" in fwd
    assert "interface=br1" in fwd and "interface=eth0" not in fwd
    assert not [x for x in fwd if x.startswith(("dhcp-", "port=53"))]
    assert forwarder_config_path(settings).name == "dnsmasq-forward.conf"
    assert forwarder_argv(settings)[-1].endswith("dnsmasq-forward.conf")


def test_no_split_without_nat_interface_or_servers_or_when_switched_off() -> None:
    assert forwarder_port(_settings()) == 0  # no natInterface: nobody gets upstream
    assert "server=" not in render_config(_settings())
    assert forwarder_port(_original_dns(EXAMPLE)) == 0
    off = _settings("[nat]\nnatInterface = wan0\n[system]\nexecDhcp = true\n"
                    "[dns]\nlocalOnlyWithoutNat = false\n")
    assert forwarder_port(off) == 0 and "server=1.1.1.1" in render_config(off)
    with pytest.raises(ValueError, match="forwarderPort"):
        _settings("[dns]\nforwarderPort = 53\n")


def test_hook_script_quotes_paths_and_passes_arguments(tmp_path: Path) -> None:
    text = render_hook_script("/run/edge sec/$(reboot).sock", python="/usr/bin/python3")
    assert text.startswith("#!/bin/sh\n")
    assert "'/run/edge sec/$(reboot).sock'" in text
    assert text.rstrip().endswith('"$@"')
    script = tmp_path / "hook.sh"
    script.write_text(render_hook_script(tmp_path / "none.sock"))
    os.chmod(script, 0o755)
    res = subprocess.run([str(script), "add", "not-a-mac", "10.0.1.5"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             p for p in os.sys.path if p)})
    assert res.returncode == 1 and "invalid MAC" in res.stderr




def test_an_empty_dnsmasq_path_is_refused_by_name() -> None:
    """An empty path key used to reach dnsmasq as the text "None" (or crash in Path())."""
    from dataclasses import replace

    from edgesec.dhcp.dnsmasq import dnsmasq_argv

    s = parse_settings(EXAMPLE.read_text(), base=EXAMPLE.parent)
    no_script = replace(s, dhcp=replace(s.dhcp, dhcp_script_path=None))
    with pytest.raises(DhcpConfigError, match=r"\[dhcp\] dhcpScriptPath is empty"):
        render_config(no_script)
    no_conf = replace(s, dhcp=replace(s.dhcp, dhcp_config_path=None))
    with pytest.raises(DhcpConfigError, match=r"\[dhcp\] dhcpConfigPath is empty"):
        dnsmasq_argv(no_conf)
