"""Unit tests of edgesec.crypt.service (gateway glue, secret names for other services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import write_config  # tests/ is on sys.path (tests/conftest.py)
from edgesec.config import Settings, load_settings
from edgesec.crypt import CryptCommands, CryptSettings, Vault
from edgesec.crypt.errors import BackendError, CryptError
from edgesec.crypt.service import (
    RADIUS_SECRET_KEY,
    build_crypt_commands,
    crypt_settings_from,
    open_vault,
    radius_secret,
)


def settings(tmp_path: Path, **sections: dict[str, object]) -> Settings:
    """Real settings from a config file in ``tmp_path`` (vault ``c.db``, cheap KDF)."""
    merged: dict[str, dict[str, object]] = {
        "system": {"cryptDbPath": "c.db"}, "crypt": {"kdfLogN": 10},
        "radius": {"secret": "from-config"}}
    for name, keys in sections.items():
        merged.setdefault(name, {}).update(keys)
    return load_settings(write_config(tmp_path, merged))


def test_mapping_from_gateway_settings(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    (tmp_path / "pw").chmod(0o600)
    cs = crypt_settings_from(settings(tmp_path, system={"cryptPassphraseFile": "pw",
                                                        "storePskInVault": True}))
    assert cs.db_path == tmp_path / "c.db"
    assert cs.passphrase_file == tmp_path / "pw"
    assert cs.backend == "passphrase" and cs.psk_in_vault is True


def test_crypt_section_overrides(tmp_path: Path) -> None:
    cs = crypt_settings_from(settings(tmp_path, crypt={"kdfLogN": 12, "pkcs11Token": "tok"}))
    assert cs.kdf_log_n == 12 and cs.pkcs11_token == "tok" and cs.backend == "passphrase"


def test_build_and_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEC_CRYPT_PASSPHRASE", "pw")
    s = settings(tmp_path)
    cmds = build_crypt_commands(s)
    assert isinstance(cmds, CryptCommands) and isinstance(cmds.vault, Vault)
    assert cmds.handle("PUT_CRYPT", ("k", "aGk")) == "OK\n"
    cmds.close()
    with pytest.raises(CryptError, match="disabled"):
        open_vault(settings(tmp_path, system={"execCrypt": False}))
    monkeypatch.delenv("EDGESEC_CRYPT_PASSPHRASE")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(BackendError):
        build_crypt_commands(s)


def test_radius_secret(tmp_path: Path) -> None:
    assert radius_secret(settings(tmp_path), None) == b"from-config"
    s = settings(tmp_path, crypt={"radiusSecretInVault": True})
    with pytest.raises(CryptError):
        radius_secret(s, None)
    with Vault.open_or_create(CryptSettings(db_path=tmp_path / "v.db", kdf_log_n=10),
                              b"pw") as vault:
        with pytest.raises(CryptError, match="no"):
            radius_secret(s, vault)
        vault.put_secret(RADIUS_SECRET_KEY, b"vault-secret")
        assert radius_secret(s, vault) == b"vault-secret"


def test_radius_secret_in_vault_from_either_section(tmp_path: Path) -> None:
    """[crypt] radiusSecretInVault wins when set; unset, [radius] secretInVault decides
    (as config_check reads it).  The [radius] default used to override [crypt]."""
    def load(sections: dict[str, dict[str, object]]) -> bool:
        return crypt_settings_from(load_settings(write_config(tmp_path, sections))
                                   ).radius_secret_in_vault
    assert load({"crypt": {"radiusSecretInVault": True}}) is True
    assert load({"radius": {"secretInVault": True}}) is True
    assert load({"radius": {"secretInVault": True}, "crypt": {"radiusSecretInVault": False}}) \
        is False
    assert load({}) is False
