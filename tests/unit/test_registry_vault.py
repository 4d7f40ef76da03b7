"""storePskInVault: per-device passphrases live in the vault, not in the connection DB."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from edgesec.config import parse_settings
from edgesec.crypt import CryptSettings, Vault
from edgesec.crypt.backends.passphrase import PassphraseBackend
from edgesec.registry import Registry, RegistryError
from edgesec.store import Store

CHEAP = CryptSettings(kdf_log_n=10)
MAC = "02:00:00:00:00:01"
PSK = "a-private-passphrase"

CONFIG = """
[system]
storePskInVault = {flag}
defaultOpenVlanId = 1
[interfaces]
if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"
"""


def settings(flag: bool):
    return parse_settings(CONFIG.format(flag="true" if flag else "false"))


@pytest.fixture
def vault(tmp_path: Path):
    v = Vault.create(tmp_path / "vault.db", PassphraseBackend(CHEAP, b"pw"))
    yield v
    v.close()


def db_passes(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [row[0] for row in con.execute("SELECT pass FROM instance")]
    finally:
        con.close()


def test_psk_goes_to_the_vault_and_survives_restart(tmp_path: Path, vault: Vault) -> None:
    db = tmp_path / "conn.sqlite"
    reg = Registry(settings(True), Store(db), vault=vault)
    reg.accept_mac(MAC, 1)
    dev = reg.assign_psk(MAC, PSK)
    assert db_passes(db) == [""]
    assert vault.get_secret(dev.id) == PSK.encode()
    assert PSK.encode() not in db.read_bytes()
    reg.store.close()

    again = Registry(settings(True), Store(db), vault=vault)
    assert again.get(MAC).psk == PSK
    assert again.admit(MAC).psk == PSK
    again.clear_psk(MAC)
    assert vault.get_secret(dev.id) is None


def test_switching_on_moves_plaintext_rows_into_the_vault(tmp_path: Path, vault: Vault) -> None:
    db = tmp_path / "conn.sqlite"
    plain = Registry(settings(False), Store(db))
    dev = plain.assign_psk(MAC, PSK)
    assert db_passes(db) == [PSK]
    plain.store.close()

    moved = Registry(settings(True), Store(db), vault=vault)
    assert moved.get(MAC) == replace(dev, psk=PSK)
    assert db_passes(db) == [""]
    assert vault.get_secret(dev.id) == PSK.encode()


def test_switch_without_a_vault_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="storePskInVault"):
        Registry(settings(True), Store(tmp_path / "conn.sqlite"))


def test_radius_secret_from_the_vault(tmp_path: Path, vault: Vault) -> None:
    from edgesec.access.radius import build_radius_service
    from edgesec.crypt.errors import CryptError
    from edgesec.crypt.service import RADIUS_SECRET_KEY

    conf = parse_settings(CONFIG.format(flag="false")
                          + '[radius]\nsecret = "in-the-file"\nsecretInVault = true\n')
    reg = Registry(conf, Store(tmp_path / "conn.sqlite"), vault=vault)
    with pytest.raises(CryptError, match=RADIUS_SECRET_KEY):
        build_radius_service(conf, reg)
    vault.put_secret(RADIUS_SECRET_KEY, b"from-the-vault")
    assert build_radius_service(conf, reg).config.secret == b"from-the-vault"


def test_crypt_section_aliases(tmp_path: Path, vault: Vault) -> None:
    from edgesec.crypt.service import crypt_settings_from

    conf = parse_settings(CONFIG.format(flag="false")
                          + "[crypt]\npskInVault = true\nkdfLogN = 12\nbackend = pkcs11\n")
    cs = crypt_settings_from(conf)
    assert (cs.kdf_log_n, cs.backend, cs.psk_in_vault) == (12, "pkcs11", True)
    reg = Registry(conf, Store(tmp_path / "conn.sqlite"), vault=vault)
    reg.accept_mac(MAC, 1)
    dev = reg.assign_psk(MAC, PSK)
    assert vault.get_secret(dev.id) == PSK.encode()


def test_removing_a_device_deletes_its_vault_secret(tmp_path: Path, vault: Vault) -> None:
    reg = Registry(settings(True), Store(tmp_path / "conn.sqlite"), vault=vault)
    reg.accept_mac(MAC, 1)
    dev = reg.assign_psk(MAC, PSK)
    reg.remove_device(MAC)
    assert vault.get_secret(dev.id) is None and reg.get(MAC) is None
    reg.store.close()
