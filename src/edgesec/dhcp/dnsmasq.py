"""The DHCP service: dnsmasq's configuration, its lease hook script, and the process.

Owns ``[dhcp] dhcpConfigPath`` and ``dhcpScriptPath`` (both regenerated at each
start) and the dnsmasq child (started by pid through
:class:`edgesec.process.SupervisedProcess`, restarted with back-off, never
signalled by name).

The configuration keeps the original's lines in the original's order
(``no-resolv``, ``server=``, ``dhcp-leasefile=``, ``dhcp-script=``, one
``dhcp-range=<tag>,<first>,<last>,<netmask>,<lease>`` per ``dhcpRangeN``) and
adds, after them:

* one ``dhcp-range`` per VLAN-pool subnet without an explicit range (the
  usable hosts after the gateway, 24h);
* ``interface=<bridge>`` for every device subnet, so dnsmasq never answers
  DHCP or DNS on the WAN (the original listened everywhere);
* ``no-ping``: dnsmasq otherwise waits ~3 s per new lease pinging the address;
  the firewall's anti-spoofing already makes an address unusable to anyone but
  its lease holder;
* ``pid-file=`` (none: we track dnsmasq by the pid we started; it dies with
  the daemon through ``PR_SET_PDEATHSIG``, see :mod:`edgesec.process`).

With ``[dns] localOnlyWithoutNat = true`` (the default) the ``server=`` lines
are left out: this instance answers local names only, and devices with NAT
are redirected by the firewall to a second, forwarding dnsmasq
(:mod:`edgesec.dhcp.dnsfwd`, ``dnsmasq-forward.conf``), run and tracked by
pid the same way.

dnsmasq runs as ``<dhcpBinPath> --bind-dynamic --no-daemon -C <config>``, as
the original does.
"""

from __future__ import annotations

import ipaddress
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgesec.atomic import write_atomic
from edgesec.dhcp import dnsfwd

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.dhcp.dnsflush import NatWatch
    from edgesec.process import SupervisedProcess
    from edgesec.registry import Registry

log = logging.getLogger(__name__)

POOL_LEASE_TIME = "24h"
IFNAMSIZ = 15


class DhcpConfigError(ValueError):
    """The dnsmasq configuration cannot be generated from these settings."""


@dataclass(frozen=True)
class RangeLine:
    tag: str
    first: str
    last: str
    netmask: str
    lease_time: str

    def render(self) -> str:
        return f"dhcp-range={self.tag},{self.first},{self.last},{self.netmask},{self.lease_time}"


def range_tag(vlan: int, interface_prefix: str, wifi_interface: str = "") -> str:
    """The original's per-VLAN tag (``define_dhcp_interface_name``).

    With a wifi interface: VLAN 0 is the interface itself, VLAN n is
    ``<wifi[:10]>.<n>``; without one: ``<interfacePrefix[:11]><n>``.
    """
    if wifi_interface:
        tag = wifi_interface if vlan == 0 else f"{wifi_interface[:10]}.{vlan}"
    else:
        tag = f"{interface_prefix[:11]}{vlan}"
    if len(tag) > IFNAMSIZ:
        raise DhcpConfigError(f"DHCP range tag {tag!r} for VLAN {vlan} is longer than "
                              f"{IFNAMSIZ} characters")
    return tag


def range_lines(settings: Settings) -> list[RangeLine]:
    """The explicit ranges in file order, then one per pool subnet that has none."""
    ifs = settings.interfaces
    wifi = settings.ap.interface
    out = [RangeLine(range_tag(r.vlan, ifs.interface_prefix, wifi), str(r.first), str(r.last),
                     r.netmask, r.lease_time) for r in settings.dhcp.ranges]
    explicit = {r.vlan for r in settings.dhcp.ranges}
    pool = ifs.pool_vlans
    for sub in ifs.subnets:
        if sub.vlan in explicit or sub.vlan not in pool:
            continue
        hosts = [h for h in (sub.network.network_address + 1, sub.broadcast - 1)]
        first = sub.gateway + 1 if sub.gateway == hosts[0] else hosts[0]
        last = hosts[1] if sub.gateway != hosts[1] else hosts[1] - 1
        if int(first) > int(last):
            continue
        out.append(RangeLine(range_tag(sub.vlan, ifs.interface_prefix, wifi), str(first),
                             str(last), str(sub.network.netmask), POOL_LEASE_TIME))
    return out


def render_config(settings: Settings) -> str:
    """dnsmasq.conf text for ``settings`` (pure)."""
    d = settings.dhcp
    lines = ["no-resolv"]
    for server in settings.dns.servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise DhcpConfigError(f"[dns] servers: {server!r} is not an IP address") from None
        if not dnsfwd.local_only(settings):
            lines.append(f"server={server}")
    for label, path in (
            ("dhcp-leasefile", need(d.dhcp_leasefile_path, "[dhcp] dhcpLeasefilePath")),
            ("dhcp-script", need(d.dhcp_script_path, "[dhcp] dhcpScriptPath"))):
        text = str(path)
        if any(c in text for c in "\n\r\0"):
            raise DhcpConfigError(f"{label} path contains a line break")
        lines.append(f"{label}={text}")
    lines += [r.render() for r in range_lines(settings)]
    bridges = sorted({s.bridge for s in settings.interfaces.subnets})
    lines += [f"interface={b}" for b in bridges]
    lines += ["no-ping", "pid-file="]
    return "\n".join(lines)


