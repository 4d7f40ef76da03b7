"""Secure storage: the encrypted vault, its root-key backends and the crypt commands."""

from edgesec.crypt.commands import CryptCommands
from edgesec.crypt.errors import (
    BackendError,
    CryptError,
    ImportFormatError,
    IntegrityError,
    VaultFormatError,
    WrongKeyError,
)
from edgesec.crypt.settings import CryptSettings
from edgesec.crypt.vault import Vault

__all__ = [
    "BackendError",
    "CryptCommands",
    "CryptError",
    "CryptSettings",
    "ImportFormatError",
    "IntegrityError",
    "Vault",
    "VaultFormatError",
    "WrongKeyError",
]
