"""Glue between the gateway and the vault: settings mapping, the command family,
and the secret names other services use.

* ``crypt_settings_from(settings)`` maps the gateway's ``Settings`` onto
  :class:`CryptSettings`.
* ``build_crypt_commands(settings)`` opens (or first creates) the vault and returns a
  :class:`CryptCommands`; it raises :class:`CryptError` with the reason when no
  vault can be opened (no passphrase, wrong passphrase, token missing) — the
  gateway then answers FAIL to the crypt commands and reports the reason.
* ``RADIUS_SECRET_KEY`` names the vault entry of the RADIUS secret when
  ``crypt.radiusSecretInVault`` is on (a device's PSK is kept under its id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgesec.crypt.commands import CryptCommands
from edgesec.crypt.errors import CryptError, VaultFormatError
from edgesec.crypt.firstboot import create_in_child
from edgesec.crypt.settings import CryptSettings
from edgesec.crypt.vault import Vault

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.registry import SecretStore

RADIUS_SECRET_KEY = "edgesec/radius/secret"


def crypt_settings_from(settings: Settings) -> CryptSettings:
    """The vault's settings from the gateway's (see :meth:`CryptSettings.from_settings`)."""
    return CryptSettings.from_settings(settings)


def open_vault(settings: Settings, secret: bytes | None = None) -> Vault:
    """Open the configured vault, creating it first (in a child process, see
    :mod:`edgesec.crypt.firstboot`) when there is none; CryptError with the reason."""
    if not settings.system.exec_crypt:
        raise CryptError("crypt service disabled (system.execCrypt = false)")
    cs = crypt_settings_from(settings)
    if cs.db_path is None:
        raise VaultFormatError("no crypt database path configured (system.cryptDbPath)")
    if not Vault.exists(cs.db_path):
        create_in_child(cs, secret)
    return Vault.open(cs.db_path, settings=cs, secret=secret)


def build_crypt_commands(settings: Settings) -> CryptCommands:
    """The crypt command family over the configured vault (see module docstring)."""
    return CryptCommands(open_vault(settings))


def radius_secret(settings: Settings, vault: SecretStore | None) -> bytes:
    """The RADIUS shared secret: from the vault when switched on, else the config."""
    cs = crypt_settings_from(settings)
    if cs.radius_secret_in_vault:
        if vault is None:
            raise CryptError("radius secret is configured in the vault, but no vault is open")
        value = vault.get_secret(RADIUS_SECRET_KEY)
        if not value:
            raise CryptError(f"vault has no {RADIUS_SECRET_KEY!r} entry")
        return value
    return settings.radius.secret.encode()
