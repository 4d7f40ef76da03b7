"""Unit tests of edgesec.crypt.service (gateway glue, secret names for other services)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from daemon import write_config  # tests/ is on sys.path (tests/conftest.py)
from edgesec.config import CryptSection, RadiusSettings, Settings, SystemSettings, load_settings
from edgesec.crypt import CryptCommands, CryptSettings, Vault
from edgesec.crypt.errors import BackendError, CryptError
from edgesec.crypt.service import (
    RADIUS_SECRET_KEY,
    build_crypt_commands,
    crypt_settings_from,
    open_vault,
    psk_key,
    radius_secret,
)
from edgesec.crypt.settings import from_ini


def fake(tmp_path: Path, exec_crypt: bool = True) -> Settings:
    system = SystemSettings(crypt_db_path=tmp_path / "c.db", crypt_backend="passphrase",
                            crypt_passphrase_file=None, store_psk_in_vault=False,
                            exec_crypt=exec_crypt)
    return Settings(system=system, radius=RadiusSettings(secret="from-config"))


def test_mapping_from_gateway_settings(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    cfg = write_config(tmp_path, {"system": {"cryptPassphraseFile": "pw",
                                             "storePskInVault": True}})
    cs = crypt_settings_from(load_settings(cfg))
    assert cs.db_path == tmp_path / "crypt.sqlite"
    assert cs.passphrase_file == tmp_path / "pw"
    assert cs.backend == "passphrase" and cs.psk_in_vault is True
    # the CLI's own reader agrees on the shared keys
    own = from_ini(cfg)
    assert (own.db_path, own.passphrase_file, own.psk_in_vault) == (
        cs.db_path, cs.passphrase_file, cs.psk_in_vault)


def test_crypt_section_overrides(tmp_path: Path) -> None:
    s = replace(fake(tmp_path), crypt=CryptSection(kdf_log_n=12, pkcs11_token="tok"))
    cs = crypt_settings_from(s)
    assert cs.kdf_log_n == 12 and cs.pkcs11_token == "tok" and cs.backend == "passphrase"


def test_build_and_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEC_CRYPT_PASSPHRASE", "pw")
    s = replace(fake(tmp_path), crypt=CryptSection(kdf_log_n=10))
    cmds = build_crypt_commands(s)
    assert isinstance(cmds, CryptCommands) and isinstance(cmds.vault, Vault)
    assert cmds.handle("PUT_CRYPT", ("k", "aGk")) == "OK\n"
    cmds.close()
    with pytest.raises(CryptError, match="disabled"):
        open_vault(fake(tmp_path, exec_crypt=False))
    monkeypatch.delenv("EDGESEC_CRYPT_PASSPHRASE")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(BackendError):
        build_crypt_commands(s)


def test_radius_secret_and_psk_names(tmp_path: Path) -> None:
    s = fake(tmp_path)
    assert radius_secret(s, None) == b"from-config"
    s = replace(s, crypt=CryptSection(radius_secret_in_vault=True, kdf_log_n=10))
    with pytest.raises(CryptError):
        radius_secret(s, None)
    with Vault.open_or_create(CryptSettings(db_path=tmp_path / "v.db", kdf_log_n=10),
                              b"pw") as vault:
        with pytest.raises(CryptError, match="no"):
            radius_secret(s, vault)
        vault.put_secret(RADIUS_SECRET_KEY, b"vault-secret")
        assert radius_secret(s, vault) == b"vault-secret"
        vault.put_secret(psk_key("0b9f-uuid"), b"psk-1")
        assert vault.get_secret("0b9f-uuid") == b"psk-1"
    with pytest.raises(ValueError):
        psk_key("")


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