def render_hook_script(socket_path: Path | str, python: str = sys.executable) -> str:
    """The ``dhcp-script``: hands dnsmasq's arguments to :mod:`edgesec.dhcp.hook`."""
    return "\n".join([
        "#!/bin/sh",
        "# Generated by edgesec: reports dnsmasq lease changes to the supervisor as",
        "# SET_IP <add|old|del> <mac> <ip>. Arguments are validated by the hook.",
        f"exec {shlex.quote(python)} -m edgesec.dhcp.hook --socket "
        f"{shlex.quote(str(socket_path))} \"$@\"",
        "",
    ])


def write_private(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` atomically and durably with ``mode`` (parent created 0755)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    write_atomic(path, text, mode)


def need(path: Path | None, key: str) -> Path:
    """A path dnsmasq and its lease hook cannot run without; empty ``key`` is refused."""
    if path is None:
        raise DhcpConfigError(f"{key} is empty: dnsmasq (or its lease hook) needs this path")
    return path


def control_path(settings: Settings) -> Path:
    """The supervisor socket the lease hook reports to."""
    return need(settings.supervisor.supervisor_control_path,
                "[supervisor] supervisorControlPath")


def dnsmasq_argv(settings: Settings) -> list[str]:
    d = settings.dhcp
    return [str(need(d.dhcp_bin_path, "[dhcp] dhcpBinPath")), "--bind-dynamic", "--no-daemon",
            "-C", str(need(d.dhcp_config_path, "[dhcp] dhcpConfigPath"))]


class DhcpService:
    """Service running dnsmasq on the generated configuration."""

    name = "dhcp"

    def __init__(self, settings: Settings, registry: Registry | None = None, *,
                 run: bool = True) -> None:
        self.settings = settings
        self.registry = registry
        self.run = run
        self.proc: SupervisedProcess | None = None
        self.forwarder: SupervisedProcess | None = None  # the split DNS's forwarding dnsmasq
        self.nat_watch: NatWatch | None = None  # flushes DNS flows of devices whose NAT flips

    def write_files(self) -> None:
        """(Re)generate dnsmasq.conf and the lease hook script."""
        d = self.settings.dhcp
        write_private(need(d.dhcp_config_path, "[dhcp] dhcpConfigPath"),
                      render_config(self.settings) + "\n", 0o644)
        write_private(need(d.dhcp_script_path, "[dhcp] dhcpScriptPath"),
                      render_hook_script(control_path(self.settings)),
                      0o755)
        leases = need(d.dhcp_leasefile_path, "[dhcp] dhcpLeasefilePath")
        leases.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if dnsfwd.forwarder_port(self.settings):
            write_private(dnsfwd.forwarder_config_path(self.settings),
                          dnsfwd.render_forwarder_config(self.settings) + "\n", 0o644)

    async def start(self) -> None:
        from edgesec.process import SupervisedProcess

        self.write_files()
        if not self.run:
            return
        self.proc = SupervisedProcess(dnsmasq_argv(self.settings), "dnsmasq",
                                      min_backoff=0.2, max_backoff=5.0, stop_timeout=1.0)
        await self.proc.start()
        if dnsfwd.forwarder_port(self.settings):
            self.forwarder = SupervisedProcess(dnsfwd.forwarder_argv(self.settings),
                                               "dnsmasq-forward", min_backoff=0.2,
                                               max_backoff=5.0)
            await self.forwarder.start()
            if self.registry is not None:
                from edgesec.dhcp.dnsflush import NatWatch

                self.nat_watch = NatWatch(self.registry)
                self.nat_watch.start()

    async def stop(self) -> None:
        if self.nat_watch is not None:
            self.nat_watch.stop()
            self.nat_watch = None
        if self.forwarder is not None:
            await self.forwarder.stop()
            self.forwarder = None
        if self.proc is not None:
            await self.proc.stop()

    async def reload(self, settings: Settings | None = None) -> bool:
        """SIGHUP: regenerate the files from ``settings``; restart dnsmasq if they changed.

        dnsmasq does not re-read ``-C`` on SIGHUP, hence the restart (leases
        survive in the lease file).  Settings that cannot be rendered raise
        :class:`DhcpConfigError` before anything is touched.  True if restarted.
        """
        new = settings if settings is not None else self.settings
        render_config(new)  # validate before changing anything
        d = new.dhcp
        before = _read(need(self.settings.dhcp.dhcp_config_path, "[dhcp] dhcpConfigPath"))
        self.settings = new
        if not self.run:
            self.write_files()
            return False
        changed = (before != render_config(new) + "\n"
                   or dnsmasq_argv(new) != (self.proc.argv if self.proc else None)
                   or _read(need(d.dhcp_script_path, "[dhcp] dhcpScriptPath"))
                   != render_hook_script(control_path(new)))
        if not changed and self.proc is not None:
            return False
        await self.stop()
        await self.start()
        log.info("dnsmasq restarted on the new configuration")
        return True

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def status(self) -> str:
        if self.proc is None:
            return "config written (dnsmasq not run)"
        fwd = f"; forwarder {self.forwarder.status()}" if self.forwarder is not None else ""
        return f"dnsmasq {self.proc.status()}{fwd}"

    def health(self) -> tuple[str, str]:
        """``failed`` while dnsmasq crash-loops (STATUS must not say ok then)."""
        return self.proc.health() if self.proc is not None else ("ok", "")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def build_dhcp_service(settings: Settings, registry: Registry) -> DhcpService:
    """Factory for the gateway: dnsmasq as a supervised child."""
    return DhcpService(settings, registry)
