"""Settings of the secure-storage package (``CryptSettings``) and their INI keys.

The gateway's config loader maps its INI file onto this dataclass; the
``edgesec crypt`` CLI can also read the few keys itself (``from_ini``) so the
package does not depend on the timing of the main config module.

INI keys (section.key -> field, default):

* ``system.cryptDbPath``        -> ``db_path`` (None: crypt disabled)
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
* ``crypt.radiusSecretInVault`` -> ``radius_secret_in_vault`` (false)
* ``crypt.pskInVault``          -> ``psk_in_vault`` (false); alias
  ``system.storePskInVault``

``[crypt]`` wins over the ``[system]`` aliases when both are given.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CREDENTIAL = "edgesec-crypt-passphrase"
DEFAULT_PIN_CREDENTIAL = "edgesec-crypt-pkcs11-pin"
DEFAULT_PKCS11_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
DEFAULT_KDF_LOG_N = 17


@dataclass(frozen=True, slots=True)
class CryptSettings:
    """Everything the vault, its backends and the crypt commands need."""

    db_path: Path | None = None
    backend: str = "passphrase"
    passphrase_file: Path | None = None
    credential_name: str = DEFAULT_CREDENTIAL
    kdf_log_n: int = DEFAULT_KDF_LOG_N
    pkcs11_module: Path = DEFAULT_PKCS11_MODULE
    pkcs11_token: str = "edgesec"
    pkcs11_pin_file: Path | None = None
    pkcs11_pin_credential: str = DEFAULT_PIN_CREDENTIAL
    pkcs11_key_label: str = "edgesec-vault-root"
    radius_secret_in_vault: bool = False
    psk_in_vault: bool = False


def _bool(text: str, default: bool) -> bool:
    if text and text[0] in "1tTyY":
        return True
    if text and text[0] in "0fFnN":
        return False
    return default


def _path(base: Path, text: str) -> Path | None:
    if not text:
        return None
    p = Path(text)
    return p if p.is_absolute() else (base / p).resolve()


def from_ini(path: Path | str) -> CryptSettings:
    """Read only the crypt keys from an edgesec INI file (minIni-like rules)."""
    path = Path(path)
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=("#", ";"), strict=False
    )
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    base = path.parent

    def get(section: str, key: str) -> str:
        # configparser lower-cases option names; sections are matched case-insensitively
        for name in parser.sections():
            if name.lower() == section and parser.has_option(name, key):
                return parser.get(name, key).strip().strip('"').strip("'")
        return ""

    d = CryptSettings()
    log_n = get("crypt", "kdflogn")
    try:
        kdf_log_n = int(log_n, 0) if log_n else d.kdf_log_n
    except ValueError as exc:
        raise ValueError(f"crypt.kdfLogN: not an integer: {log_n!r}") from exc
    return CryptSettings(
        db_path=_path(base, get("system", "cryptdbpath")),
        backend=get("crypt", "backend") or get("system", "cryptbackend") or d.backend,
        passphrase_file=_path(
            base, get("crypt", "passphrasefile") or get("system", "cryptpassphrasefile")),
        credential_name=get("crypt", "credentialname") or d.credential_name,
        kdf_log_n=kdf_log_n,
        pkcs11_module=_path(base, get("crypt", "pkcs11module")) or d.pkcs11_module,
        pkcs11_token=get("crypt", "pkcs11token") or d.pkcs11_token,
        pkcs11_pin_file=_path(base, get("crypt", "pkcs11pinfile")),
        pkcs11_pin_credential=get("crypt", "pkcs11pincredential") or d.pkcs11_pin_credential,
        pkcs11_key_label=get("crypt", "pkcs11keylabel") or d.pkcs11_key_label,
        radius_secret_in_vault=_bool(get("crypt", "radiussecretinvault"), False),
        psk_in_vault=_bool(
            get("crypt", "pskinvault") or get("system", "storepskinvault"), False),
    )
