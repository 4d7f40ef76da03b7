"""PKCS#11 backend: the root key is a non-extractable AES-256 key on a token.

Data keys are wrapped by AES-256-GCM encryption performed *on the token*
(CKM_AES_GCM, 96-bit random nonce, 128-bit tag, the row's AAD), so the root key
never leaves it.  Stored parameters: token label and the key's label (one key
per root; rotation creates a new key and destroys the old one after commit).
The user PIN comes from ``crypt.pkcs11PinFile``, the systemd credential
``edgesec-crypt-pkcs11-pin`` or ``$EDGESEC_CRYPT_PKCS11_PIN`` — never argv.
Tested against SoftHSM2; any PKCS#11 v2.20+ token with AES-GCM should work.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from typing import Any

from edgesec.crypt.backends.secrets_source import find_secret
from edgesec.crypt.errors import BackendError, IntegrityError, VaultFormatError
from edgesec.crypt.settings import CryptSettings

PIN_ENV = "EDGESEC_CRYPT_PKCS11_PIN"
NONCE = 12


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise BackendError("python-pkcs11 is not installed") from exc
    return pkcs11


class Pkcs11RootKey:
    """A handle on the token key plus the session it lives in."""

    def __init__(self, session: Any, key: Any) -> None:
        self._session = session
        self._key = key
        self._lock = threading.Lock()
        self._p11 = _pkcs11()

    def _param(self, nonce: bytes, aad: bytes) -> Any:
        return self._p11.mechanisms.GCMParams(nonce, aad, 128)

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        with self._lock:
            if self._key is None:
                raise BackendError("root key is closed")
            try:
                ct = self._key.encrypt(
                    data_key,
                    mechanism=self._p11.Mechanism.AES_GCM,
                    mechanism_param=self._param(nonce, aad),
                )
            except self._p11.PKCS11Error as exc:
                raise BackendError(f"token encrypt failed: {type(exc).__name__}") from exc
        return nonce + bytes(ct)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < NONCE + 16:
            raise IntegrityError("wrapped key is truncated")
        with self._lock:
            if self._key is None:
                raise BackendError("root key is closed")
            try:
                return bytes(
                    self._key.decrypt(
                        blob[NONCE:],
                        mechanism=self._p11.Mechanism.AES_GCM,
                        mechanism_param=self._param(blob[:NONCE], aad),
                    )
                )
            except self._p11.PKCS11Error as exc:
                raise IntegrityError("wrapped key failed authentication on the token") from exc

    def close(self) -> None:
        with self._lock:
            self._key = None
            if self._session is not None:
                with contextlib.suppress(Exception):  # a dead session is harmless
                    self._session.close()
                self._session = None


class Pkcs11Backend:
    """Root key on a PKCS#11 token (SoftHSM2, smart cards, HSMs)."""

    name = "pkcs11"

    def __init__(self, settings: CryptSettings, secret: bytes | None = None) -> None:
        self._settings = settings
        self._override = secret

    def _pin(self) -> str:
        s = self._settings
        pin = find_secret(
            override=self._override,
            file=s.pkcs11_pin_file,
            credential=s.pkcs11_pin_credential,
            env_var=PIN_ENV,
            what="PKCS#11 PIN",
        )
        return pin.decode("utf-8", "surrogateescape")

    def _session(self, token_label: str) -> Any:
        p11 = _pkcs11()
        module = str(self._settings.pkcs11_module)
        try:
            lib = p11.lib(module)
        except Exception as exc:
            raise BackendError(f"cannot load PKCS#11 module {module}: {exc}") from exc
        try:
            token = lib.get_token(token_label=token_label)
        except p11.NoSuchToken:
            # tokens initialised after the library was loaded need a re-scan
            lib.reinitialize()
            try:
                token = lib.get_token(token_label=token_label)
            except p11.NoSuchToken as exc:
                raise BackendError(f"no PKCS#11 token labelled {token_label!r}") from exc
        except p11.MultipleTokensReturned as exc:
            raise BackendError(f"several PKCS#11 tokens labelled {token_label!r}") from exc
        try:
            return token.open(user_pin=self._pin(), rw=True)
        except p11.PinIncorrect as exc:
            raise BackendError("PKCS#11 PIN incorrect") from exc
        except p11.PKCS11Error as exc:
            raise BackendError(f"cannot open PKCS#11 session: {type(exc).__name__}") from exc

    def create_root(self) -> tuple[Pkcs11RootKey, dict[str, Any]]:
        p11 = _pkcs11()
        s = self._settings
        label = f"{s.pkcs11_key_label}-{secrets.token_hex(6)}"
        session = self._session(s.pkcs11_token)
        try:
            key = session.generate_key(
                p11.KeyType.AES,
                256,
                label=label,
                store=True,
                capabilities=p11.MechanismFlag.ENCRYPT | p11.MechanismFlag.DECRYPT,
                template={
                    p11.Attribute.SENSITIVE: True,
                    p11.Attribute.EXTRACTABLE: False,
                    p11.Attribute.PRIVATE: True,
                },
            )
        except p11.PKCS11Error as exc:
            session.close()
            raise BackendError(f"cannot generate the root key on the token: {exc!r}") from exc
        params = {"token": s.pkcs11_token, "key_label": label, "mechanism": "CKM_AES_GCM"}
        return Pkcs11RootKey(session, key), params

    def _find(self, session: Any, label: str) -> Any:
        p11 = _pkcs11()
        try:
            return session.get_key(key_type=p11.KeyType.AES, label=label)
        except p11.NoSuchKey as exc:
            raise BackendError(f"root key {label!r} not found on the token") from exc
        except p11.MultipleObjectsReturned as exc:
            raise BackendError(f"several keys labelled {label!r} on the token") from exc

    def open_root(self, params: dict[str, Any]) -> Pkcs11RootKey:
        try:
            token, label = str(params["token"]), str(params["key_label"])
        except (KeyError, TypeError) as exc:
            raise VaultFormatError(f"bad pkcs11-backend parameters: {exc}") from exc
        session = self._session(token)
        try:
            key = self._find(session, label)
        except BackendError:
            session.close()
            raise
        return Pkcs11RootKey(session, key)

    def retire_root(self, params: dict[str, Any]) -> None:
        """Destroy a superseded root key on the token (after rotation committed)."""
        p11 = _pkcs11()
        session = self._session(str(params["token"]))
        try:
            self._find(session, str(params["key_label"])).destroy()
        except p11.PKCS11Error as exc:
            raise BackendError(f"cannot destroy old root key: {type(exc).__name__}") from exc
        finally:
            session.close()
