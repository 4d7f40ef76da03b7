"""RADIUS wire format for edgesec's MAC-authentication server (pure functions).

Owns: decoding Access-Requests (RFC 2865 §3/§5), Message-Authenticator checks
(RFC 3579 §3.2), User-Password decryption (RFC 2865 §5.2), Tunnel-Password salt
encryption (RFC 2868 §3.5) and encoding Access-Accept/Reject replies that always
carry a Message-Authenticator (first attribute, as the BlastRADIUS guidance
recommends) and a Response Authenticator.

Why not pyrad's ``Packet`` here: it builds an ``OrderedDict`` per packet,
re-encodes the attributes to compute Message-Authenticator and needs a
dictionary; this module works on the raw bytes with pre-keyed MD5 states and
was measured 6-7x faster per request (the codec line of ``bench/radius.py``).
pyrad is still used as the independent implementation in the tests and the
benchmark client.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from typing import NamedTuple

from edgesec.registry import RegistryError, normalise_mac

ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3

USER_NAME = 1
USER_PASSWORD = 2
CALLING_STATION_ID = 31
PROXY_STATE = 33
TUNNEL_TYPE = 64
TUNNEL_MEDIUM_TYPE = 65
TUNNEL_PASSWORD = 69
MESSAGE_AUTHENTICATOR = 80
TUNNEL_PRIVATE_GROUP_ID = 81

TUNNEL_TYPE_VLAN = 13
TUNNEL_MEDIUM_IEEE_802 = 6

MAX_PACKET = 4096  # RFC 2865 §3: maximum length
_ZERO16 = bytes(16)
_HEADER = struct.Struct("!BBH")


class RadiusError(ValueError):
    """A packet that is not a well-formed RADIUS packet."""


class Request(NamedTuple):
    """A decoded request: header fields, attributes in order, raw bytes.

    A named tuple rather than a frozen dataclass: it is built once per packet
    and a tuple is several times cheaper to construct."""

    code: int
    ident: int
    authenticator: bytes
    attributes: tuple[tuple[int, bytes], ...]
    raw: bytes
    ma_offset: int  # offset of the Message-Authenticator value, -1 if absent

    def get(self, attr_type: int) -> bytes | None:
        """First value of an attribute, or None."""
        for t, v in self.attributes:
            if t == attr_type:
                return v
        return None

    def all(self, attr_type: int) -> list[bytes]:
        return [v for t, v in self.attributes if t == attr_type]


def decode(data: bytes) -> Request:
    """Decode one RADIUS packet; raise :class:`RadiusError` if malformed.

    Octets after the Length field are padding and ignored (RFC 2865 §3).
    A packet with more than one Message-Authenticator, or one that is not
    16 octets long, is malformed (RFC 3579 §3.2).
    """
    n = len(data)
    if n < 20:
        raise RadiusError(f"packet too short ({n} octets, need 20)")
    code, ident, length = _HEADER.unpack_from(data)
    if length < 20 or length > MAX_PACKET:
        raise RadiusError(f"invalid Length field {length}")
    if length > n:
        raise RadiusError(f"Length field {length} exceeds the {n} octets received")
    raw = bytes(data[:length])
    attrs: list[tuple[int, bytes]] = []
    ma_offset = -1
    pos = 20
    while pos < length:
        if pos + 2 > length:
            raise RadiusError(f"truncated attribute header at offset {pos}")
        atype = raw[pos]
        alen = raw[pos + 1]
        if alen < 2 or pos + alen > length:
            raise RadiusError(f"attribute {atype} at offset {pos} has invalid length {alen}")
        if atype == MESSAGE_AUTHENTICATOR:
            if alen != 18:
                raise RadiusError(f"Message-Authenticator of length {alen}, must be 18")
            if ma_offset >= 0:
                raise RadiusError("more than one Message-Authenticator")
            ma_offset = pos + 2
        attrs.append((atype, raw[pos + 2 : pos + alen]))
        pos += alen
    return Request(code, ident, raw[4:20], tuple(attrs), raw, ma_offset)


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class SecretKey:
    """MD5 states pre-keyed with one shared secret.

    Every request costs two HMAC-MD5s and up to a handful of MD5(secret + x)
    blocks.  ``hmac.digest`` sets up an OpenSSL HMAC context per call; copying
    states that already absorbed the padded key is about 3x cheaper
    (RFC 2104 §2: the key blocks are the same for every message).
    """

    __slots__ = ("_inner", "_outer", "_plain")

    def __init__(self, secret: bytes) -> None:
        key = hashlib.md5(secret).digest() if len(secret) > 64 else secret
        key = key.ljust(64, b"\x00")
        self._inner = hashlib.md5(key.translate(_IPAD))
        self._outer = hashlib.md5(key.translate(_OPAD))
        self._plain = hashlib.md5(secret)

    def hmac(self, message: bytes) -> bytes:
        """HMAC-MD5(secret, message)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def md5(self, suffix: bytes) -> bytes:
        """MD5(secret + suffix): the keystream block of RFC 2865 §5.2 / RFC 2868 §3.5."""
        h = self._plain.copy()
        h.update(suffix)
        return h.digest()


