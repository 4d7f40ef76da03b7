"""What ``edgesec lab status`` shows: the lab's devices as edgesec sees them.

Owns: merging the lab's own records (names, namespaces, join state) with the
daemon's view (``GET_ALL`` device lines and ``GET_BRIDGES``) into one row per
device, and rendering those rows as a rich table. Parsing is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgesec.device_status import DeviceStatus
from edgesec.lab.state import LabState
from edgesec.supervisor.protocol import DeviceLine, parse_device_line

if TYPE_CHECKING:
    from rich.table import Table

STATUS_WORDS = {DeviceStatus.UNKNOWN: "", DeviceStatus.CONNECTED: "yes",
                DeviceStatus.DISCONNECTED: "no"}


@dataclass
class Row:
    name: str
    mac: str
    vlan: str = ""
    ip: str = ""
    nat: bool = False
    allowed: str = ""
    bridges: list[str] = field(default_factory=list)
    connected: str = ""
    lab_state: str = ""


def parse_all(reply: str) -> dict[str, DeviceLine]:
    """GET_ALL reply -> {mac: its fields}; ``OK``/blank/odd lines are skipped."""
    out = {}
    for line in reply.splitlines():
        fields = parse_device_line(line)
        if fields is not None:
            out[fields.mac.lower()] = fields
    return out


def parse_bridges(reply: str) -> list[tuple[str, str]]:
    """GET_BRIDGES reply -> [(mac_a, mac_b)]."""
    pairs = []
    for line in reply.splitlines():
        a, sep, b = line.partition(",")
        if sep and len(a) == 17 and len(b) == 17:
            pairs.append((a.lower(), b.lower()))
    return pairs


def rows(state: LabState, all_reply: str, bridges_reply: str) -> list[Row]:
    """One row per lab device (and per other device edgesec knows about)."""
    known = parse_all(all_reply)
    pairs = parse_bridges(bridges_reply)
    names = {d.mac: d.name for d in state.devices}
    out = []
    macs = [d.mac for d in state.devices] + sorted(m for m in known if m not in names)
    for mac in macs:
        dev = next((d for d in state.devices if d.mac == mac), None)
        row = Row(name=dev.name if dev else "?", mac=mac, lab_state=dev.state if dev else "")
        f = known.get(mac)
        if f is not None:
            row.allowed = "allow" if f.allow == "a" else "deny"
            row.ip = "\n".join(ip for ip in (f.primary_ip, f.secondary_ip) if ip)
            row.vlan, row.nat = f.vlanid, f.nat == "1"
            status = int(f.status) if f.status.isdigit() else 0
            row.connected = STATUS_WORDS[DeviceStatus(status)]
        elif dev is not None:
            row.vlan, row.ip = str(dev.vlan or ""), dev.ip
        if not row.connected and dev is not None:
            # edgesec learns connections from hostapd; the lab attaches devices itself.
            row.connected = "attached" if dev.state in ("attached", "joined") else "no"
        for a, b in pairs:
            if mac in (a, b):
                peer = b if mac == a else a
                row.bridges.append(names.get(peer, peer))
        out.append(row)
    return out


def table(title: str, data: list[Row]) -> Table:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(title))
    # Identifiers are never wrapped or cut: a narrow terminal squeezes the rest.
    for col in ("device", "MAC", "VLAN", "IP"):
        t.add_column(col, no_wrap=True)
    for col in ("NAT", "bridges", "connected", "lab"):
        t.add_column(col)
    for r in data:
        # Text, not str: a cell is never read as markup or emoji (":ab:" stays ":ab:").
        t.add_row(*(Text(cell) for cell in (
            r.name,
            r.mac,
            r.vlan,
            r.ip or "-",
            "yes" if r.nat else "no",
            ", ".join(r.bridges) or "-",
            r.connected or "-",
            r.lab_state + ("" if r.allowed != "deny" else " (denied)"),
        )))
    return t
