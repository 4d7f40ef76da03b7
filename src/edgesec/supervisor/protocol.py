"""The supervisor's text protocol: parsing requests and formatting replies (pure).

Byte-compatible with the original: one command per datagram, words separated
by single spaces, trailing whitespace ignored, replies ``OK\\n``/``FAIL\\n``
or data lines ending in ``\\n``.  Differences, all documented in
docs/supervisor.md: malformed input (empty, non-UTF-8, NUL bytes, oversized,
unknown command) is answered ``FAIL`` instead of silence.

Authenticated UDP framing (new): ``EDGESEC1 <unix_ts> <nonce_hex> <hmac_hex>
<command>``, where the HMAC-SHA256 under the shared key covers
``EDGESEC1 <unix_ts> <nonce_hex> <command>``.  Replies to authenticated
requests are framed ``EDGESEC1 <nonce_hex> <hmac_hex> <reply>`` with the HMAC
over ``EDGESEC1 <nonce_hex> <reply>``, so the client can check the reply
belongs to its request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # kept out of the import path of light clients (the lease hook)
    from edgesec.events import Event
    from edgesec.registry import Bridge, Device

OK = "OK\n"
FAIL = "FAIL\n"
PONG = "PONG\n"
MAX_DATAGRAM = 32 * 1024
TRAILING = "\t\n\v\f\r "
AUTH_MAGIC = "EDGESEC1"
AUTH_WINDOW_S = 30


class ProtocolError(ValueError):
    """A datagram that is not a well-formed command."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str, ...]


def parse_command(data: bytes) -> Command:
    """Split one request datagram into a command name and its arguments."""
    if not data:
        raise ProtocolError("empty datagram")
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    if b"\0" in data:
        raise ProtocolError("NUL byte in command")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("command is not UTF-8") from None
    text = text.rstrip(TRAILING)
    if not text:
        raise ProtocolError("blank command")
    words = text.split(" ")
    if not words[0]:
        raise ProtocolError("command starts with a space")
    return Command(words[0], tuple(words[1:]))


def format_device(d: Device) -> str:
    """The original's 11-field device line (GET_MAP, GET_ALL)."""
    return (
        f"{'a' if d.allow else 'd'},{d.mac},{d.primary_ip},{d.secondary_ip},{d.vlanid},"
        f"{int(d.nat)},{d.label},{d.id},{int(bool(d.psk))},{d.join_ts},{d.status}\n"
    )


class DeviceLine(NamedTuple):
    """The fields of a device line, by name (what :func:`format_device` writes)."""

    allow: str  # "a" or "d"
    mac: str
    primary_ip: str
    secondary_ip: str
    vlanid: str
    nat: str  # "1" or "0"
    label: str
    id: str
    has_psk: str
    join_ts: str
    status: str


def parse_device_line(line: str) -> DeviceLine | None:
    """A GET_MAP/GET_ALL line split into named fields; None if it is not one."""
    fields = line.rstrip("\n").split(",")
    if len(fields) != len(DeviceLine._fields) or len(fields[1]) != 17:
        return None
    return DeviceLine(*fields)


def format_devices(devices: list[Device]) -> str:
    return "".join(format_device(d) for d in devices) or OK


def format_bridges(bridges: list[Bridge] | list[tuple[str, str]]) -> str:
    lines = []
    for b in bridges:
        a, c = b if isinstance(b, tuple) else (b.a, b.b)
        lines.append(f"{a},{c}\n")
    return "".join(lines) or OK


def event_line(event: Event) -> str | None:
    """The datagram a ``SUBSCRIBE_EVENTS`` client gets for ``event`` (None: not sent).

    Typed events of edgesec.detect are formatted from their fields; the others
    from their wire mapping by :func:`format_event`.
    """
    from edgesec.events import AlertRaised, QuarantineChanged, payload

    if isinstance(event, QuarantineChanged):  # containment on/off
        return f"QUARANTINE {event.mac} {'on' if event.on else 'off'} {_word(event.reason)}\n"
    if isinstance(event, AlertRaised):  # one alert (or an aggregate of a burst)
        return f"ALERT {event.mac or '-'} {_word(event.alert)} {_word(str(event.severity))}\n"
    return format_event(event.kind, event.mac, payload(event))


