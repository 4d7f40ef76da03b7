"""Exception types of the secure-storage package (edgesec.crypt)."""

from __future__ import annotations


class CryptError(Exception):
    """Base class of every error raised by edgesec.crypt."""


class VaultFormatError(CryptError):
    """The vault file is missing, not a vault, or of an unsupported version."""


class WrongKeyError(CryptError):
    """The root key (passphrase, token key) does not open this vault."""


class IntegrityError(CryptError):
    """A stored ciphertext failed authentication (tampered, swapped or truncated)."""


class BackendError(CryptError):
    """A root-key backend is unavailable or misconfigured (no passphrase, no token...)."""


class ImportFormatError(CryptError):
    """An original-format store could not be read."""
