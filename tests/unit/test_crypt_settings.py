"""Unit tests of the crypt settings (read by the one config loader) and the secret sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgesec.config import ConfigError, load_settings
from edgesec.crypt.backends.secrets_source import find_secret
from edgesec.crypt.cli import app as crypt_app
from edgesec.crypt.errors import BackendError
from edgesec.crypt.service import RADIUS_SECRET_KEY, open_vault, radius_secret
from edgesec.crypt.settings import CryptSettings, from_config


def test_from_config_keys(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    for name in ("pin", "lib/p11.so"):
        (tmp_path / name).write_text("x")
        os.chmod(tmp_path / name, 0o600)
    cfg = tmp_path / "c.ini"
    cfg.write_text(
        "[system]\ncryptDbPath = /var/lib/edgesec/crypt.sqlite\n"
        "[CRYPT]\nBackend = pkcs11\npkcs11Module = lib/p11.so\npkcs11Token = \"tok\"\n"
        "pkcs11PinFile = pin # comment\npkcs11KeyLabel = root\nkdfLogN = 15\n"
        "radiusSecretInVault = yes\npskInVault = 1\n")
    s = from_config(cfg)
    assert s.db_path == Path("/var/lib/edgesec/crypt.sqlite")
    assert s.backend == "pkcs11"
    assert s.pkcs11_module == (tmp_path / "lib" / "p11.so")
    assert s.pkcs11_token == "tok" and s.pkcs11_key_label == "root"
    assert s.pkcs11_pin_file == tmp_path / "pin"
    assert s.kdf_log_n == 15 and s.radius_secret_in_vault and s.psk_in_vault


def test_from_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.ini"
    cfg.write_text("[system]\n")
    assert from_config(cfg) == CryptSettings(db_path=tmp_path / "crypt.sqlite")
    cfg.write_text("[crypt]\nkdfLogN = many\n")
    with pytest.raises(ConfigError, match="kdfLogN"):
        from_config(cfg)
    with pytest.raises(ConfigError):
        from_config(tmp_path / "absent.ini")


def test_aliases_and_precedence(tmp_path: Path) -> None:
    """``[radius] secretInVault`` and ``[system]`` aliases count; ``[crypt]`` wins."""
    cfg = tmp_path / "c.ini"
    cfg.write_text("[radius]\nsecretInVault = true\n[system]\nstorePskInVault = on\n"
                   "cryptBackend = pkcs11\n")
    s = from_config(cfg)
    assert s.radius_secret_in_vault and s.psk_in_vault and s.backend == "pkcs11"
    cfg.write_text("[radius]\nsecretInVault = true\n[crypt]\nradiusSecretInVault = false\n"
                   "backend = passphrase\n[system]\ncryptBackend = pkcs11\n")
    s = from_config(cfg)
    assert not s.radius_secret_in_vault and s.backend == "passphrase"


def test_crypt_cli_and_daemon_read_one_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``edgesec crypt -c`` writes is what the daemon's loader finds.

    The file leaves ``cryptDbPath`` at its default and puts the RADIUS secret
    in the vault with ``[radius] secretInVault``: the CLI must pick the same
    vault file, KDF cost and passphrase file as the daemon, and the daemon
    must then take the secret the CLI stored.
    """
    monkeypatch.delenv("EDGESEC_CRYPT_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "pw").write_text("correct horse")
    os.chmod(tmp_path / "pw", 0o600)
    cfg = tmp_path / "config.ini"
    cfg.write_text("[system]\ncryptPassphraseFile = pw\n[crypt]\nkdfLogN = 10\n"
                   "[radius]\nsecret = in-the-file\nsecretInVault = true\n")
    runner = CliRunner()
    for args, stdin in ((["init", "-c", str(cfg)], None),
                        (["put", "-c", str(cfg), RADIUS_SECRET_KEY], "from-the-cli")):
        result = runner.invoke(crypt_app, args, input=stdin)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "crypt.sqlite").exists()  # the daemon's default path

    daemon_settings = load_settings(cfg)
    with open_vault(daemon_settings) as vault:
        assert vault.info()["backend_params"]["log_n"] == 10
        assert radius_secret(daemon_settings, vault) == b"from-the-cli"


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("T_SECRET", "from-env")
    kw = {"credential": "cred", "env_var": "T_SECRET", "what": "x"}
    assert find_secret(override=None, file=None, **kw) == b"from-env"
    assert find_secret(override=b"over", file=None, **kw) == b"over"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cred").write_bytes(b"from-cred\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert find_secret(override=None, file=None, **kw) == b"from-cred"
    f = tmp_path / "file"
    f.write_bytes(b"from-file\r\n")
    assert find_secret(override=None, file=f, **kw) == b"from-file"
    f.write_bytes(b"")
    with pytest.raises(BackendError, match="empty"):
        find_secret(override=None, file=f, **kw)
    with pytest.raises(BackendError):
        find_secret(override=None, file=tmp_path / "absent", **kw)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    monkeypatch.delenv("T_SECRET")
    with pytest.raises(BackendError, match="no x"):
        find_secret(override=None, file=None, **kw)
