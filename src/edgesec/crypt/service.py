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
from typing import Any

from edgesec.crypt.commands import CryptCommands
from edgesec.crypt.errors import CryptError
from edgesec.crypt.settings import CryptSettings
from edgesec.crypt.vault import Vault

RADIUS_SECRET_KEY = "edgesec/radius/secret"


def psk_key(device_id: str) -> str:
    """Vault entry of a device's PSK: the device id (as the original's crypto builds)."""
    if not device_id:
        raise ValueError("device id must not be empty")
    return device_id


def crypt_settings_from(settings: Any) -> CryptSettings:
    """Map gateway settings onto CryptSettings (``[system]`` keys, optional ``[crypt]``)."""
    system = getattr(settings, "system", None)
    values: dict[str, Any] = {}
    for src, dst in (("crypt_db_path", "db_path"), ("crypt_backend", "backend"),
                     ("crypt_passphrase_file", "passphrase_file"),
                     ("store_psk_in_vault", "psk_in_vault")):
        value = getattr(system, src, None)
        if value not in (None, ""):
            values[dst] = value
    section = getattr(settings, "crypt", None)
    if section is not None:
        for f in dataclasses.fields(CryptSettings):
            value = getattr(section, f.name, None)
            if value not in (None, ""):
                values[f.name] = value
    radius = getattr(settings, "radius", None)
    if getattr(radius, "secret_in_vault", None) is not None:
        values["radius_secret_in_vault"] = bool(radius.secret_in_vault)  # type: ignore[union-attr]
    for name in ("db_path", "passphrase_file", "pkcs11_module", "pkcs11_pin_file"):
        if name in values and not isinstance(values[name], Path):
            values[name] = Path(values[name]) if values[name] else None
    return CryptSettings(**values)


def open_vault(settings: Any, secret: bytes | None = None) -> Vault:
    """Open or create the configured vault; CryptError with the reason otherwise."""
    system = getattr(settings, "system", None)
    if getattr(system, "exec_crypt", True) is False:
        raise CryptError("crypt service disabled (system.execCrypt = false)")
    return Vault.open_or_create(crypt_settings_from(settings), secret)


def build_crypt_commands(settings: Any) -> CryptCommands:
    """The crypt command family over the configured vault (see module docstring)."""
    return CryptCommands(open_vault(settings))


def radius_secret(settings: Any, vault: Vault | None) -> bytes:
    """The RADIUS shared secret: from the vault when switched on, else the config."""
    cs = crypt_settings_from(settings)
    if cs.radius_secret_in_vault:
        if vault is None:
            raise CryptError("radius secret is configured in the vault, but no vault is open")
        value = vault.get_secret(RADIUS_SECRET_KEY)
        if not value:
            raise CryptError(f"vault has no {RADIUS_SECRET_KEY!r} entry")
        return value
    return str(getattr(getattr(settings, "radius", None), "secret", "")).encode()
