"""Persistent state of a running lab, so another process can find and remove it.

Owns: the lab state directory ``<root>/<prefix>/`` (root ``/run/edgesec-lab``
unless ``EDGESEC_LAB_DIR`` says otherwise; mode 0700 because it holds the
lab's RADIUS secret and vault passphrase) and ``state.json`` in it: the
prefix, the pids the lab started, the paths of the generated config, sockets
and logs, and one record per device. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgesec.atomic import write_atomic

PREFIX_RE = re.compile(r"[a-z][a-z0-9]{1,7}")
DEFAULT_PREFIX = "elab"
_SAVE_LOCK = threading.Lock()  # devices join in threads; one writer at a time


def state_root() -> Path:
    return Path(os.environ.get("EDGESEC_LAB_DIR", "/run/edgesec-lab"))


def check_prefix(prefix: str) -> str:
    """2-8 lowercase alphanumerics starting with a letter (names stay under 15 chars)."""
    if not PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"lab prefix must be 2-8 lowercase letters/digits, starting with a letter: {prefix!r}"
        )
    return prefix


@dataclass
class DeviceState:
    """One lab device as the lab left it."""

    name: str
    mac: str
    ns: str = ""
    vlan: int | None = None
    bridge: str = ""
    veth: str = ""
    ip: str = ""
    state: str = "new"  # new, rejected, attached, joined, failed
    error: str = ""
    announce: str = ""  # mDNS instance name it publishes ("" = none)
    psk_ok: bool = False  # the Accept carried a Tunnel-Password hostapd could use
    agent_pid: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class LabState:
    """Everything ``status``/``exec``/``down`` need, written by ``up``."""

    prefix: str
    dir: str
    config: str = ""
    socket: str = ""
    gateway_ns: str = ""
    wan_ns: str = ""
    workdir: str = ""  # the topology's temporary directory
    daemon_pid: int | None = None
    radius_port: int = 1812
    radius_secret: str = ""
    crypt_passphrase: str = ""
    capture_db: str = ""
    pids: list[int] = field(default_factory=list)  # other processes the lab started
    api_url: str = ""  # the dashboard/API, forwarded to the host's loopback
    api_token: str = ""  # an admin token for the lab's API (the lab's own secret)
    forwarder_pid: int | None = None
    devices: list[DeviceState] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.dir) / "state.json"

    def device(self, name: str) -> DeviceState:
        for dev in self.devices:
            if dev.name == name or dev.ns == name or dev.mac == name.lower():
                return dev
        raise KeyError(f"no device {name!r} in lab {self.prefix}")

    def save(self) -> None:
        directory = Path(self.dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _SAVE_LOCK:
            write_atomic(self.path, json.dumps(asdict(self), indent=1), 0o600)

    @classmethod
    def load(cls, prefix: str, root: Path | None = None) -> LabState:
        path = (root or state_root()) / check_prefix(prefix) / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no lab {prefix!r} (no {path})") from None
        devices = [DeviceState.from_dict(d) for d in data.pop("devices", [])]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}, devices=devices)


def lab_dir(prefix: str, root: Path | None = None) -> Path:
    return (root or state_root()) / check_prefix(prefix)
