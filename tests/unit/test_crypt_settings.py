"""Unit tests of CryptSettings.from_ini and the secret sources of the backends."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesec.crypt.backends.secrets_source import find_secret
from edgesec.crypt.errors import BackendError
from edgesec.crypt.settings import CryptSettings, from_ini


def test_from_ini_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.ini"
    cfg.write_text(
        "[system]\ncryptDbPath = /var/lib/edgesec/crypt.sqlite\n"
        "[CRYPT]\nBackend = pkcs11\npkcs11Module = lib/p11.so\npkcs11Token = \"tok\"\n"
        "pkcs11PinFile = pin # comment\npkcs11KeyLabel = root\nkdfLogN = 15\n"
        "radiusSecretInVault = yes\npskInVault = 1\n")
    s = from_ini(cfg)
    assert s.db_path == Path("/var/lib/edgesec/crypt.sqlite")
    assert s.backend == "pkcs11"
    assert s.pkcs11_module == (tmp_path / "lib" / "p11.so")
    assert s.pkcs11_token == "tok" and s.pkcs11_key_label == "root"
    assert s.pkcs11_pin_file == tmp_path / "pin"
    assert s.kdf_log_n == 15 and s.radius_secret_in_vault and s.psk_in_vault


def test_from_ini_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.ini"
    cfg.write_text("[system]\n")
    assert from_ini(cfg) == CryptSettings()
    cfg.write_text("[crypt]\nkdfLogN = many\n")
    with pytest.raises(ValueError, match="kdfLogN"):
        from_ini(cfg)
    with pytest.raises(ValueError):
        from_ini(tmp_path / "absent.ini")


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_from_ini_fuzz(tmp_path: Path, data: bytes) -> None:
    cfg = tmp_path / "fuzz.ini"
    cfg.write_bytes(b"[crypt]\n" + data)
    with contextlib.suppress(ValueError):
        assert isinstance(from_ini(cfg), CryptSettings)


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
