"""``edgesec crypt`` — vault administration verbs (init, put, get, list, delete,
rotate, import, info).

Secrets never come from argv: the vault passphrase / PIN come from the backend's
sources (``$EDGESEC_CRYPT_PASSPHRASE``, ``crypt.passphraseFile``, systemd
credentials, ``$EDGESEC_CRYPT_PKCS11_PIN``...) or an interactive prompt; values
come from stdin or a file.  Exit status 1 with a one-line message on any error.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from edgesec.crypt import b64
from edgesec.crypt.backends import load_backend
from edgesec.crypt.errors import BackendError, CryptError
from edgesec.crypt.importer import import_original
from edgesec.crypt.settings import CryptSettings, from_config
from edgesec.crypt.vault import Vault

T = TypeVar("T")

app = typer.Typer(help="Encrypted vault: init, put/get, rotate, import.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="edgesec INI file")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="vault path (overrides cryptDbPath)")]
NEW_PASSPHRASE_ENV = "EDGESEC_CRYPT_NEW_PASSPHRASE"
ORIGINAL_PASSPHRASE_ENV = "CRYPT_KEY"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _settings(config: Path | None, db: Path | None, *, backend: str | None = None,
              kdf_log_n: int | None = None) -> CryptSettings:
    try:
        settings = from_config(config) if config else CryptSettings()
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if db is not None:
        settings = dataclasses.replace(settings, db_path=db)
    if settings.db_path is None:
        raise _fail("no vault path: pass --db or a config with system.cryptDbPath")
    if backend is not None:
        settings = dataclasses.replace(settings, backend=backend)
    if kdf_log_n is not None:
        settings = dataclasses.replace(settings, kdf_log_n=kdf_log_n)
    return settings


def _prompt(what: str, confirm: bool = False) -> bytes | None:
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(f"{what}: ")
    if confirm and getpass.getpass(f"{what} (again): ") != first:
        raise _fail("entries do not match")
    return first.encode() or None


def _with_secret(fn: Callable[[bytes | None], T], what: str, confirm: bool = False) -> T:
    """Call fn(secret=None); on 'no secret' and a TTY, prompt once and retry."""
    try:
        return fn(None)
    except BackendError as exc:
        if not str(exc).startswith("no "):
            raise
        secret = _prompt(what, confirm)
        if secret is None:
            raise
        return fn(secret)


def _open(settings: CryptSettings) -> Vault:
    def attempt(secret: bytes | None) -> Vault:
        assert settings.db_path is not None
        return Vault.open(settings.db_path, settings=settings, secret=secret)

    try:
        return _with_secret(attempt, "vault passphrase/PIN")
    except CryptError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def init(
    config: ConfigOpt = None,
    db: DbOpt = None,
    backend: Annotated[str | None, typer.Option(help="passphrase | pkcs11 | <plugin>")] = None,
    kdf_log_n: Annotated[int | None, typer.Option(help="scrypt cost log2(N)")] = None,
) -> None:
    """Create a new, empty vault."""
    settings = _settings(config, db, backend=backend, kdf_log_n=kdf_log_n)

    def attempt(secret: bytes | None) -> Vault:
        assert settings.db_path is not None
        return Vault.create(settings.db_path, load_backend(settings.backend, settings, secret))

    try:
        started = time.perf_counter()
        vault = _with_secret(attempt, "new vault passphrase/PIN", confirm=True)
        elapsed = time.perf_counter() - started
    except CryptError as exc:
        raise _fail(str(exc)) from exc
    with vault:
        typer.echo(f"created {vault.path} (backend {vault.backend_name}, {elapsed:.2f} s)")


@app.command()
def put(
    key: str,
    config: ConfigOpt = None,
    db: DbOpt = None,
    file: Annotated[Path | None, typer.Option(help="read the value from this file")] = None,
    b64url: Annotated[bool, typer.Option("--b64", help="input is base64url")] = False,
) -> None:
    """Store a value read from stdin (or --file) under KEY."""
    data = file.read_bytes() if file else sys.stdin.buffer.read()
    if b64url:
        decoded = b64.url_decode(data.strip())
        if decoded is None:
            raise _fail("input is not base64url")
        data = decoded
    with _open(_settings(config, db)) as vault:
        try:
            vault.put(key, data)
        except (CryptError, ValueError) as exc:
            raise _fail(str(exc)) from exc
    typer.echo("OK", err=True)


@app.command()
def get(
    key: str,
    config: ConfigOpt = None,
    db: DbOpt = None,
    b64url: Annotated[bool, typer.Option("--b64", help="print base64url")] = False,
) -> None:
    """Write the value of KEY to stdout (raw bytes, or base64url with --b64)."""
    with _open(_settings(config, db)) as vault:
        try:
            value = vault.get(key)
        except CryptError as exc:
            raise _fail(str(exc)) from exc
    if value is None:
        raise _fail(f"no entry {key!r}")
    if b64url:
        typer.echo(b64.url_encode(value))
    else:
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()


@app.command(name="list")
def list_keys(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """List the stored key names."""
    with _open(_settings(config, db)) as vault:
        for name in vault.names():
            typer.echo(name)


@app.command()
def delete(key: str, config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Remove KEY."""
    with _open(_settings(config, db)) as vault:
        if not vault.delete(key):
            raise _fail(f"no entry {key!r}")


