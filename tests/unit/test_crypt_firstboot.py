"""A first boot creates the vault in a child process, so the daemon never loads
cryptography to open it (edgesec.crypt.firstboot)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgesec.crypt import CryptSettings, Vault
from edgesec.crypt.backends.passphrase import PassphraseBackend
from edgesec.crypt.errors import BackendError, VaultFormatError
from edgesec.crypt.firstboot import _decode, _encode, create_in_child


def cheap(tmp_path: Path, **values: object) -> CryptSettings:
    return CryptSettings(db_path=tmp_path / "v.db", kdf_log_n=10, **values)  # type: ignore[arg-type]


def test_settings_survive_the_trip_to_the_child(tmp_path: Path) -> None:
    s = cheap(tmp_path, passphrase_file=tmp_path / "pw", pkcs11_token="tok",
              psk_in_vault=True)
    assert _decode(json.loads(json.dumps(_encode(s)))) == s
    with pytest.raises(ValueError, match="unknown"):
        _decode({"nonsense": 1})


def test_the_child_creates_a_vault_this_process_opens(tmp_path: Path) -> None:
    s = cheap(tmp_path)
    create_in_child(s, b"pw")
    with Vault.open(tmp_path / "v.db", PassphraseBackend(s, b"pw")) as vault:
        vault.put("k", b"v")
        assert vault.get("k") == b"v"
    with pytest.raises(VaultFormatError, match="already"):
        create_in_child(s, b"pw")  # never over an existing vault


def test_the_childs_error_keeps_its_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.delenv("EDGESEC_CRYPT_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(BackendError, match="passphrase"):
        create_in_child(cheap(tmp_path))
    with pytest.raises(BackendError, match="kdf_log_n"):
        create_in_child(CryptSettings(db_path=tmp_path / "w.db", kdf_log_n=5), b"pw")
    assert not Vault.exists(tmp_path / "w.db")


def test_a_bad_request_is_a_clear_answer_not_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "edgesec.crypt.firstboot"],
                          input="not json", capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert json.loads(done.stdout)["message"].startswith("bad request")
    assert "Traceback" not in done.stderr


def test_first_boot_and_restart_open_the_vault_without_cryptography(tmp_path: Path) -> None:
    config = tmp_path / "config.ini"
    config.write_text("[system]\ncryptDbPath = c.db\n[crypt]\nkdfLogN = 10\n")
    code = textwrap.dedent(f"""
        import sys
        from edgesec.config import load_settings
        from edgesec.crypt.service import open_vault
        vault = open_vault(load_settings({str(config)!r}), b"pw")
        print("cryptography" in sys.modules, vault.get("k"))
        vault.put("k", b"v")
        print("cryptography" in sys.modules)
    """)
    for expected in (["False", "None", "True"], ["False", "b'v'", "True"]):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
        assert out == expected
