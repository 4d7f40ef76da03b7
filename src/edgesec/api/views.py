"""JSON shapes of registry records, and the checks of what clients send.

Pure: no I/O. A PSK is never part of any shape (only ``has_psk``); timestamps
are ISO 8601 in UTC; the device status is a word.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any

from edgesec.events import Event, payload
from edgesec.registry import STATUS_CONNECTED, STATUS_DISCONNECTED, Device, normalise_mac

STATUS_WORDS = {STATUS_CONNECTED: "connected", STATUS_DISCONNECTED: "disconnected"}
PATCH_FIELDS = {"nat": bool, "allowed": bool, "vlan": int, "label": str, "psk": str}


class BadRequest(ValueError):
    """Client input that is refused (HTTP 400), with the reason."""


_H2 = "[0-9A-Fa-f]{2}"
_H4 = "[0-9A-Fa-f]{4}"
# The notations the API takes (also its OpenAPI pattern): colon, dash, Cisco dots, bare.
MAC_PATTERN = (f"^({_H2}(:{_H2}){{5}}|{_H2}(-{_H2}){{5}}|{_H4}\\.{_H4}\\.{_H4}"
               f"|[0-9A-Fa-f]{{12}})$")
_MAC = re.compile(MAC_PATTERN)


def parse_mac(text: str, what: str = "mac") -> str:
    """``aa:bb:cc:dd:ee:ff`` from a MAC in one of :data:`MAC_PATTERN`'s notations."""
    if not _MAC.fullmatch(text):
        raise BadRequest(f"{what}: invalid MAC address {text[:40]!r}")
    return normalise_mac(text)


def iso(ts_seconds: float) -> str:
    return datetime.fromtimestamp(ts_seconds, UTC).isoformat(timespec="seconds")


def device_json(dev: Device, bridges: list[str]) -> dict[str, Any]:
    return {
        "mac": dev.mac,
        "label": dev.label,
        "vlan": dev.vlanid,
        "ips": list(dev.ips),
        "allowed": dev.allow,
        "nat": dev.nat,
        "status": STATUS_WORDS.get(dev.status, "unknown"),
        "joined_at": iso(dev.join_ts / 1e6) if dev.join_ts else None,
        "bridges": sorted(bridges),
        "has_psk": bool(dev.psk),
    }


def check_patch(body: Any) -> dict[str, Any]:
    """A device PATCH: an object of known fields with the right JSON types."""
    if not isinstance(body, dict) or not body:
        raise BadRequest("expected a non-empty JSON object")
    out: dict[str, Any] = {}
    for name, value in body.items():
        kind = PATCH_FIELDS.get(name)
        if kind is None:
            raise BadRequest(f"unknown field {name!r}; known: {', '.join(PATCH_FIELDS)}")
        # bool is an int in Python: never accept true as a VLAN or 1 as a flag
        if type(value) is not kind:
            raise BadRequest(f"{name}: expected {kind.__name__}")
        out[name] = value
    return out


def json_value(value: Any) -> Any:
    """Event payloads as JSON: devices without their PSK, other records as objects."""
    if isinstance(value, Device):
        return device_json(value, [])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: json_value(v) for k, v in dataclasses.asdict(value).items()
                if k not in ("psk", "passphrase")}
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()
                if k not in ("psk", "passphrase")}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def sse_message(event: Event, ts_seconds: float) -> bytes:
    """One Server-Sent Events message for ``event`` (its wire mapping, no secrets).

    No ``event:`` field: every kind reaches a browser's onmessage (the kind is
    in the payload), so kinds added later need no client change.
    """
    body = {"ts": iso(ts_seconds), "kind": event.kind, "mac": event.mac,
            "data": json_value(payload(event))}
    return f"data: {json.dumps(body)}\n\n".encode()


def require_str(body: Any, name: str) -> str:
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    value = body.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name}: expected a string")
    return value