@app.command()
def info(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Show the vault's public facts (backend, KDF parameters, entry count)."""
    with _open(_settings(config, db)) as vault:
        for name, value in vault.info().items():
            typer.echo(f"{name}: {value}")


@app.command()
def rotate(
    config: ConfigOpt = None,
    db: DbOpt = None,
    backend: Annotated[str | None, typer.Option(help="move to this backend")] = None,
    new_passphrase_file: Annotated[Path | None, typer.Option(help="new passphrase file")] = None,
    kdf_log_n: Annotated[int | None, typer.Option(help="scrypt cost for the new root")] = None,
    data_key: Annotated[bool, typer.Option(help="also re-encrypt all values")] = False,
) -> None:
    """New root key (new passphrase/salt or token key); re-wrap all data keys atomically.

    The new passphrase comes from --new-passphrase-file, $EDGESEC_CRYPT_NEW_PASSPHRASE
    or a prompt; for pkcs11 the PIN comes from the usual sources.
    """
    settings = _settings(config, db)
    target = dataclasses.replace(
        settings,
        backend=backend or settings.backend,
        kdf_log_n=kdf_log_n if kdf_log_n is not None else settings.kdf_log_n,
        passphrase_file=new_passphrase_file,
    )
    with _open(settings) as vault:
        try:
            target = dataclasses.replace(target, backend=backend or vault.backend_name)
            secret = os.environb.get(NEW_PASSPHRASE_ENV.encode()) or None
            if target.backend == "passphrase" and new_passphrase_file is None and not secret:
                secret = _prompt("new vault passphrase", confirm=True)
                if secret is None:
                    raise _fail(f"no new passphrase: set {NEW_PASSPHRASE_ENV} or a file")
            vault.rotate(load_backend(target.backend, target, secret))
            count = vault.rekey() if data_key else None
        except CryptError as exc:
            raise _fail(str(exc)) from exc
    extra = f", re-encrypted {count} values" if count is not None else ""
    typer.echo(f"rotated root key (backend {target.backend}){extra}")


@app.command(name="import")
def import_cmd(
    original: Path,
    config: ConfigOpt = None,
    db: DbOpt = None,
    original_passphrase_file: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Import an original edgesec crypt store (its passphrase from --original-passphrase-file,
    $CRYPT_KEY as the original used, or a prompt) into the vault (created if missing)."""
    if original_passphrase_file:
        passphrase = original_passphrase_file.read_bytes().rstrip(b"\r\n")
    else:
        passphrase = os.environb.get(ORIGINAL_PASSPHRASE_ENV.encode()) or b""
    if not passphrase:
        passphrase = _prompt("original store passphrase") or b""
    if not passphrase:
        raise _fail("no passphrase for the original store")
    settings = _settings(config, db)
    assert settings.db_path is not None
    db_path = settings.db_path
    try:
        if settings.db_path.exists() and settings.db_path.stat().st_size > 0:
            vault = _open(settings)
        else:
            vault = _with_secret(
                lambda s: Vault.create(db_path, load_backend(settings.backend, settings, s)),
                "new vault passphrase/PIN", confirm=True)
        with vault:
            count = import_original(original, passphrase, vault)
    except CryptError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"imported {count} entries into {settings.db_path}")
