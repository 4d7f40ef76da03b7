"""PKCS#11 backend against a real SoftHSM2 token initialised here in a temp dir."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgesec.crypt import CryptCommands, CryptSettings, Vault
from edgesec.crypt.backends import load_backend
from edgesec.crypt.backends.passphrase import PassphraseBackend
from edgesec.crypt.backends.pkcs11 import Pkcs11Backend
from edgesec.crypt.errors import BackendError, IntegrityError
from edgesec.crypt.softhsm import SoftHsmToken, init_token, make_token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    base = tmp_path_factory.mktemp("softhsm")
    tok = make_token(base, label="edgesec-it", pin="4321")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(tok.conf)
    try:
        yield tok
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


def hsm_settings(token: SoftHsmToken, **over: object) -> CryptSettings:
    fields: dict[str, object] = {
        "backend": "pkcs11", "pkcs11_module": token.module, "pkcs11_token": token.label,
        "pkcs11_key_label": f"t-{uuid.uuid4().hex[:8]}", "kdf_log_n": 10}
    return CryptSettings(**{**fields, **over})  # type: ignore[arg-type]


def token_keys(token: SoftHsmToken) -> dict[str, object]:
    import pkcs11

    lib = pkcs11.lib(str(token.module))
    with lib.get_token(token_label=token.label).open(user_pin=token.pin) as s:
        return {k.label: (k[pkcs11.Attribute.SENSITIVE], k[pkcs11.Attribute.EXTRACTABLE])
                for k in s.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY})}


def test_round_trip_and_reopen(token: SoftHsmToken, tmp_path: Path) -> None:
    s = hsm_settings(token)
    path = tmp_path / "hsm.db"
    with Vault.create(path, Pkcs11Backend(s, token.pin.encode())) as v:
        v.put("radius", b"shared-secret")
        v.put("empty", b"")
        label = v.info()["backend_params"]["key_label"]
    assert label.startswith(s.pkcs11_key_label)
    sensitive, extractable = token_keys(token)[label]
    assert sensitive is True and extractable is False  # the root key cannot leave the token
    with Vault.open(path, settings=s, secret=token.pin.encode()) as v:
        assert v.backend_name == "pkcs11"
        assert v.get("radius") == b"shared-secret" and v.get("empty") == b""
        assert CryptCommands(v).handle("GET_CRYPT", ("radius",)) == "c2hhcmVkLXNlY3JldA\n"


def test_root_key_value_is_unreadable(token: SoftHsmToken, tmp_path: Path) -> None:
    import pkcs11

    s = hsm_settings(token)
    with Vault.create(tmp_path / "v.db", Pkcs11Backend(s, token.pin.encode())) as v:
        label = v.info()["backend_params"]["key_label"]
    lib = pkcs11.lib(str(token.module))
    with lib.get_token(token_label=token.label).open(user_pin=token.pin) as session:
        key = session.get_key(label=label)
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]


def test_pin_from_env_wrong_pin_and_missing_token(
        token: SoftHsmToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = hsm_settings(token)
    path = tmp_path / "v.db"
    monkeypatch.setenv("EDGESEC_CRYPT_PKCS11_PIN", token.pin)
    Vault.create(path, load_backend("pkcs11", s)).close()
    with Vault.open(path, settings=s) as v:
        v.put("k", b"v")
    monkeypatch.setenv("EDGESEC_CRYPT_PKCS11_PIN", "0000")
    with pytest.raises(BackendError, match="PIN"):
        Vault.open(path, settings=s)
    monkeypatch.delenv("EDGESEC_CRYPT_PKCS11_PIN")
    with pytest.raises(BackendError, match="no PKCS#11 PIN"):
        Vault.open(path, settings=s)
    other = CryptSettings(backend="pkcs11", pkcs11_module=token.module,
                          pkcs11_token="no-such-token")
    with pytest.raises(BackendError, match="no PKCS#11 token"):
        Pkcs11Backend(other, token.pin.encode()).create_root()


def test_token_created_after_library_loaded(token: SoftHsmToken, tmp_path: Path) -> None:
    init_token(token.conf, "late-token", "9999")  # found after a re-scan
    s = hsm_settings(token, pkcs11_token="late-token")
    with Vault.create(tmp_path / "late.db", Pkcs11Backend(s, b"9999")) as v:
        v.put("k", b"v")
        assert v.get("k") == b"v"


def test_tampered_wrapped_key(token: SoftHsmToken, tmp_path: Path) -> None:
    s = hsm_settings(token)
    path = tmp_path / "v.db"
    Vault.create(path, Pkcs11Backend(s, token.pin.encode())).close()
    conn = sqlite3.connect(str(path))
    (blob,) = conn.execute("SELECT value FROM secrets").fetchone()
    conn.execute("UPDATE secrets SET value=?", (blob[:20] + bytes([blob[20] ^ 1]) + blob[21:],))
    conn.commit()
    conn.close()
    with pytest.raises(IntegrityError):
        Vault.open(path, settings=s, secret=token.pin.encode())


def test_rotation_between_backends(token: SoftHsmToken, tmp_path: Path) -> None:
    s = hsm_settings(token)
    path = tmp_path / "v.db"
    with Vault.create(path, PassphraseBackend(s, b"pw")) as v:
        v.put("k", b"moved to the token")
        v.rotate(Pkcs11Backend(s, token.pin.encode()))
        first = v.info()["backend_params"]["key_label"]
        v.rotate(Pkcs11Backend(s, token.pin.encode()))  # token -> new token key
        second = v.info()["backend_params"]["key_label"]
    keys = token_keys(token)
    assert second in keys and first not in keys  # the superseded key was destroyed
    with Vault.open(path, settings=s, secret=token.pin.encode()) as v:
        assert v.get("k") == b"moved to the token"
        v.rotate(PassphraseBackend(s, b"back"))
    with Vault.open(path, settings=s, secret=b"back") as v:
        assert v.get("k") == b"moved to the token"


def test_cli_with_pkcs11(token: SoftHsmToken, tmp_path: Path) -> None:
    from edgesec.crypt.cli import app

    pin = tmp_path / "pin"
    pin.write_text(token.pin + "\n")
    pin.chmod(0o600)
    cfg = tmp_path / "c.ini"
    cfg.write_text(f"[system]\ncryptDbPath = v.db\n[crypt]\nbackend = pkcs11\n"
                   f"pkcs11Module = {token.module}\npkcs11Token = {token.label}\n"
                   f"pkcs11PinFile = pin\npkcs11KeyLabel = cli-{uuid.uuid4().hex[:6]}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["init", "-c", str(cfg)], env={}).exit_code == 0
    assert runner.invoke(app, ["put", "k", "-c", str(cfg)], input=b"hsm", env={}).exit_code == 0
    assert runner.invoke(app, ["get", "k", "-c", str(cfg)], env={}).stdout_bytes == b"hsm"
    rot = runner.invoke(app, ["rotate", "-c", str(cfg)], env={})
    assert rot.exit_code == 0, rot.output
    assert runner.invoke(app, ["get", "k", "-c", str(cfg)], env={}).stdout_bytes == b"hsm"
