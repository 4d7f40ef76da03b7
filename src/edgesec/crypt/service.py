"""Glue between the gateway and the vault: settings mapping, the command family,
and the secret names other services use.

* ``crypt_settings_from(settings)`` maps the gateway's ``Settings`` (duck-typed)
  onto :class:`CryptSettings`.
* ``build_crypt_commands(settings)`` opens (or creates) the vault and returns a
  :class:`CryptCommands`; it raises :class:`CryptError` with the reason when no
  vault can be opened (no passphrase, wrong passphrase, token missing) — the
  gateway then answers FAIL to the crypt commands and reports the reason.
* ``RADIUS_SECRET_KEY`` / ``psk_key(device_id)`` name the vault entries used
  when ``crypt.radiusSecretInVault`` / ``system.storePskInVault`` are on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesec.crypt.commands import CryptCommands
from edgesec.crypt.errors import CryptError
from edgesec.crypt.settings import CryptSettings
from edgesec.crypt.vault import Vault

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.registry import SecretStore

RADIUS_SECRET_KEY = "edgesec/radius/secret"


def psk_key(device_id: str) -> str:
    """Vault entry of a device's PSK: the device id (as the original's crypto builds)."""
    if not device_id:
        raise ValueError("device id must not be empty")
    return device_id


def crypt_settings_from(settings: Settings) -> CryptSettings:
    """Map gateway settings onto CryptSettings (``[system]`` keys, optional ``[crypt]``).

    The RADIUS secret is in the vault when ``[crypt] radiusSecretInVault`` says so,
    or, when that key is unset, when ``[radius] secretInVault`` does.
    """
    system = settings.system
    values: dict[str, Any] = {}  # CryptSettings field -> value (types as declared there)
    for src, dst in (("crypt_db_path", "db_path"), ("crypt_backend", "backend"),
                     ("crypt_passphrase_file", "passphrase_file"),
                     ("store_psk_in_vault", "psk_in_vault")):
        value = getattr(system, src)
        if value not in (None, ""):
            values[dst] = value
    section = settings.crypt
    for f in dataclasses.fields(CryptSettings):  # [crypt] has a subset of these fields
        value = getattr(section, f.name, None)
        if value not in (None, ""):
            values[f.name] = value
    if section.radius_secret_in_vault is None:
        values["radius_secret_in_vault"] = settings.radius.secret_in_vault
    for name in ("db_path", "passphrase_file", "pkcs11_module", "pkcs11_pin_file"):
        if name in values and not isinstance(values[name], Path):
            values[name] = Path(values[name]) if values[name] else None
    return CryptSettings(**values)


def open_vault(settings: Settings, secret: bytes | None = None) -> Vault:
    """Open or create the configured vault; CryptError with the reason otherwise."""
    if not settings.system.exec_crypt:
        raise CryptError("crypt service disabled (system.execCrypt = false)")
    return Vault.open_or_create(crypt_settings_from(settings), secret)


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
