"""AES-256-GCM keys of the vault, with ``cryptography`` loaded on first use.

The daemon opens its vault at start but may run for weeks without encrypting
anything. Importing cryptography's Rust bindings costs ~7 MB of resident memory
for the life of the process (``bench/footprint.py``), so a key built here holds
only its bytes until it first encrypts or decrypts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from edgesec.crypt.errors import IntegrityError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def new_key() -> bytes:
    """A fresh 256-bit key from the OS (what ``AESGCM.generate_key(256)`` returns)."""
    return os.urandom(KEY_BYTES)


class AesGcmKey:
    """One AES-256-GCM key; ``decrypt`` raises IntegrityError on any mismatch."""

    __slots__ = ("_cipher", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"AES-256-GCM needs a {KEY_BYTES}-byte key, got {len(key)}")
        self._key = bytes(key)
        self._cipher: AESGCM | None = None

    def _get(self) -> AESGCM:
        if self._cipher is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._cipher = AESGCM(self._key)
        return self._cipher

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        """ciphertext || tag."""
        return self._get().encrypt(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        """The plaintext of ``data`` (ciphertext || tag); IntegrityError if it fails."""
        from cryptography.exceptions import InvalidTag

        try:
            return self._get().decrypt(nonce, data, aad)
        except InvalidTag as exc:
            raise IntegrityError("authentication failed") from exc
