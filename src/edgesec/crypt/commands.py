"""Supervisor crypt commands with the original's syntax and replies.

``CryptCommands.handle(name, args)`` returns the full reply text (``OK\\n``,
``FAIL\\n`` or ``<base64url>\\n``) and never raises.  Without a vault (no
passphrase, no token) every command answers ``FAIL\\n``.  The transport layer
refuses ``secret_returning`` commands on unauthenticated UDP.

Argument checks follow src/supervisor/cmd_processor.c: tokens are the
space-split words; sizes accept an optional sign and digits and are reduced
modulo 256 like the original's ``(uint8_t)strtoul``; base64url input is decoded
leniently (``edgesec.crypt.b64``), output is unpadded.  Safer than the
original: keys must be non-empty, ENCRYPT/DECRYPT_BLOB require a 32-byte key
and 16-byte IV, and GEN_CERT refuses a CN longer than 64 characters.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from types import ModuleType

from edgesec.crypt import b64
from edgesec.crypt.vault import Vault

log = logging.getLogger(__name__)

OK, FAIL = "OK\n", "FAIL\n"
_NUMBER = re.compile(r"[+-]?[0-9]+")
_ULONG = 1 << 64


def _pki() -> ModuleType:
    """X.509 and key generation, imported on first use: ``cryptography.x509`` costs
    ~6 MB of daemon memory that a gateway never using GEN_CERT et al. need not pay."""
    from edgesec.crypt import pki

    return pki


class CommandError(Exception):
    """Bad arguments or a failed operation; the reply is FAIL."""


def parse_size(token: str) -> int:
    """``is_number`` + ``strtoul`` + cast to uint8, as the original."""
    if not _NUMBER.fullmatch(token):
        raise CommandError(f"not a number: {token!r}")
    value = int(token)
    if abs(value) >= _ULONG:
        raise CommandError("number out of range")
    return (value % _ULONG) % 256


def _arg(args: tuple[str, ...], i: int) -> str:
    if i >= len(args) or not args[i]:
        raise CommandError(f"missing argument {i + 1}")
    return args[i]


def _decode(token: str) -> bytes:
    data = b64.url_decode(token.rstrip("\t\n\v\f\r "))
    if data is None:
        raise CommandError("invalid base64url")
    return data


class CryptCommands:
    """The nine crypt commands over a vault (or a provider returning one/None)."""

    names: frozenset[str] = frozenset({
        "PUT_CRYPT", "GET_CRYPT", "GEN_RANDKEY", "GEN_PRIVKEY", "GEN_PUBKEY",
        "GEN_CERT", "ENCRYPT_BLOB", "DECRYPT_BLOB", "SIGN_BLOB",
    })
    secret_returning: frozenset[str] = frozenset({"GET_CRYPT", "DECRYPT_BLOB"})

    def __init__(self, vault: Vault | Callable[[], Vault | None] | None) -> None:
        self._vault = vault
        self._handlers: dict[str, Callable[[Vault, tuple[str, ...]], str]] = {
            "PUT_CRYPT": self._put, "GET_CRYPT": self._get,
            "GEN_RANDKEY": self._randkey, "GEN_PRIVKEY": self._privkey,
            "GEN_PUBKEY": self._pubkey, "GEN_CERT": self._cert,
            "ENCRYPT_BLOB": self._encrypt, "DECRYPT_BLOB": self._decrypt,
            "SIGN_BLOB": self._sign,
        }

    @property
    def vault(self) -> Vault | None:
        """The vault in use now (None: every command answers FAIL)."""
        return self._current()

    def close(self) -> None:
        """Close the vault (at gateway shutdown)."""
        vault = self._current()
        if vault is not None:
            vault.close()

    def _current(self) -> Vault | None:
        if self._vault is None or isinstance(self._vault, Vault):
            return self._vault
        return self._vault()

    def handle(self, name: str, args: tuple[str, ...]) -> str:
        """Run one command; always returns a reply, never raises."""
        handler = self._handlers.get(name)
        if handler is None:
            return FAIL
        try:
            vault = self._current()
            if vault is None:
                log.debug("%s: no vault available", name)
                return FAIL
            return handler(vault, tuple(args))
        except CommandError as exc:
            log.debug("%s: %s", name, exc)
        except Exception as exc:  # a reply must always go out; log what went wrong
            log.warning("%s failed: %s: %s", name, type(exc).__name__, exc)
        return FAIL

    # --------------------------------------------------------------- helpers
    @staticmethod
    def _load(vault: Vault, key: str) -> bytes:
        value = vault.get(key)
        if not value:  # missing or empty: the original answers FAIL
            raise CommandError(f"no value for {key!r}")
        return value

    # --------------------------------------------------------------- commands
    def _put(self, vault: Vault, args: tuple[str, ...]) -> str:
        key, value = _arg(args, 0), _arg(args, 1)
        vault.put(key, _decode(value))
        return OK

    def _get(self, vault: Vault, args: tuple[str, ...]) -> str:
        key = _arg(args, 0).rstrip("\t\n\v\f\r ")
        if not key:
            raise CommandError("empty key")
        return b64.url_encode(self._load(vault, key)) + "\n"

    def _randkey(self, vault: Vault, args: tuple[str, ...]) -> str:
        key, size = _arg(args, 0), parse_size(_arg(args, 1))
        vault.put(key, os.urandom(size))
        return OK

    def _privkey(self, vault: Vault, args: tuple[str, ...]) -> str:
        key = _arg(args, 0)
        parse_size(_arg(args, 1))  # validated, ignored: always EC P-256 as the original
        vault.put(key, _pki().generate_private_key_pem())
        return OK

    def _pubkey(self, vault: Vault, args: tuple[str, ...]) -> str:
        pub_id, priv_id = _arg(args, 0), _arg(args, 1)
        vault.put(pub_id, _pki().public_key_pem(self._load(vault, priv_id)))
        return OK

    def _cert(self, vault: Vault, args: tuple[str, ...]) -> str:
        cert_id, priv_id, cn = _arg(args, 0), _arg(args, 1), _arg(args, 2)
        if len(cn) > _pki().MAX_CN:
            raise CommandError(f"common name longer than {_pki().MAX_CN} characters")
        vault.put(cert_id, _pki().self_signed_cert_pem(self._load(vault, priv_id), cn))
        return OK

    def _key_iv(self, vault: Vault, args: tuple[str, ...]) -> tuple[bytes, bytes, bytes]:
        key_id, iv_id, blob = _arg(args, 0), _arg(args, 1), _arg(args, 2)
        return self._load(vault, key_id), self._load(vault, iv_id), _decode(blob)

    def _encrypt(self, vault: Vault, args: tuple[str, ...]) -> str:
        key, iv, data = self._key_iv(vault, args)
        return b64.url_encode(_pki().cbc_encrypt(key, iv, data)) + "\n"

    def _decrypt(self, vault: Vault, args: tuple[str, ...]) -> str:
        key, iv, data = self._key_iv(vault, args)
        return b64.url_encode(_pki().cbc_decrypt(key, iv, data)) + "\n"

    def _sign(self, vault: Vault, args: tuple[str, ...]) -> str:
        key_id, blob = _arg(args, 0), _arg(args, 1)
        return b64.url_encode(_pki().sign(self._load(vault, key_id), _decode(blob))) + "\n"
