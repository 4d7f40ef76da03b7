"""Capture options: the ``[capture]`` settings the capture code reads.

:class:`CaptureOptions` is a frozen snapshot built from
``settings.capture`` (attribute names are the INI keys in snake_case). Every
INI key is declared once, in ``config.CaptureSettings``; the defaults here
are taken from there, so the two cannot disagree. It serialises to JSON so
the capture worker process gets exactly what the service saw.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgesec.config import CaptureSettings, parse_bool

_SETTINGS = {f.name: f.default for f in fields(CaptureSettings)}
DEFAULT_MIDDLEWARES: tuple[str, ...] = CaptureSettings().middlewares
BLOCK_SIZE = 1 << 17  # TPACKET_V3 block (ring.py): fits a 64 KiB frame
RING_SLOT = 256  # ring bytes per small packet: 48-byte header + frame, 16-aligned
RING_HOLD_S = 1.0  # how long the ring must absorb the configured rate unread
MIN_RING_BLOCKS = 4


def _d(name: str) -> Any:
    """Default of the INI key ``name`` as declared in config.CaptureSettings."""
    return field(default=_SETTINGS[name])


def ring_size(rate: int) -> int:
    """Ring bytes per interface for ``rate`` packets/s (bufferSize = 0).

    ``rate x RING_SLOT x RING_HOLD_S`` rounded up to whole 128 KiB blocks,
    at least 4 blocks (512 KiB) and at most 16 MiB.
    """
    want = int(max(rate, 0) * RING_SLOT * RING_HOLD_S)
    blocks = min(max(-(-want // BLOCK_SIZE), MIN_RING_BLOCKS), 128)
    return blocks * BLOCK_SIZE


def reserve_bytes(reserve: str, fs_size: int) -> int:
    """``captureReserve`` (bytes or ``N%``) in bytes for a filesystem of ``fs_size``."""
    text = str(reserve).strip()
    if text.endswith("%"):
        return int(fs_size * float(text[:-1]) / 100)
    try:
        return int(text, 10)
    except ValueError:
        return int(text, 0)  # 0x/0o/0b, as config.parse_int


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """Everything capture needs; see docs/capture.md for each key."""

    capture_db_path: Path = _d("capture_db_path")
    filter: str = _d("filter")
    promiscuous: bool = _d("promiscuous")
    immediate: bool = _d("immediate")
    buffer_timeout: int = _d("buffer_timeout")
    middleware_params: str = _d("middleware_params")
    middlewares: tuple[str, ...] = _d("middlewares")
    capture_interfaces: tuple[str, ...] = _d("capture_interfaces")
    pcap_dir_path: Path | None = _d("pcap_dir_path")
    pcap_rotate_size: int = _d("pcap_rotate_size")
    pcap_rotate_seconds: int = _d("pcap_rotate_seconds")
    pcap_store_size: int = _d("pcap_store_size")
    flow_timeout: int = _d("flow_timeout")
    eve_path: Path | None = _d("eve_path")
    buffer_size: int = _d("buffer_size")
    capture_rate: int = _d("capture_rate")
    capture_db_size: int = _d("capture_db_size")
    capture_max_age: int = _d("capture_max_age")
    capture_reserve: str = _d("capture_reserve")
    commit_interval: float = _d("commit_interval")
    eve_rotate_size: int = _d("eve_rotate_size")
    batch_size: int = 2048
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def store_dir(self) -> Path:
        """Folder for pcap files: ``pcapDirPath``, else ``<dirname(captureDbPath)>/pcap``."""
        return self.pcap_dir_path or self.capture_db_path.parent / "pcap"

    @property
    def eve_file(self) -> Path:
        """EVE JSON-lines output file."""
        return self.eve_path or self.capture_db_path.parent / "eve.json"

    @property
    def ring_bytes(self) -> int:
        """Kernel ring per interface: ``bufferSize``, else sized from ``captureRate``."""
        return self.buffer_size or ring_size(self.capture_rate)

    @classmethod
    def from_settings(cls, section: Any, **overrides: Any) -> CaptureOptions:
        """Build from ``settings.capture`` (any object with attributes)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            value = getattr(section, f.name, None)
            if value is not None:
                values[f.name] = value
        values.update(overrides)
        return cls.coerce(values)

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> CaptureOptions:
        """Normalise types (paths, comma lists, ints, bools)."""
        v = dict(values)
        if "capture_db_path" in v:
            v["capture_db_path"] = Path(v["capture_db_path"])
        for name in ("eve_path", "pcap_dir_path"):
            if v.get(name) in ("", None):
                v[name] = None
            elif name in v:
                v[name] = Path(v[name])
        if isinstance(v.get("capture_interfaces"), str):
            v["capture_interfaces"] = tuple(
                i.strip() for i in v["capture_interfaces"].split(",") if i.strip())
        elif v.get("capture_interfaces") is not None:
            v["capture_interfaces"] = tuple(v["capture_interfaces"])
        mws = v.get("middlewares")
        if isinstance(mws, str):
            v["middlewares"] = tuple(m.strip() for m in mws.split(",") if m.strip())
        elif mws is not None:
            v["middlewares"] = tuple(mws)
        for name in ("buffer_timeout", "pcap_rotate_size", "pcap_rotate_seconds",
                     "pcap_store_size", "flow_timeout", "buffer_size", "batch_size",
                     "capture_rate", "capture_db_size", "capture_max_age", "eve_rotate_size"):
            if name in v:
                v[name] = int(v[name])
        if "commit_interval" in v:
            v["commit_interval"] = float(v["commit_interval"])
        if "capture_reserve" in v:
            v["capture_reserve"] = str(v["capture_reserve"])
        for name in ("promiscuous", "immediate"):
            if isinstance(v.get(name), str):
                v[name] = parse_bool(v[name].strip())
        return cls(**v)

    def to_json(self) -> str:
        """JSON text for the worker process."""
        d = asdict(self)
        d["capture_db_path"] = str(self.capture_db_path)
        d["eve_path"] = str(self.eve_path) if self.eve_path else None
        d["pcap_dir_path"] = str(self.pcap_dir_path) if self.pcap_dir_path else None
        d["capture_interfaces"] = list(self.capture_interfaces)
        d["middlewares"] = list(self.middlewares)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> CaptureOptions:
        """Inverse of :meth:`to_json`."""
        return cls.coerce(json.loads(text))
