"""Passphrase backend: root key = scrypt(passphrase, per-vault salt).

Parameters stored in the vault (public): salt, log2(N), r, p.  The derived key
never touches disk.  Default cost N=2^17, r=8, p=1 (128 MiB, ~0.45 s on the
reference 2-core machine); ``kdf_log_n`` lowers it for small devices or tests.
Wrapping is AES-256-GCM with a fresh 96-bit nonce: blob = nonce || ct || tag.

scrypt is the standard library's (``hashlib.scrypt``, OpenSSL's, the same function
cryptography calls) and the root key can tell whether it is the right one through
an HMAC (:meth:`AesGcmRootKey.key_check`), so opening a vault at start does not
load cryptography (~7 MB resident) until a key is first used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from edgesec.crypt.aead import NONCE_BYTES, TAG_BYTES, AesGcmKey
from edgesec.crypt.backends.secrets_source import find_secret
from edgesec.crypt.errors import BackendError, IntegrityError, VaultFormatError
from edgesec.crypt.settings import CryptSettings

ENV_VAR = "EDGESEC_CRYPT_PASSPHRASE"
MIN_LOG_N, MAX_LOG_N = 10, 20  # bounds also protect against a tampered, huge N
MAX_KDF_MEMORY = 1 << 30  # 128 * r * N bytes; the default costs 128 MiB, N=2^20 r=8 1 GiB
_KEY_CHECK_LABEL = b"edgesec vault key check v1\0"


class AesGcmRootKey:
    """A root key held in memory (derived from the passphrase)."""

    def __init__(self, key: bytes) -> None:
        self._key: bytes | None = key
        self._aead: AesGcmKey | None = AesGcmKey(key)

    def _get(self) -> AesGcmKey:
        if self._aead is None:
            raise BackendError("root key is closed")
        return self._aead

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._get().encrypt(nonce, data_key, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise IntegrityError("wrapped key is truncated")
        try:
            return self._get().decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except IntegrityError as exc:
            raise IntegrityError("wrapped key failed authentication") from exc

    def key_check(self, context: bytes) -> bytes:
        """HMAC-SHA256 of ``context`` under this key: equal values, same key."""
        if self._key is None:
            raise BackendError("root key is closed")
        return hmac.digest(self._key, _KEY_CHECK_LABEL + context, "sha256")

    def close(self) -> None:
        self._key = None
        self._aead = None


def derive(passphrase: bytes, salt: bytes, log_n: int, r: int = 8, p: int = 1) -> bytes:
    """scrypt(passphrase, salt) -> 32-byte key (RFC 7914, OpenSSL's through hashlib)."""
    n = 1 << log_n
    need = 128 * r * (n + p + 2)  # OpenSSL's own count: V (N+2 blocks) and B (p blocks)
    if 128 * r * n > MAX_KDF_MEMORY:
        raise BackendError(f"scrypt parameters need {128 * r * n >> 20} MiB, "
                           f"more than the {MAX_KDF_MEMORY >> 20} MiB allowed")
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, dklen=32,
                          maxmem=need + (1 << 16))


class PassphraseBackend:
    """Root key from a passphrase (env, file in config, systemd credential)."""

    name = "passphrase"

    def __init__(self, settings: CryptSettings, secret: bytes | None = None) -> None:
        self._settings = settings
        self._override = secret

    def _passphrase(self) -> bytes:
        s = self._settings
        return find_secret(
            override=self._override,
            file=s.passphrase_file,
            credential=s.credential_name,
            env_var=ENV_VAR,
            what="vault passphrase",
        )

    def create_root(self) -> tuple[AesGcmRootKey, dict[str, Any]]:
        log_n = self._settings.kdf_log_n
        if not MIN_LOG_N <= log_n <= MAX_LOG_N:
            raise BackendError(f"kdf_log_n must be in [{MIN_LOG_N}, {MAX_LOG_N}], got {log_n}")
        salt = os.urandom(16)
        params = {
            "kdf": "scrypt",
            "salt": base64.b64encode(salt).decode(),
            "log_n": log_n,
            "r": 8,
            "p": 1,
        }
        return AesGcmRootKey(derive(self._passphrase(), salt, log_n)), params

    def open_root(self, params: dict[str, Any]) -> AesGcmRootKey:
        try:
            if params.get("kdf") != "scrypt":
                raise ValueError(f"unsupported kdf {params.get('kdf')!r}")
            salt = base64.b64decode(params["salt"], validate=True)
            log_n, r, p = int(params["log_n"]), int(params["r"]), int(params["p"])
            if not (MIN_LOG_N <= log_n <= MAX_LOG_N and 1 <= r <= 32 and 1 <= p <= 4
                    and 128 * r << log_n <= MAX_KDF_MEMORY):
                raise ValueError("KDF parameters out of bounds")
            if len(salt) < 16:
                raise ValueError("KDF salt too short")
        except (KeyError, TypeError, ValueError) as exc:
            raise VaultFormatError(f"bad passphrase-backend parameters: {exc}") from exc
        return AesGcmRootKey(derive(self._passphrase(), salt, log_n, r, p))

    def retire_root(self, params: dict[str, Any]) -> None:
        """Nothing to destroy: the key only ever existed in memory."""
