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


class _Shared:
    """One logged-in session per (module, token), shared and reference-counted.

    PKCS#11 login state is per application and token: a second C_Login fails
    with CKR_USER_ALREADY_LOGGED_IN and closing any logged-in session logs all
    of them out, so every root key of the process shares one session (under a
    lock, since sessions are not thread-safe).
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.refs = 0
        self.lock = threading.RLock()


_SESSIONS: dict[tuple[str, str], _Shared] = {}
_REGISTRY_LOCK = threading.Lock()


def _release(ident: tuple[str, str]) -> None:
    with _REGISTRY_LOCK:
        shared = _SESSIONS.get(ident)
        if shared is None:
            return
        shared.refs -= 1
        if shared.refs <= 0:
            del _SESSIONS[ident]
            with contextlib.suppress(Exception):  # a dead session is harmless
                shared.session.close()


class Pkcs11RootKey:
    """A handle on the token key plus the shared session it lives in."""

    def __init__(self, ident: tuple[str, str], shared: _Shared, key: Any) -> None:
        self._ident = ident
        self._session = shared.session
        self._key = key
        self._lock = shared.lock
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
            if self._key is None:
                return
            self._key = None
            self._session = None
        _release(self._ident)


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

    def _acquire(self, token_label: str) -> tuple[tuple[str, str], _Shared]:
        """The shared logged-in session for the token (refcount +1)."""
        module = str(self._settings.pkcs11_module)
        ident = (module, token_label)
        with _REGISTRY_LOCK:
            shared = _SESSIONS.get(ident)
            if shared is None:
                shared = _SESSIONS[ident] = _Shared(self._login(module, token_label))
            shared.refs += 1
            return ident, shared

    def _login(self, module: str, token_label: str) -> Any:
        p11 = _pkcs11()
        try:
            lib = p11.lib(module)
        except Exception as exc:
            raise BackendError(f"cannot load PKCS#11 module {module}: {exc}") from exc
        try:
            token = lib.get_token(token_label=token_label)
        except p11.NoSuchToken:
            # a token initialised after the library was loaded needs a re-scan,
            # which would invalidate open sessions: only do it when there are none
            if _SESSIONS:
                raise BackendError(f"no PKCS#11 token labelled {token_label!r}") from None
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
        ident, shared = self._acquire(s.pkcs11_token)
        try:
            with shared.lock:
                key = shared.session.generate_key(
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
            _release(ident)
            raise BackendError(f"cannot generate the root key on the token: {exc!r}") from exc
        params = {"token": s.pkcs11_token, "key_label": label, "mechanism": "CKM_AES_GCM"}
        return Pkcs11RootKey(ident, shared, key), params

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
        ident, shared = self._acquire(token)
        try:
            with shared.lock:
                key = self._find(shared.session, label)
        except BackendError:
            _release(ident)
            raise
        return Pkcs11RootKey(ident, shared, key)

    def retire_root(self, params: dict[str, Any]) -> None:
        """Destroy a superseded root key on the token (after rotation committed)."""
        p11 = _pkcs11()
        ident, shared = self._acquire(str(params["token"]))
        try:
            with shared.lock:
                self._find(shared.session, str(params["key_label"])).destroy()
        except p11.PKCS11Error as exc:
            raise BackendError(f"cannot destroy old root key: {type(exc).__name__}") from exc
        finally:
            _release(ident)
