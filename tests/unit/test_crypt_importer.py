"""Import of a store written in the original edgesec's format (built here from the
documented parameters: PBKDF2-HMAC-SHA256 x1000, AES-256-CBC+PKCS#7, unpadded base64)."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from edgesec.crypt import CryptSettings, Vault
from edgesec.crypt.backends.passphrase import PassphraseBackend
from edgesec.crypt.errors import ImportFormatError, WrongKeyError
from edgesec.crypt.importer import import_original, read_original


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padder.update(data) + padder.finalize()) + enc.finalize()


def write_original_store(path: Path, passphrase: bytes, entries: dict[str, bytes]) -> None:
    """An independent writer of the original's documented layout."""
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE IF NOT EXISTS secrets (id TEXT NOT NULL, value TEXT, "
                 "salt TEXT, iv TEXT, PRIMARY KEY (id))")
    conn.execute("CREATE TABLE IF NOT EXISTS store (key TEXT NOT NULL, value TEXT, id TEXT, "
                 "iv TEXT, PRIMARY KEY (key))")
    master, salt, iv = os.urandom(32), os.urandom(16), os.urandom(16)
    user_key = PBKDF2HMAC(hashes.SHA256(), 32, salt, 1000).derive(passphrase)
    conn.execute("INSERT INTO secrets VALUES ('main', ?, ?, ?)",
                 (_b64(_cbc(user_key, iv, master)), _b64(salt), _b64(iv)))
    for key, value in entries.items():
        if value:
            row_iv = os.urandom(16)
            conn.execute("INSERT INTO store VALUES (?, ?, 'main', ?)",
                         (key, _b64(_cbc(master, row_iv, value)), _b64(row_iv)))
        else:
            conn.execute("INSERT INTO store VALUES (?, NULL, 'main', NULL)", (key,))
    conn.commit()
    conn.close()


ENTRIES = {
    "3f2b-device-uuid": b"device-psk-123",
    "radius": b"shared secret",
    "pem": b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
    "empty": b"",
    "bin": bytes(range(256)),
}


def test_read_original(tmp_path: Path) -> None:
    path = tmp_path / "orig.sqlite"
    write_original_store(path, b"orig-pass", ENTRIES)
    assert dict(read_original(path, b"orig-pass")) == ENTRIES


def test_import_into_vault(tmp_path: Path) -> None:
    path = tmp_path / "orig.sqlite"
    write_original_store(path, b"orig-pass", ENTRIES)
    backend = PassphraseBackend(CryptSettings(kdf_log_n=10), b"new-pass")
    with Vault.create(tmp_path / "vault.db", backend) as vault:
        assert import_original(path, b"orig-pass", vault) == len(ENTRIES)
        for key, value in ENTRIES.items():
            assert vault.get(key) == value


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "orig.sqlite"
    write_original_store(path, b"orig-pass", ENTRIES)
    with pytest.raises(WrongKeyError):
        read_original(path, b"not-it")


def test_bad_stores(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError):
        read_original(tmp_path / "absent", b"x")
    hsm = tmp_path / "hsm.sqlite"
    write_original_store(hsm, b"p", {})
    conn = sqlite3.connect(str(hsm))
    conn.execute("UPDATE secrets SET salt=NULL, iv=NULL")
    conn.commit()
    conn.close()
    with pytest.raises(ImportFormatError, match="HSM"):
        read_original(hsm, b"p")
    broken = tmp_path / "broken.sqlite"
    write_original_store(broken, b"p", {"k": b"value"})
    conn = sqlite3.connect(str(broken))
    conn.execute("UPDATE store SET value='AAAA'")
    conn.commit()
    conn.close()
    with pytest.raises(ImportFormatError, match="'k'"):
        read_original(broken, b"p")
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(str(empty)).close()
    with pytest.raises(ImportFormatError):
        read_original(empty, b"p")


def test_cli_import(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgesec.crypt.cli import app

    path = tmp_path / "orig.sqlite"
    write_original_store(path, b"orig-pass", ENTRIES)
    db = tmp_path / "vault.db"
    runner = CliRunner()
    env = {"CRYPT_KEY": "orig-pass", "EDGESEC_CRYPT_PASSPHRASE": "vault-pass"}
    # a cheap KDF keeps the unit test fast: create first, then import into it
    init = runner.invoke(app, ["init", "--db", str(db), "--kdf-log-n", "10"], env=env)
    assert init.exit_code == 0
    result = runner.invoke(app, ["import", str(path), "--db", str(db)], env=env)
    assert result.exit_code == 0, result.output
    assert f"imported {len(ENTRIES)}" in result.output
    with Vault.open(db, settings=CryptSettings(), secret=b"vault-pass") as vault:
        assert vault.get("radius") == b"shared secret"
    bad = runner.invoke(app, ["import", str(path), "--db", str(db)],
                        env={**env, "CRYPT_KEY": "wrong"})
    assert bad.exit_code == 1 and "wrong passphrase" in bad.output
