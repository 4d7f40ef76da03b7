"""Capture options: the ``[capture]`` settings the capture code reads.

:class:`CaptureOptions` is a frozen snapshot built from
``settings.capture`` (attribute names are the INI keys in snake_case; keys
the config does not carry fall back to the defaults below). It serialises
to JSON so the capture worker process gets exactly what the service saw.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_MIDDLEWARES = ("header",)


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """Everything capture needs; see docs/capture.md for each key."""

    capture_db_path: Path = Path("capture.sqlite")
    filter: str = ""
    promiscuous: bool = False
    immediate: bool = False
    buffer_timeout: int = 10
    middleware_params: str = ""
    middlewares: tuple[str, ...] = DEFAULT_MIDDLEWARES
    capture_interfaces: tuple[str, ...] = ()
    pcap_dir_path: Path | None = None
    pcap_rotate_size: int = 16 * 1024 * 1024
    pcap_rotate_seconds: int = 60
    pcap_store_size: int = 256 * 1024 * 1024
    flow_timeout: int = 120
    eve_path: Path | None = None
    buffer_size: int = 16 * 1024 * 1024
    batch_size: int = 2048
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def store_dir(self) -> Path:
        """Folder for pcap files: ``pcapDirPath``, else ``<dirname(captureDbPath)>/capture``."""
        return self.pcap_dir_path or self.capture_db_path.parent / "capture"

    @property
    def eve_file(self) -> Path:
        """EVE JSON-lines output file."""
        return self.eve_path or self.capture_db_path.parent / "eve.json"

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
                     "pcap_store_size", "flow_timeout", "buffer_size", "batch_size"):
            if name in v:
                v[name] = int(v[name])
        for name in ("promiscuous", "immediate"):
            if isinstance(v.get(name), str):
                v[name] = v[name].strip().lower() in ("1", "true", "yes", "on")
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
