"""Unit tests of the ``edgesec crypt`` CLI verbs (typer CliRunner, real SQLite vaults)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgesec.crypt import CryptSettings, Vault
from edgesec.crypt.cli import app

ENV = {"EDGESEC_CRYPT_PASSPHRASE": "pw-1"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def db(tmp_path: Path, runner: CliRunner) -> Path:
    path = tmp_path / "vault.db"
    result = runner.invoke(app, ["init", "--db", str(path), "--kdf-log-n", "10"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "created" in result.output
    return path


def test_init_twice_fails(runner: CliRunner, db: Path) -> None:
    result = runner.invoke(app, ["init", "--db", str(db), "--kdf-log-n", "10"], env=ENV)
    assert result.exit_code == 1 and "already" in result.output


def test_put_get_list_delete(runner: CliRunner, db: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["put", "k", "--db", str(db)], input=b"\x00raw\xffbytes",
                         env=ENV).exit_code == 0
    got = runner.invoke(app, ["get", "k", "--db", str(db)], env=ENV)
    assert got.exit_code == 0 and got.stdout_bytes == b"\x00raw\xffbytes"
    got = runner.invoke(app, ["get", "k", "--db", str(db), "--b64"], env=ENV)
    assert got.stdout.strip() == "AHJhd_9ieXRlcw"
    assert runner.invoke(app, ["put", "b", "--db", str(db), "--b64"], input="aGVsbG8\n",
                         env=ENV).exit_code == 0
    src = tmp_path / "value.bin"
    src.write_bytes(b"from file")
    assert runner.invoke(app, ["put", "f", "--db", str(db), "--file", str(src)],
                         env=ENV).exit_code == 0
    listed = runner.invoke(app, ["list", "--db", str(db)], env=ENV)
    assert listed.stdout.split() == ["b", "f", "k"]
    with Vault.open(db, settings=CryptSettings(), secret=b"pw-1") as v:
        assert (v.get("b"), v.get("f")) == (b"hello", b"from file")
    assert runner.invoke(app, ["delete", "k", "--db", str(db)], env=ENV).exit_code == 0
    missing = runner.invoke(app, ["get", "k", "--db", str(db)], env=ENV)
    assert missing.exit_code == 1 and "no entry" in missing.output
    assert runner.invoke(app, ["delete", "k", "--db", str(db)], env=ENV).exit_code == 1
    info = runner.invoke(app, ["info", "--db", str(db)], env=ENV)
    assert "backend: passphrase" in info.stdout and "entries: 2" in info.stdout


def test_wrong_or_missing_passphrase(runner: CliRunner, db: Path) -> None:
    bad = runner.invoke(app, ["list", "--db", str(db)], env={"EDGESEC_CRYPT_PASSPHRASE": "no"})
    assert bad.exit_code == 1 and "wrong passphrase" in bad.output
    none = runner.invoke(app, ["list", "--db", str(db)], env={"EDGESEC_CRYPT_PASSPHRASE": ""})
    assert none.exit_code == 1 and "no vault passphrase" in none.output


def test_no_path(runner: CliRunner) -> None:
    result = runner.invoke(app, ["list"], env=ENV)
    assert result.exit_code == 1 and "no vault path" in result.output


def test_rotate(runner: CliRunner, db: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["put", "k", "--db", str(db)], input=b"keep me", env=ENV)
    result = runner.invoke(app, ["rotate", "--db", str(db), "--kdf-log-n", "10"],
                           env={**ENV, "EDGESEC_CRYPT_NEW_PASSPHRASE": "pw-2"})
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["list", "--db", str(db)], env=ENV).exit_code == 1
    env2 = {"EDGESEC_CRYPT_PASSPHRASE": "pw-2"}
    assert runner.invoke(app, ["get", "k", "--db", str(db)], env=env2).stdout_bytes == b"keep me"
    newfile = tmp_path / "pw3"
    newfile.write_text("pw-3\n")
    newfile.chmod(0o600)
    result = runner.invoke(app, ["rotate", "--db", str(db), "--kdf-log-n", "10", "--data-key",
                                 "--new-passphrase-file", str(newfile)], env=env2)
    assert result.exit_code == 0 and "re-encrypted 1" in result.output
    env3 = {"EDGESEC_CRYPT_PASSPHRASE": "pw-3"}
    assert runner.invoke(app, ["get", "k", "--db", str(db)], env=env3).stdout_bytes == b"keep me"
    nonew = runner.invoke(app, ["rotate", "--db", str(db)], env=env3)
    assert nonew.exit_code == 1 and "no new passphrase" in nonew.output


def test_config_file(runner: CliRunner, tmp_path: Path) -> None:
    pwfile = tmp_path / "pass"
    pwfile.write_bytes(b"file-pass\n")
    pwfile.chmod(0o600)
    cfg = tmp_path / "config.ini"
    cfg.write_text("[system]\ncryptDbPath = \"vault/crypt.sqlite\"  ; comment\n"
                   "[crypt]\nbackend = passphrase\npassphraseFile = pass\nkdfLogN = 10\n")
    assert runner.invoke(app, ["init", "-c", str(cfg)], env={}).exit_code == 0
    assert (tmp_path / "vault" / "crypt.sqlite").is_file()
    runner.invoke(app, ["put", "x", "-c", str(cfg)], input=b"1", env={})
    with Vault.open(tmp_path / "vault" / "crypt.sqlite", settings=CryptSettings(),
                    secret=b"file-pass") as v:
        assert v.get("x") == b"1"


def test_no_secret_options_on_argv() -> None:
    # secrets are never accepted on the command line
    for verb in ("init", "put", "get", "rotate", "import"):
        text = CliRunner().invoke(app, [verb, "--help"]).output.lower()
        assert "--passphrase " not in text and "--pin" not in text
