"""The encrypted key/value vault (SQLite), shared by the crypt commands and services.

Layout (the original's tables, extended):

* ``meta(name, value)``: format version, vault id, backend name and its public
  parameters (JSON), the active data-key id, and a *verifier* (a constant
  wrapped by the root key) so a wrong passphrase is told apart from tampering.
  Root keys held in memory (the passphrase backend) also store a ``key_check``
  (an HMAC of the vault id under the root key): it proves the key at open
  without AES, so the daemon loads ``cryptography`` only when a value or data
  key is first used (see :mod:`edgesec.crypt.aead`). A vault without one gets
  it at its next open; readers that do not know the row ignore it.
* ``secrets(id, value, salt, iv, alg)``: data keys wrapped by the root key
  (``value`` = backend blob; ``salt``/``iv`` unused, NULL).
* ``store(key, value, id, iv, alg)``: values, AES-256-GCM under data key
  ``id`` with a fresh 96-bit nonce ``iv``; ``value`` = ciphertext || tag.

Every ciphertext is bound by AAD to its table, row key, data-key id and the
vault id, so rows cannot be swapped, moved or truncated without detection.
SQLite runs in WAL mode with ``synchronous=FULL``; a write returns only after
its transaction committed.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import sqlite3
import struct
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgesec.crypt.aead import NONCE_BYTES, AesGcmKey, new_key
from edgesec.crypt.backends import Backend, KeyCheckingRootKey, RootKey, load_backend
from edgesec.crypt.errors import (
    CryptError,
    IntegrityError,
    VaultFormatError,
    WrongKeyError,
)
from edgesec.crypt.settings import CryptSettings
from edgesec.store import database_files

FORMAT = "edgesec-vault/1"
ALG = "AES-256-GCM/1"
WRAP_ALG = "ROOT-WRAP/1"
_VERIFIER = b"edgesec vault verifier v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    id TEXT NOT NULL PRIMARY KEY, value BLOB, salt BLOB, iv BLOB, alg TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS store (
    key TEXT NOT NULL PRIMARY KEY, value BLOB, id TEXT NOT NULL, iv BLOB, alg TEXT NOT NULL);
"""


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _aad(table: str, *parts: str) -> bytes:
    """Unambiguous AAD: format, table, then length-prefixed parts."""
    out = bytearray(_enc(FORMAT) + b"\0" + _enc(table) + b"\0")
    for part in parts:
        raw = _enc(part)
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def _key_check(root: RootKey, vault_id: str) -> str | None:
    """The root key's check value for this vault (hex), None if it has none."""
    if not isinstance(root, KeyCheckingRootKey):
        return None
    return root.key_check(_aad("key_check", vault_id)).hex()


def _remove_database(path: Path) -> None:
    """Delete a database file and its WAL companions (what exists of them)."""
    for leftover in database_files(path):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise VaultFormatError(f"{path}: {exc}") from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
    except sqlite3.Error as exc:
        conn.close()
        raise VaultFormatError(f"{path}: {exc}") from exc
    return conn


