"""Import a crypt store written by the original edgesec into a vault.

Original layout (src/crypt/crypt_service.c, src/utils/cryptou.c): row
``secrets(id='main')`` holds the 32-byte master key encrypted with AES-256-CBC
+ PKCS#7 under PBKDF2-HMAC-SHA256(passphrase, salt, 1000 iterations, 32 bytes);
``store`` rows hold values AES-256-CBC + PKCS#7 under the master key with a
per-row 16-byte IV; every binary column is standard base64 without padding;
an empty value is stored as NULL value and NULL iv.  HSM-wrapped master keys
(ZYMKEY4, no salt) cannot be imported here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from edgesec.crypt.b64 import std_decode_nopad
from edgesec.crypt.errors import ImportFormatError, WrongKeyError
from edgesec.crypt.vault import Vault

ORIGINAL_ITERATIONS = 1000
MASTER_ID = "main"


def _cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    if len(iv) != 16 or not data or len(data) % 16:
        raise ValueError("bad IV or ciphertext length")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ImportFormatError(f"{what}: not a text column")
    try:
        return std_decode_nopad(text)
    except ValueError as exc:
        raise ImportFormatError(f"{what}: {exc}") from exc


def read_original(path: Path | str, passphrase: bytes) -> list[tuple[str, bytes]]:
    """Decrypt every entry of an original store; WrongKeyError on a wrong passphrase."""
    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(f"no original store at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportFormatError(f"{path}: {exc}") from exc
    try:
        row = conn.execute(
            "SELECT value, salt, iv FROM secrets WHERE id=?", (MASTER_ID,)).fetchone()
        if row is None:
            raise ImportFormatError(f"{path}: no master key row 'main'")
        value, salt, iv = row
        if salt is None or iv is None:
            raise ImportFormatError("master key is HSM-wrapped; only passphrase stores import")
        salt_b, iv_b, enc = _b64(salt, "salt"), _b64(iv, "iv"), _b64(value, "master key")
        user_key = PBKDF2HMAC(hashes.SHA256(), 32, salt_b, ORIGINAL_ITERATIONS).derive(passphrase)
        try:
            master = _cbc_decrypt(user_key, iv_b, enc)
        except ValueError as exc:
            raise WrongKeyError("wrong passphrase for the original store") from exc
        if len(master) != 32:
            raise WrongKeyError("wrong passphrase for the original store")
        out: list[tuple[str, bytes]] = []
        for key, val, row_iv in conn.execute("SELECT key, value, iv FROM store ORDER BY key"):
            if not isinstance(key, str) or not key:
                raise ImportFormatError("store row with an empty key")
            if val is None:
                out.append((key, b""))
                continue
            try:
                out.append((key, _cbc_decrypt(master, _b64(row_iv, key), _b64(val, key))))
            except ValueError as exc:
                raise ImportFormatError(f"entry {key!r} does not decrypt") from exc
        return out
    except sqlite3.Error as exc:
        raise ImportFormatError(f"{path}: {exc}") from exc
    finally:
        conn.close()


def import_original(path: Path | str, passphrase: bytes, vault: Vault) -> int:
    """Re-encrypt an original store into ``vault`` in one transaction; returns count."""
    return vault.put_many(read_original(path, passphrase))