def format_event(kind: str, mac: str, data: Mapping[str, Any]) -> str | None:
    """An event datagram: the original's ``IP``/``AP`` lines plus documented extensions."""
    if kind == "ip":
        if data["type"] not in (1, 2):
            return None
        return f"IP {mac} {data['ip']} {data['type']} {data['primary']}\n"
    if kind == "ap":
        return f"AP {mac} {data['status']}\n"
    if kind == "bridge_added":
        return f"BRIDGE_ADDED {mac} {data['peer']} {_word(data.get('reason', ''))}\n"
    if kind == "bridge_removed":
        return f"BRIDGE_REMOVED {mac} {data['peer']} {_word(data.get('reason', ''))}\n"
    if kind == "group_changed":
        return f"GROUP_CHANGED {data['group']} {mac} {data['action']}\n"
    if kind in ("access_added", "access_removed"):
        return (f"{kind.upper()} {mac} {data['peer']} {data['service']} "
                f"{_word(data.get('reason', ''))}\n")
    if kind == "firewall_healed":
        return (f"FIREWALL_HEALED {_word(str(data.get('family', 'inet')))} "
                f"{_word(str(data.get('table', '')))} {int(data.get('heals', 0))} "
                f"{'_'.join(str(data.get('reason', '')).split()) or '-'}\n")
    if kind == "device" and data.get("removed") is not None:
        return f"DEVICE_REMOVED {mac} {_word(data.get('reason', ''))}\n"
    if kind == "mdns" and "text" in data:
        return f"MDNS {data['text']}\n"
    if kind == "policy":
        from edgesec.supervisor.audit import format_policy_event

        return format_policy_event(data)
    return None


def _word(text: str) -> str:
    return text.replace(" ", "_") or "-"


# -- authenticated UDP framing ----------------------------------------------


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sign_request(key: bytes, command: str, now: float | None = None,
                 nonce: str | None = None) -> tuple[bytes, str]:
    """Frame ``command`` for an authenticated UDP channel; returns (datagram, nonce)."""
    ts = int(time.time() if now is None else now)
    nonce = nonce or secrets.token_hex(8)
    head = f"{AUTH_MAGIC} {ts} {nonce}"
    return f"{head} {_mac(key, f'{head} {command}')} {command}".encode(), nonce


def verify_request(key: bytes, data: bytes, now: float | None = None) -> tuple[str, str, int]:
    """Check an authenticated datagram; returns (command text, nonce, timestamp)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("authenticated datagram is not UTF-8") from None
    parts = text.split(" ", 4)
    if len(parts) != 5 or parts[0] != AUTH_MAGIC:
        raise ProtocolError("datagram lacks the EDGESEC1 authentication header")
    _, ts_text, nonce, tag, command = parts
    if not (ts_text.isascii() and ts_text.isdigit()) or len(nonce) != 16 or not _is_hex(nonce):
        raise ProtocolError("malformed authentication header")
    expected = _mac(key, f"{AUTH_MAGIC} {ts_text} {nonce} {command}")
    if not hmac.compare_digest(expected.encode(), tag.encode()):
        raise ProtocolError("bad HMAC")
    ts = int(ts_text)
    if abs((time.time() if now is None else now) - ts) > AUTH_WINDOW_S:
        raise ProtocolError("timestamp outside the replay window")
    return command, nonce, ts


def sign_reply(key: bytes, nonce: str, reply: str) -> bytes:
    return f"{AUTH_MAGIC} {nonce} {_mac(key, f'{AUTH_MAGIC} {nonce} {reply}')} {reply}".encode()


def verify_reply(key: bytes, nonce: str, data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    parts = text.split(" ", 3)
    if len(parts) != 4 or parts[0] != AUTH_MAGIC or parts[1] != nonce:
        raise ProtocolError("reply does not answer this request")
    if not hmac.compare_digest(_mac(key, f"{AUTH_MAGIC} {nonce} {parts[3]}").encode(),
                               parts[2].encode()):
        raise ProtocolError("bad reply HMAC")
    return parts[3]


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
