"""Bounded decoder for mDNS (RFC 6762) datagrams.

Owns turning one untrusted UDP payload into a :class:`Message` or raising
:class:`DecodeError`.  Nothing else: no sockets, no policy.

Why our own decoder rather than ``dns.message.from_wire``: mDNS reuses the top
bit of the class field (cache-flush on records, unicast-response on
questions).  dnspython treats ``0x8001`` as an unknown class and hands back
generic rdata, so A/AAAA/PTR/SRV would need re-parsing anyway; it also raises
on several things that are legal in mDNS (e.g. OPT records outside the
additional section, duplicate OPTs) and is ~4x slower on the reflector's hot
path (see ``bench/mdns.py --decoder``).  Every bound is explicit here:

* datagram size (``max_size``, RFC 6762 §17: 9000 bytes),
* record counts (``max_records``, and each count must fit in the bytes left),
* name length (255), label length (63, pointer/extended label types rejected),
* compression: pointers must point strictly backwards and at most
  ``max_pointers`` may be followed per name, so loops are impossible.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_ANY",
    "TYPE_PTR",
    "TYPE_SRV",
    "TYPE_TXT",
    "DecodeError",
    "Limits",
    "Message",
    "Question",
    "Record",
    "decode",
]

TYPE_A = 1
TYPE_PTR = 12
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_ANY = 255

_CLASS_MASK = 0x7FFF
_TOP_BIT = 0x8000
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_Q_FIXED = struct.Struct("!HH")
_SRV_FIXED = struct.Struct("!HHH")


class DecodeError(ValueError):
    """The datagram is not a well-formed mDNS message within our bounds."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while decoding (all inclusive)."""

    max_size: int = 9000
    max_records: int = 256
    max_pointers: int = 16


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Question:
    """One question; ``qclass`` has the unicast-response bit masked off."""

    name: str
    qtype: int
    qclass: int
    unicast_response: bool


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; ``rclass`` has the cache-flush bit masked off.

    ``value`` is the decoded rdata for the types the reflector uses: the
    address text for A/AAAA, the target name for PTR, ``"prio weight port
    target"`` for SRV, else ``""``.
    """

    name: str
    rtype: int
    rclass: int
    cache_flush: bool
    ttl: int
    value: str
    section: str  # "an", "ns" or "ar"


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded mDNS message."""

    id: int
    flags: int
    questions: tuple[Question, ...]
    records: tuple[Record, ...]
    qu_offsets: tuple[int, ...] = ()  # byte offsets of qclass fields with the QU bit

    @property
    def is_response(self) -> bool:
        """QR bit set."""
        return bool(self.flags & 0x8000)

    def names(self) -> set[str]:
        """Every owner name and PTR target in the message (lower case)."""
        out = {q.name for q in self.questions}
        for r in self.records:
            out.add(r.name)
            if r.rtype == TYPE_PTR:
                out.add(r.value)
        return out


def _read_name(data: bytes, pos: int, limits: Limits) -> tuple[str, int]:
    """Read a (possibly compressed) name at ``pos``; return (name, end)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    size = len(data)
    lowest = pos  # a pointer must target strictly below every pointer seen
    while True:
        if pos >= size:
            raise DecodeError("name runs past end of packet")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= size:
                raise DecodeError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > limits.max_pointers:
                raise DecodeError("too many compression pointers")
            if target >= lowest:
                raise DecodeError("compression pointer does not point backwards")
            lowest = target
            pos = target
            continue
        if kind:
            raise DecodeError("unsupported label type")
        pos += 1
        if length == 0:
            break
        if pos + length > size:
            raise DecodeError("label runs past end of packet")
        total += length + 1
        if total > 255:
            raise DecodeError("name longer than 255 bytes")
        raw = data[pos : pos + length]
        text = raw.decode("utf-8", "backslashreplace")
        if "." in text:
            text = text.replace(".", "\\.")
        labels.append(text)
        pos += length
    if end < 0:
        end = pos
    return (".".join(labels).lower() if labels else "."), end


def _rdata_value(data: bytes, rtype: int, start: int, rdlen: int, limits: Limits) -> str:
    if rtype == TYPE_A:
        if rdlen != 4:
            raise DecodeError("A record with rdlength != 4")
        return str(ipaddress.IPv4Address(data[start : start + 4]))
    if rtype == TYPE_AAAA:
        if rdlen != 16:
            raise DecodeError("AAAA record with rdlength != 16")
        return str(ipaddress.IPv6Address(data[start : start + 16]))
    if rtype == TYPE_PTR:
        name, end = _read_name(data, start, limits)
        if end != start + rdlen:
            raise DecodeError("PTR rdata length mismatch")
        return name
    if rtype == TYPE_SRV:
        if rdlen < 7:
            raise DecodeError("SRV rdata too short")
        prio, weight, port = _SRV_FIXED.unpack_from(data, start)
        name, end = _read_name(data, start + 6, limits)
        if end != start + rdlen:
            raise DecodeError("SRV rdata length mismatch")
        return f"{prio} {weight} {port} {name}"
    return ""


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode one mDNS datagram or raise :class:`DecodeError` (never anything else)."""
    size = len(data)
    if size > limits.max_size:
        raise DecodeError(f"packet of {size} bytes exceeds {limits.max_size}")
    if size < _HEADER.size:
        raise DecodeError("packet shorter than the 12-byte header")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data, 0)
    if qd + an + ns + ar > limits.max_records:
        raise DecodeError("too many records")
    # Each question needs >= 5 bytes, each record >= 11: reject impossible counts early.
    if 5 * qd + 11 * (an + ns + ar) > size - _HEADER.size:
        raise DecodeError("record counts exceed packet size")
    pos = _HEADER.size
    questions: list[Question] = []
    qu_offsets: list[int] = []
    for _ in range(qd):
        name, pos = _read_name(data, pos, limits)
        if pos + 4 > size:
            raise DecodeError("truncated question")
        qtype, qclass = _Q_FIXED.unpack_from(data, pos)
        if qclass & _TOP_BIT:
            qu_offsets.append(pos + 2)
        pos += 4
        questions.append(Question(name, qtype, qclass & _CLASS_MASK, bool(qclass & _TOP_BIT)))
    records: list[Record] = []
    for section, count in (("an", an), ("ns", ns), ("ar", ar)):
        for _ in range(count):
            name, pos = _read_name(data, pos, limits)
            if pos + 10 > size:
                raise DecodeError("truncated record header")
            rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
            pos += 10
            if pos + rdlen > size:
                raise DecodeError("record data runs past end of packet")
            value = _rdata_value(data, rtype, pos, rdlen, limits)
            pos += rdlen
            records.append(
                Record(name, rtype, rclass & _CLASS_MASK, bool(rclass & _TOP_BIT), ttl, value,
                       section)
            )
    if pos != size:
        raise DecodeError("trailing bytes after the last record")
    return Message(ident, flags, tuple(questions), tuple(records), tuple(qu_offsets))
