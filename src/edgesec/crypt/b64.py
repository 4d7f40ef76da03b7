"""Base64 codecs with the original edgesec's wire semantics.

The original's decoder (hostapd's ``base64_gen_decode``) is lenient: characters
outside the alphabet are skipped, padding is optional, the first block that
holds ``=`` ends the input, and input with no alphabet character fails.  Python's
``base64`` module is strict, so the compatible decoder is written here (pure,
fuzzed in tests).  Encoders never pad, as the original's replies.
"""

from __future__ import annotations

import base64
import binascii

_URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _table(alphabet: str) -> dict[int, int]:
    table = {ord(c): i for i, c in enumerate(alphabet)}
    table[ord("=")] = 0
    return table


_URL_TABLE = _table(_URL)
_STD_TABLE = _table(_STD)


def _lenient_decode(text: str | bytes, table: dict[int, int]) -> bytes | None:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    symbols = [b for b in data if b in table]
    if not symbols:
        return None
    symbols.extend([ord("=")] * ((4 - len(symbols) % 4) % 4))
    out = bytearray()
    for i in range(0, len(symbols), 4):
        block = symbols[i : i + 4]
        v = [table[b] for b in block]
        out += bytes((
            (v[0] << 2 | v[1] >> 4) & 0xFF,
            (v[1] << 4 | v[2] >> 2) & 0xFF,
            (v[2] << 6 | v[3]) & 0xFF,
        ))
        pad = block.count(ord("="))
        if pad:
            if pad > 2:
                return None
            del out[len(out) - pad :]
            break
    return bytes(out)


def url_decode(text: str | bytes) -> bytes | None:
    """Decode base64url like the original; ``None`` where the original fails."""
    return _lenient_decode(text, _URL_TABLE)


def url_encode(data: bytes) -> str:
    """Base64url without padding (the original's reply format)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def std_decode_nopad(text: str) -> bytes:
    """Strictly decode standard base64 with or without padding; ValueError if bad."""
    stripped = text.strip().rstrip("=")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc
