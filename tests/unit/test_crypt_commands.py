"""Unit tests of the supervisor crypt commands (edgesec.crypt.commands)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as apad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesec.crypt import CryptCommands, CryptSettings, Vault
from edgesec.crypt.b64 import url_encode
from edgesec.crypt.backends.passphrase import PassphraseBackend
from edgesec.crypt.commands import parse_size

OK, FAIL = "OK\n", "FAIL\n"


def unb64(reply: str) -> bytes:
    assert reply.endswith("\n") and "=" not in reply
    text = reply[:-1]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def vault(tmp_path: Path):
    v = Vault.create(tmp_path / "v.db", PassphraseBackend(CryptSettings(kdf_log_n=10), b"pw"))
    yield v
    v.close()


@pytest.fixture
def cmds(vault: Vault) -> CryptCommands:
    return CryptCommands(vault)


def test_interface() -> None:
    assert CryptCommands.names == {
        "PUT_CRYPT", "GET_CRYPT", "GEN_RANDKEY", "GEN_PRIVKEY", "GEN_PUBKEY",
        "GEN_CERT", "ENCRYPT_BLOB", "DECRYPT_BLOB", "SIGN_BLOB"}
    assert CryptCommands.secret_returning == {"GET_CRYPT", "DECRYPT_BLOB"}


def test_put_get(cmds: CryptCommands, vault: Vault) -> None:
    assert cmds.handle("PUT_CRYPT", ("k", "aGVsbG8")) == OK
    assert vault.get("k") == b"hello"
    assert cmds.handle("GET_CRYPT", ("k",)) == "aGVsbG8\n"
    assert cmds.handle("PUT_CRYPT", ("k", "_-8=")) == OK  # padding optional on input
    assert cmds.handle("GET_CRYPT", ("k",)) == "_-8\n"  # never padded on output
    assert cmds.handle("PUT_CRYPT", ("k2", "aGVsbG8", "extra")) == OK  # extra tokens ignored


@pytest.mark.parametrize(
    "args",
    [(), ("k",), ("", "aGVsbG8"), ("k", ""), ("k", "!!!"), ("k", "A")],
)
def test_put_bad_args(cmds: CryptCommands, args: tuple[str, ...]) -> None:
    assert cmds.handle("PUT_CRYPT", args) == FAIL


def test_get_missing_or_empty(cmds: CryptCommands, vault: Vault) -> None:
    assert cmds.handle("GET_CRYPT", ("nope",)) == FAIL
    assert cmds.handle("GET_CRYPT", ()) == FAIL
    assert cmds.handle("GET_CRYPT", ("",)) == FAIL
    vault.put("empty", b"")
    assert cmds.handle("GET_CRYPT", ("empty",)) == FAIL  # as the original


@pytest.mark.parametrize(
    ("size", "length"), [("32", 32), ("16", 16), ("0", 0), ("+5", 5), ("257", 1), ("-1", 255)]
)
def test_gen_randkey(cmds: CryptCommands, vault: Vault, size: str, length: int) -> None:
    assert cmds.handle("GEN_RANDKEY", ("rk", size)) == OK
    assert len(vault.get("rk") or b"") == length


@pytest.mark.parametrize("size", ["23f", "", "+", "0x10", "1.5", " 3", str(1 << 64)])
def test_bad_sizes(cmds: CryptCommands, size: str) -> None:
    assert cmds.handle("GEN_RANDKEY", ("rk", size)) == FAIL
    assert cmds.handle("GEN_PRIVKEY", ("pk", size)) == FAIL


def test_parse_size() -> None:
    assert parse_size("256") == 0
    assert parse_size(str((1 << 64) - 1)) == 255


def test_privkey_pubkey_sign(cmds: CryptCommands, vault: Vault) -> None:
    assert cmds.handle("GEN_PRIVKEY", ("pk", "2048")) == OK  # size ignored: always P-256
    pem = vault.get("pk") or b""
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert cmds.handle("GEN_PUBKEY", ("pub", "pk")) == OK
    pub_pem = vault.get("pub") or b""
    assert pub_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    pub = serialization.load_pem_public_key(pub_pem)
    sig = unb64(cmds.handle("SIGN_BLOB", ("pk", url_encode(b"message"))))
    pub.verify(sig, b"message", ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"messagf", ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    assert cmds.handle("GEN_PUBKEY", ("pub2", "missing")) == FAIL
    assert cmds.handle("GEN_PUBKEY", ("pub2", "pub")) == FAIL  # not a private key
    assert cmds.handle("SIGN_BLOB", ("pub", "aGk")) == FAIL
    assert cmds.handle("SIGN_BLOB", ("pk", "")) == FAIL


def test_sign_rsa(cmds: CryptCommands, vault: Vault) -> None:
    key = rsa.generate_private_key(65537, 2048)
    vault.put("rsa", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    sig = unb64(cmds.handle("SIGN_BLOB", ("rsa", url_encode(b"data"))))
    key.public_key().verify(sig, b"data", apad.PKCS1v15(), hashes.SHA256())


def test_gen_cert(cmds: CryptCommands, vault: Vault) -> None:
    assert cmds.handle("GEN_PRIVKEY", ("pk", "32")) == OK
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert cmds.handle("GEN_CERT", ("cert", "pk", "gateway.local")) == OK
    cert = x509.load_pem_x509_certificate(vault.get("cert") or b"")
    assert cert.subject == cert.issuer
    assert [(a.oid, a.value) for a in cert.subject] == [
        (NameOID.COUNTRY_NAME, "IE"), (NameOID.ORGANIZATION_NAME, "nqmcyber"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "R&D"), (NameOID.COMMON_NAME, "gateway.local")]
    assert cert.not_valid_before_utc >= before - dt.timedelta(seconds=1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)
    pub = serialization.load_pem_private_key(vault.get("pk") or b"", None).public_key()
    pub.verify(cert.signature, cert.tbs_certificate_bytes,  # type: ignore[call-arg]
               ec.ECDSA(hashes.SHA256()))


def test_gen_cert_cn_limits(cmds: CryptCommands, vault: Vault) -> None:
    assert cmds.handle("GEN_PRIVKEY", ("pk", "32")) == OK
    assert cmds.handle("GEN_CERT", ("c64", "pk", "x" * 64)) == OK
    # the original overflowed a 64-byte buffer here; we refuse cleanly
    assert cmds.handle("GEN_CERT", ("c65", "pk", "x" * 65)) == FAIL
    assert cmds.handle("GEN_CERT", ("c", "pk", "y" * 5000)) == FAIL
    assert vault.get("c65") is None
    assert cmds.handle("GEN_CERT", ("c", "pk", "")) == FAIL
    assert cmds.handle("GEN_CERT", ("c", "missing", "cn")) == FAIL
    assert cmds.handle("GEN_CERT", ("c", "pk")) == FAIL


def _cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padder.update(data) + padder.finalize()) + enc.finalize()


def test_encrypt_decrypt_blob(cmds: CryptCommands, vault: Vault) -> None:
    assert cmds.handle("GEN_RANDKEY", ("key", "32")) == OK
    assert cmds.handle("GEN_RANDKEY", ("iv", "16")) == OK
    reply = cmds.handle("ENCRYPT_BLOB", ("key", "iv", url_encode(b"secret blob")))
    ct = unb64(reply)
    # the original's format: AES-256-CBC + PKCS#7 with the stored key and IV
    assert ct == _cbc(vault.get("key") or b"", vault.get("iv") or b"", b"secret blob")
    assert unb64(cmds.handle("DECRYPT_BLOB", ("key", "iv", reply.strip())))== b"secret blob"
    tampered = url_encode(ct[:-1] + bytes([ct[-1] ^ 1]))
    assert cmds.handle("DECRYPT_BLOB", ("key", "iv", tampered)) == FAIL
    assert cmds.handle("DECRYPT_BLOB", ("key", "iv", url_encode(ct[:-3]))) == FAIL


def test_blob_key_and_iv_sizes_checked(cmds: CryptCommands) -> None:
    cmds.handle("GEN_RANDKEY", ("k16", "16"))
    cmds.handle("GEN_RANDKEY", ("k32", "32"))
    cmds.handle("GEN_RANDKEY", ("iv8", "8"))
    assert cmds.handle("ENCRYPT_BLOB", ("k16", "k16", "aGk")) == FAIL
    assert cmds.handle("ENCRYPT_BLOB", ("k32", "iv8", "aGk")) == FAIL
    assert cmds.handle("ENCRYPT_BLOB", ("k32", "missing", "aGk")) == FAIL
    assert cmds.handle("ENCRYPT_BLOB", ("k32", "k16", "")) == FAIL
    assert cmds.handle("ENCRYPT_BLOB", ("k32", "k16", "!!")) == FAIL
    assert cmds.handle("DECRYPT_BLOB", ("k32", "k16")) == FAIL


def test_no_vault_all_fail() -> None:
    for cmds in (CryptCommands(None), CryptCommands(lambda: None)):
        for name in CryptCommands.names:
            assert cmds.handle(name, ("a", "b", "c")) == FAIL
    assert CryptCommands(None).handle("PING_SUPERVISOR", ()) == FAIL


def test_provider_and_tampered_store(vault: Vault) -> None:
    cmds = CryptCommands(lambda: vault)
    assert cmds.handle("PUT_CRYPT", ("k", "aGVsbG8")) == OK
    conn = sqlite3.connect(str(vault.path))
    conn.execute("UPDATE store SET iv=? WHERE key='k'", (os.urandom(12),))
    conn.commit()
    conn.close()
    assert cmds.handle("GET_CRYPT", ("k",)) == FAIL  # authenticated: no garbage


def test_closed_vault_fails_cleanly(vault: Vault) -> None:
    cmds = CryptCommands(vault)
    vault.close()
    assert cmds.handle("GET_CRYPT", ("k",)) == FAIL


_token = st.text(st.characters(blacklist_characters=" "),
                 max_size=80)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(CryptCommands.names)),
       args=st.lists(st.one_of(_token, st.sampled_from(["k", "key", "iv", "pk", "32", "16"])),
                     max_size=5))
def test_fuzz_never_raises(cmds: CryptCommands, name: str, args: list[str]) -> None:
    cmds.handle("GEN_RANDKEY", ("key", "32"))
    cmds.handle("GEN_RANDKEY", ("iv", "16"))
    reply = cmds.handle(name, tuple(args))
    assert reply.endswith("\n")
    assert reply in (OK, FAIL) or name in {"GET_CRYPT", "ENCRYPT_BLOB", "DECRYPT_BLOB",
                                           "SIGN_BLOB"}
