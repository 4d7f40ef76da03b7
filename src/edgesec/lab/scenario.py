"""``edgesec lab attack``: run an attack scenario in a device, watch detection and containment.

The traffic itself comes from :mod:`edgesec.lab.attack` run inside the
device's namespace; this side polls ``GET_QUARANTINE`` and reads the alerts
the detect service recorded for the device.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from dataclasses import dataclass

from edgesec.lab import topology as tb
from edgesec.lab.lab import Lab, LabError


@dataclass
class AttackResult:
    """What ``edgesec lab attack`` saw: the traffic sent, detection and containment."""

    device: str
    mac: str
    kind: str
    sent: str
    first_packet: float
    quarantined: bool
    contained_after: float | None
    alerts: list[str]

    def text(self) -> str:
        lines = [f"{self.device} ({self.mac}) ran {self.kind}: {self.sent}"]
        lines += [f"  alert {a}" for a in self.alerts]
        if self.quarantined and self.contained_after is not None:
            lines.append(f"  quarantined {self.contained_after:.1f}s after the first packet")
        else:
            lines.append("  not quarantined")
        return "\n".join(lines)


def attack(lab: Lab, name: str, kind: str, wait: float = 15.0) -> AttackResult:
    """Run ``edgesec.lab.attack KIND`` in device ``name``; poll GET_QUARANTINE and alerts."""
    dev = lab.device(name)
    if not dev.ns or not dev.ip:
        raise LabError(f"{name} has no namespace or address (it did not join)")
    route = lab.run(name, ["ip", "-4", "route", "show", "default"]).stdout.split()
    gateway = route[2] if len(route) > 2 else ""
    peers = [d.ip for d in lab.state.devices if d.ip and d.name != name]
    argv = [sys.executable, "-m", "edgesec.lab.attack", kind, "--gateway", gateway,
            "--wan", tb.Topology.WAN_IP, *[x for p in peers[:8] for x in ("--peer", p)]]
    res = lab.run(name, argv, timeout=180)
    first, sent = time.time(), res.stdout.strip() or res.stderr.strip()
    for line in res.stdout.splitlines():
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            first = float(msg.get("first_packet", first))
            if "sent" in msg:
                sent = f"{msg['sent']} sent"
    contained_at: float | None = None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if any(ln.startswith(dev.mac + ",") for ln in lab.ctl("GET_QUARANTINE").splitlines()):
            contained_at = time.time()
            break
        time.sleep(0.2)
    if contained_at is not None:
        # when the decision was committed (the firewall applies it synchronously after)
        contained_at = _quarantined_at(lab, dev.mac, first - 1) or contained_at
    alerts = _alerts_of(lab, dev.mac, first - 1)
    return AttackResult(name, dev.mac, kind, sent, first, contained_at is not None,
                        None if contained_at is None else max(0.0, contained_at - first),
                        alerts)


def _alerts_of(lab: Lab, mac: str, since: float) -> list[str]:
    path = lab.dir / "detect.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT kind, severity, message FROM alerts WHERE mac = ? AND ts >= ?"
                          " ORDER BY rowid", (mac, since)).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    return [f"{k} (severity {s}): {m}" for k, s, m in rows]


def _quarantined_at(lab: Lab, mac: str, since: float) -> float | None:
    """Time of the device's latest quarantine decision in the audit trail."""
    path = lab.dir / "connections.sqlite"
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT max(ts) FROM audit WHERE mac = ? AND action = 'quarantine'"
                         " AND ts >= ?", (mac, since)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return float(row[0]) if row and row[0] is not None else None