@functools.lru_cache(maxsize=64)
def secret_key(secret: bytes) -> SecretKey:
    """The (memoised) :class:`SecretKey` of a shared secret."""
    return SecretKey(secret)


def verify_request_ma(req: Request, secret: bytes) -> bool:
    """True if the request's Message-Authenticator is present and valid."""
    off = req.ma_offset
    if off < 0:
        return False
    raw = req.raw
    expected = secret_key(secret).hmac(raw[:off] + _ZERO16 + raw[off + 16 :])
    return hmac.compare_digest(expected, raw[off : off + 16])


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


def decrypt_user_password(value: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2 User-Password decryption (trailing NUL padding removed)."""
    if not value or len(value) % 16 or len(value) > 128:
        raise RadiusError(f"User-Password of invalid length {len(value)}")
    key = secret_key(secret)
    out = bytearray()
    last = authenticator
    for i in range(0, len(value), 16):
        block = value[i : i + 16]
        out += _xor16(block, key.md5(last))
        last = block
    return bytes(out).rstrip(b"\x00")


def encrypt_user_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2 User-Password encryption (used by tests and the bench client)."""
    if len(password) > 128:
        raise ValueError("User-Password longer than 128 octets")
    padded = password + bytes(-len(password) % 16 or (16 if not password else 0))
    out = bytearray()
    last = authenticator
    for i in range(0, len(padded), 16):
        block = _xor16(padded[i : i + 16], hashlib.md5(secret + last).digest())
        out += block
        last = block
    return bytes(out)


def salt_encrypt(plain: bytes, secret: bytes, request_authenticator: bytes,
                 salt: bytes | None = None) -> bytes:
    """RFC 2868 §3.5 encryption of a Tunnel-Password value (without the tag octet).

    Returns salt (2 octets, high bit set) followed by the encrypted
    ``[len][plain][zero padding]`` string.  ``salt`` is random unless given
    (tests use fixed salts to pin vectors).
    """
    if len(plain) > 239:
        raise ValueError("Tunnel-Password longer than 239 octets does not fit")
    if salt is None:
        salt = _random_salt()
    if len(salt) != 2:
        raise ValueError("salt must be 2 octets")
    salt = bytes((salt[0] | 0x80, salt[1]))
    data = bytes((len(plain),)) + plain
    data += bytes(-len(data) % 16)
    key = secret_key(secret)
    out = bytearray(salt)
    last = request_authenticator + salt
    for i in range(0, len(data), 16):
        block = _xor16(data[i : i + 16], key.md5(last))
        out += block
        last = block
    return bytes(out)


_salts = bytearray()


def _random_salt() -> bytes:
    """Two random octets from a pool refilled 4 KiB at a time (one getrandom per 2,048 salts)."""
    global _salts
    if not _salts:
        _salts = bytearray(os.urandom(4096))
    salt = bytes(_salts[-2:])
    del _salts[-2:]
    return salt


def salt_decrypt(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """Inverse of :func:`salt_encrypt` (value = salt + ciphertext, no tag)."""
    if len(value) < 18 or (len(value) - 2) % 16:
        raise RadiusError(f"salt-encrypted value of invalid length {len(value)}")
    salt, cipher = value[:2], value[2:]
    out = bytearray()
    last = request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i : i + 16]
        out += _xor16(block, hashlib.md5(secret + last).digest())
        last = block
    n = out[0]
    if n > len(out) - 1:
        raise RadiusError("salt-encrypted length octet exceeds the data")
    return bytes(out[1 : 1 + n])


def encode_attribute(atype: int, value: bytes) -> bytes:
    if len(value) > 253:
        raise ValueError(f"attribute {atype} value of {len(value)} octets does not fit")
    return bytes((atype, len(value) + 2)) + value


@functools.lru_cache(maxsize=4096)
def vlan_attributes(vlan: int) -> bytes:
    """Tunnel-Type=VLAN, Tunnel-Medium-Type=IEEE-802, Tunnel-Private-Group-ID=vlan (RFC 3580).

    Memoised: the same few VLANs are encoded for every Accept."""
    return (
        encode_attribute(TUNNEL_TYPE, struct.pack("!I", TUNNEL_TYPE_VLAN))
        + encode_attribute(TUNNEL_MEDIUM_TYPE, struct.pack("!I", TUNNEL_MEDIUM_IEEE_802))
        + encode_attribute(TUNNEL_PRIVATE_GROUP_ID, str(vlan).encode())
    )


def tunnel_password_attribute(psk: bytes, secret: bytes, request_authenticator: bytes,
                              salt: bytes | None = None) -> bytes:
    """Tunnel-Password with tag 0 and a salt-encrypted passphrase."""
    return encode_attribute(
        TUNNEL_PASSWORD, b"\x00" + salt_encrypt(psk, secret, request_authenticator, salt)
    )


def encode_reply(code: int, req: Request, secret: bytes, attributes: bytes = b"") -> bytes:
    """Encode a reply to ``req``: Message-Authenticator first, then the request's
    Proxy-State attributes in order (RFC 2865 §5.33), then ``attributes``.

    The Response Authenticator is MD5(Code|Id|Length|RequestAuth|Attributes|Secret).
    """
    proxy = b"".join([encode_attribute(PROXY_STATE, v) for v in req.all(PROXY_STATE)])
    body = proxy + attributes if proxy else attributes
    length = 20 + 18 + len(body)
    if length > MAX_PACKET:
        raise ValueError("reply too long")
    header = _HEADER.pack(code, req.ident, length)
    ma = secret_key(secret).hmac(header + req.authenticator + b"\x50\x12" + _ZERO16 + body)
    attrs = b"\x50\x12" + ma + body
    response_auth = hashlib.md5(header + req.authenticator + attrs + secret).digest()
    return header + response_auth + attrs


def encode_request(ident: int, authenticator: bytes, secret: bytes,
                   attributes: list[tuple[int, bytes]], with_ma: bool = True) -> bytes:
    """Encode an Access-Request (Message-Authenticator first when ``with_ma``).

    Used by tests and the benchmark client; the server never sends requests.
    """
    body = b"".join(encode_attribute(t, v) for t, v in attributes)
    if with_ma:
        length = 20 + 18 + len(body)
        header = _HEADER.pack(ACCESS_REQUEST, ident, length)
        zeroed = header + authenticator + b"\x50\x12" + _ZERO16 + body
        return header + authenticator + b"\x50\x12" + hmac.digest(secret, zeroed, "md5") + body
    return _HEADER.pack(ACCESS_REQUEST, ident, 20 + len(body)) + authenticator + body


_mac_cache: dict[bytes | str, str | None] = {}


def parse_mac(text: bytes | str) -> str | None:
    """Normalise a MAC written as hostapd/RADIUS clients do (``001122334455``,
    ``00-11-22-33-44-55``, ``00:11:...``, ``0011.2233.4455``) to
    ``00:11:22:33:44:55``; None if it is not a MAC.  Results are memoised
    (hostapd sends the same few strings over and over)."""
    hit = _mac_cache.get(text, "")
    if hit != "":
        return hit
    out = _parse_mac(text)
    if len(_mac_cache) >= 8192:
        _mac_cache.clear()
    _mac_cache[text] = out
    return out


def _parse_mac(text: bytes | str) -> str | None:
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    try:
        return normalise_mac(text.strip())
    except RegistryError:
        return None