class Vault:
    """An opened vault. Thread-safe; all writes durable before they return."""

    def __init__(self, path: Path, conn: sqlite3.Connection, backend: Backend,
                 root: RootKey, meta: dict[str, str]) -> None:
        self.path = path
        self._conn = conn
        self._backend = backend
        self._root: RootKey | None = root
        self._vault_id = meta["vault_id"]
        self._active = meta["active_key"]
        self._keys: dict[str, AesGcmKey] = {}
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, path: Path | str, backend: Backend) -> Vault:
        """Create a new vault at ``path`` (fails if one already exists)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        was_empty = not cls.exists(path)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        try:
            conn = _connect(path)
        except BaseException:
            if was_empty:
                _remove_database(path)
            raise
        try:
            if conn.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone():
                raise VaultFormatError(f"{path} already holds a vault")
            if conn.execute("SELECT name FROM sqlite_master WHERE name='secrets'").fetchone():
                raise VaultFormatError(f"{path} holds an original edgesec store; import it")
            root, params = backend.create_root()
            vault_id, kid = str(uuid.uuid4()), uuid.uuid4().hex
            data_key = new_key()
            meta = {
                "format": FORMAT,
                "vault_id": vault_id,
                "backend": backend.name,
                "backend_params": json.dumps(params, sort_keys=True),
                "verifier": root.wrap(_VERIFIER, _aad("verifier", vault_id)).hex(),
                "active_key": kid,
            }
            check = _key_check(root, vault_id)
            if check is not None:
                meta["key_check"] = check
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.execute(
                "INSERT INTO secrets (id, value, alg) VALUES (?, ?, ?)",
                (kid, root.wrap(data_key, _aad("secrets", kid, vault_id)), WRAP_ALG),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            if was_empty:  # a failed first creation must not leave a "vault" behind
                _remove_database(path)
            raise
        return cls(path, conn, backend, root, meta)

    @classmethod
    def open(cls, path: Path | str, backend: Backend | None = None,
             settings: CryptSettings | None = None, secret: bytes | None = None) -> Vault:
        """Open an existing vault; its stored backend is used unless one is given."""
        path = Path(path)
        if not path.is_file():
            raise VaultFormatError(f"no vault at {path}")
        conn = _connect(path)
        try:
            meta = cls._read_meta(conn, path)
            if backend is None:
                backend = load_backend(meta["backend"], settings or CryptSettings(), secret)
            elif backend.name != meta["backend"]:
                raise VaultFormatError(
                    f"vault uses backend {meta['backend']!r}, not {backend.name!r}")
            root = backend.open_root(json.loads(meta["backend_params"]))
            checked = cls._check_root(conn, root, meta)
        except BaseException:
            conn.close()
            raise
        vault = cls(path, conn, backend, root, meta)
        if not checked:
            try:
                vault._data_key(vault._active)  # fail now, not on the first GET
            except BaseException:
                vault.close()
                raise
        return vault

    @staticmethod
    def _check_root(conn: sqlite3.Connection, root: RootKey, meta: dict[str, str]) -> bool:
        """WrongKeyError unless ``root`` opens this vault. True when its key check
        proved it (nothing decrypted, cryptography not loaded); False when the
        verifier was decrypted (then the missing key check is stored)."""
        vault_id = meta["vault_id"]
        check = _key_check(root, vault_id)
        stored = meta.get("key_check")
        if check is not None and stored is not None:
            if hmac.compare_digest(check.encode(), _enc(stored)):
                return True
            root.close()
            raise WrongKeyError("wrong passphrase or root key for this vault")
        try:
            root.unwrap(bytes.fromhex(meta["verifier"]), _aad("verifier", vault_id))
        except (IntegrityError, ValueError) as exc:
            root.close()
            raise WrongKeyError("wrong passphrase or root key for this vault") from exc
        if check is not None:
            with contextlib.suppress(sqlite3.Error):  # a read-only copy stays as it is
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('key_check', ?)", (check,))
        return False

    @classmethod
    def open_or_create(cls, settings: CryptSettings, secret: bytes | None = None) -> Vault:
        """Open the vault at ``settings.db_path`` or create it with ``settings.backend``."""
        if settings.db_path is None:
            raise VaultFormatError("no crypt database path configured (system.cryptDbPath)")
        path = Path(settings.db_path)
        if cls.exists(path):
            return cls.open(path, settings=settings, secret=secret)
        return cls.create(path, load_backend(settings.backend, settings, secret))

    @staticmethod
    def exists(path: Path | str) -> bool:
        """Whether ``path`` holds something to open (an empty file is created over)."""
        path = Path(path)
        return path.is_file() and path.stat().st_size > 0

    @staticmethod
    def _read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
        try:
            rows = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                has_secrets = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name='secrets'").fetchone()
                hint = "; it looks like an original edgesec store, import it" if has_secrets else ""
                raise VaultFormatError(f"{path} is not an edgesec vault{hint}") from exc
            raise VaultFormatError(f"{path}: {exc}") from exc
        if rows.get("format") != FORMAT:
            raise VaultFormatError(f"{path}: unsupported vault format {rows.get('format')!r}")
        missing = {"vault_id", "backend", "backend_params", "verifier", "active_key"} - set(rows)
        if missing:
            raise VaultFormatError(f"{path}: meta lacks {', '.join(sorted(missing))}")
        return rows

    def close(self) -> None:
        """Forget keys and close the database."""
        with self._lock:
            self._keys.clear()
            if self._root is not None:
                self._root.close()
                self._root = None
            self._conn.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend_name(self) -> str:
        return self._backend.name

    # ---------------------------------------------------------------- keys
    def _check_open(self) -> None:
        if self._root is None:
            raise CryptError("vault is closed")

    def _root_key(self) -> RootKey:
        if self._root is None:
            raise CryptError("vault is closed")
        return self._root

    def _data_key(self, kid: str) -> AesGcmKey:
        aead = self._keys.get(kid)
        if aead is not None:
            return aead
        row = self._conn.execute("SELECT value, alg FROM secrets WHERE id=?", (kid,)).fetchone()
        if row is None or not isinstance(row[0], bytes):
            raise IntegrityError(f"data key {kid!r} is missing")
        if row[1] != WRAP_ALG:
            raise IntegrityError(f"data key {kid!r} has unknown algorithm {row[1]!r}")
        raw = self._root_key().unwrap(row[0], _aad("secrets", kid, self._vault_id))
        if len(raw) != 32:
            raise IntegrityError(f"data key {kid!r} has a bad length")
        aead = self._keys[kid] = AesGcmKey(raw)
        return aead

    def _seal(self, key: str, value: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        ct = self._data_key(self._active).encrypt(
            nonce, value, _aad("store", key, self._active, self._vault_id))
        return nonce, ct

    # ---------------------------------------------------------------- store API
    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing); durable when it returns."""
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Store several pairs in one transaction; returns the count."""
        pairs = [(key, bytes(value)) for key, value in items]
        for key, _ in pairs:
            if not isinstance(key, str) or not key:
                raise ValueError("vault keys must be non-empty strings")
        with self._lock:
            self._check_open()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                # another process (``edgesec crypt rotate --data-key``) may have replaced
                # the data key: never write under a key that no longer exists
                self._active = self._meta("active_key")
                rows = []
                for key, value in pairs:
                    nonce, ct = self._seal(key, value)
                    rows.append((key, ct, self._active, nonce, ALG))
                self._conn.executemany(
                    "INSERT INTO store (key, value, id, iv, alg) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value, id=excluded.id, "
                    "iv=excluded.iv, alg=excluded.alg", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return len(rows)

    def get(self, key: str) -> bytes | None:
        """The plaintext stored under ``key``; None if absent; IntegrityError if tampered."""
        with self._lock:
            self._check_open()
            row = self._conn.execute(
                "SELECT value, id, iv, alg FROM store WHERE key=?", (key,)).fetchone()
            if row is None:
                return None
            value, kid, nonce, alg = row
            if alg != ALG:
                raise IntegrityError(f"entry {key!r} has unknown algorithm {alg!r}")
            if (not isinstance(value, bytes) or not isinstance(nonce, bytes)
                    or len(nonce) != NONCE_BYTES):
                raise IntegrityError(f"entry {key!r} is malformed")
            aead = self._data_key(kid)
            try:
                return aead.decrypt(nonce, value, _aad("store", key, kid, self._vault_id))
            except IntegrityError as exc:
                raise IntegrityError(f"entry {key!r} failed authentication") from exc

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        with self._lock:
            cur = self._conn.execute("DELETE FROM store WHERE key=?", (key,))
            return cur.rowcount > 0

    def names(self) -> list[str]:
        """All stored key names, sorted (names are not secret, as in the original)."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT key FROM store ORDER BY key")]

    # service-facing names (RADIUS shared secret, per-device PSKs)
    def get_secret(self, name: str) -> bytes | None:
        """Alias of ``get`` for other services."""
        return self.get(name)

    def put_secret(self, name: str, value: bytes) -> None:
        """Alias of ``put`` for other services."""
        self.put(name, value)

    # ---------------------------------------------------------------- rotation
    def rotate(self, new_backend: Backend | None = None) -> None:
        """Re-wrap every data key under a fresh root key, in one transaction.

        ``new_backend`` may differ from the current one (e.g. passphrase ->
        pkcs11) or carry a new passphrase; default: same backend, new salt/key.
        """
        with self._lock:
            old_root, old_backend = self._root_key(), self._backend
            old_params = json.loads(self._meta("backend_params"))
            backend = new_backend or self._backend
            new_root, params = backend.create_root()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                rows = self._conn.execute("SELECT id, value FROM secrets").fetchall()
                for kid, blob in rows:
                    aad = _aad("secrets", kid, self._vault_id)
                    self._conn.execute("UPDATE secrets SET value=? WHERE id=?",
                                       (new_root.wrap(old_root.unwrap(blob, aad), aad), kid))
                for name, value in (
                    ("backend", backend.name),
                    ("backend_params", json.dumps(params, sort_keys=True)),
                    ("verifier", new_root.wrap(_VERIFIER, _aad("verifier", self._vault_id)).hex()),
                ):
                    self._conn.execute("UPDATE meta SET value=? WHERE name=?", (value, name))
                check = _key_check(new_root, self._vault_id)
                if check is None:
                    self._conn.execute("DELETE FROM meta WHERE name='key_check'")
                else:
                    self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('key_check', ?)",
                                       (check,))
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                new_root.close()
                with contextlib.suppress(CryptError):
                    backend.retire_root(params)
                raise
            self._root, self._backend = new_root, backend
            old_root.close()
            # a leftover old token key is harmless: the vault no longer names it
            with contextlib.suppress(CryptError):
                old_backend.retire_root(old_params)

    def rekey(self) -> int:
        """New data key; re-encrypt every value under it; drop old keys. Returns count."""
        with self._lock:
            root = self._root_key()
            kid, raw = uuid.uuid4().hex, new_key()
            old_active = self._active
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                plain = [(k, self.get(k)) for k in self.names()]
                self._conn.execute(
                    "INSERT INTO secrets (id, value, alg) VALUES (?, ?, ?)",
                    (kid, root.wrap(raw, _aad("secrets", kid, self._vault_id)), WRAP_ALG))
                self._keys[kid] = AesGcmKey(raw)
                self._active = kid
                for key, value in plain:
                    nonce, ct = self._seal(key, value or b"")
                    self._conn.execute("UPDATE store SET value=?, id=?, iv=?, alg=? WHERE key=?",
                                       (ct, kid, nonce, ALG, key))
                self._conn.execute("DELETE FROM secrets WHERE id<>?", (kid,))
                self._conn.execute("UPDATE meta SET value=? WHERE name='active_key'", (kid,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._active = old_active
                self._keys.pop(kid, None)
                raise
            self._keys = {kid: self._keys[kid]}
            return len(plain)

    def _meta(self, name: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        if row is None:
            raise VaultFormatError(f"meta {name!r} missing")
        return str(row[0])

    def info(self) -> dict[str, Any]:
        """Public facts about the vault (for ``edgesec crypt info``)."""
        with self._lock:
            return {
                "path": str(self.path),
                "format": FORMAT,
                "backend": self._backend.name,
                "backend_params": json.loads(self._meta("backend_params")),
                "entries": self._conn.execute("SELECT COUNT(*) FROM store").fetchone()[0],
            }
