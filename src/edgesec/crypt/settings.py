"""Settings of the secure-storage package (``CryptSettings``), derived from the config.

The INI file is read once, by :mod:`edgesec.config` (``[system]`` and
``[crypt]`` keys, ``[radius] secretInVault``); :meth:`CryptSettings.from_settings`
folds those typed values into what the vault needs, and
:func:`from_config` does the same for a file, so ``edgesec crypt --config``
and the daemon read one file identically.

Keys (section.key -> field; default):

* ``system.cryptDbPath``        -> ``db_path`` (``crypt.sqlite`` beside the config)
* ``crypt.backend``             -> ``backend`` ("passphrase"; or "pkcs11");
  alias ``system.cryptBackend``
* ``crypt.passphraseFile``      -> ``passphrase_file`` (None); alias
  ``system.cryptPassphraseFile``
* ``crypt.credentialName``      -> ``credential_name`` ("edgesec-crypt-passphrase")
* ``crypt.kdfLogN``             -> ``kdf_log_n`` (17: scrypt N=2^17, r=8, p=1)
* ``crypt.pkcs11Module``        -> ``pkcs11_module`` (/usr/lib/softhsm/libsofthsm2.so)
* ``crypt.pkcs11Token``         -> ``pkcs11_token`` ("edgesec")
* ``crypt.pkcs11PinFile``       -> ``pkcs11_pin_file`` (None)
* ``crypt.pkcs11KeyLabel``      -> ``pkcs11_key_label`` ("edgesec-vault-root")
* ``crypt.radiusSecretInVault`` -> ``radius_secret_in_vault`` (false); alias
  ``radius.secretInVault``
* ``crypt.pskInVault``          -> ``psk_in_vault`` (false); alias
  ``system.storePskInVault``

``[crypt]`` wins over its aliases when both are given.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgesec.config import CryptSection, Settings, load_settings

_LOADER = CryptSection()  # the defaults, as the one loader declares them
DEFAULT_CREDENTIAL = _LOADER.credential_name
DEFAULT_PIN_CREDENTIAL = _LOADER.pkcs11_pin_credential
DEFAULT_PKCS11_MODULE: Path = _LOADER.pkcs11_module or Path()
DEFAULT_KDF_LOG_N = _LOADER.kdf_log_n


@dataclass(frozen=True, slots=True)
class CryptSettings:
    """Everything the vault, its backends and the crypt commands need."""

    db_path: Path | None = None
    backend: str = "passphrase"
    passphrase_file: Path | None = None
    credential_name: str = DEFAULT_CREDENTIAL
    kdf_log_n: int = DEFAULT_KDF_LOG_N
    pkcs11_module: Path = DEFAULT_PKCS11_MODULE
    pkcs11_token: str = _LOADER.pkcs11_token
    pkcs11_pin_file: Path | None = None
    pkcs11_pin_credential: str = DEFAULT_PIN_CREDENTIAL
    pkcs11_key_label: str = _LOADER.pkcs11_key_label
    radius_secret_in_vault: bool = False
    psk_in_vault: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CryptSettings:
        """Fold ``[crypt]`` over its ``[system]``/``[radius]`` aliases.

        A ``[crypt]`` field left unset (``None`` or ``""``) falls back to its
        alias, then to this class's default.
        """
        system, radius = settings.system, settings.radius
        values: dict[str, Any] = {
            "db_path": system.crypt_db_path,
            "backend": system.crypt_backend,
            "passphrase_file": system.crypt_passphrase_file,
            "psk_in_vault": system.store_psk_in_vault,
            "radius_secret_in_vault": radius.secret_in_vault,
        }
        for f in fields(settings.crypt):
            value = getattr(settings.crypt, f.name)
            if value not in (None, ""):
                values[f.name] = value
        return cls(**{k: v for k, v in values.items() if v not in (None, "")})


def from_config(path: Path | str) -> CryptSettings:
    """The crypt settings of a config file, as the daemon reads them.

    Raises :class:`edgesec.config.ConfigError` (a ``ValueError``) naming the
    file and line of a bad value.
    """
    return CryptSettings.from_settings(load_settings(path))
