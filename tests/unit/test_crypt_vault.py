"""Unit tests of edgesec.crypt.vault: round trips, tampering, rotation, durability pragmas."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgesec.crypt import CryptSettings, Vault
from edgesec.crypt.backends import available, load_backend
from edgesec.crypt.backends.passphrase import PassphraseBackend
from edgesec.crypt.errors import (
    BackendError,
    IntegrityError,
    VaultFormatError,
    WrongKeyError,
)

CHEAP = CryptSettings(kdf_log_n=10)


def backend(secret: bytes = b"correct horse") -> PassphraseBackend:
    return PassphraseBackend(CHEAP, secret)


@pytest.fixture
def vault(tmp_path: Path):
    v = Vault.create(tmp_path / "vault.db", backend())
    yield v
    v.close()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


def test_round_trip_overwrite_delete(vault: Vault) -> None:
    assert vault.get("missing") is None
    vault.put("a", b"one")
    vault.put("b", b"")
    assert vault.get("a") == b"one"
    assert vault.get("b") == b""
    vault.put("a", b"two")
    assert vault.get("a") == b"two"
    assert vault.names() == ["a", "b"]
    assert vault.delete("a") is True
    assert vault.delete("a") is False
    assert vault.get("a") is None
    vault.put_secret("radius", b"s3cret")
    assert vault.get_secret("radius") == b"s3cret"


def test_empty_key_rejected(vault: Vault) -> None:
    with pytest.raises(ValueError):
        vault.put("", b"x")


def test_reopen_and_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, backend()) as v:
        v.put("k", b"value")
    with Vault.open(path, backend()) as v:
        assert v.get("k") == b"value"
    with pytest.raises(WrongKeyError):
        Vault.open(path, backend(b"wrong"))
    # the stored backend name is used when none is given
    with Vault.open(path, settings=CHEAP, secret=b"correct horse") as v:
        assert v.get("k") == b"value"


def test_file_mode_and_pragmas(vault: Vault) -> None:
    assert stat.S_IMODE(vault.path.stat().st_mode) == 0o600
    assert vault._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert vault._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_put_is_committed_before_return(vault: Vault) -> None:
    vault.put("durable", b"x")
    other = raw(vault.path)
    assert other.execute("SELECT COUNT(*) FROM store WHERE key='durable'").fetchone()[0] == 1
    other.close()


def _tamper(path: Path, sql: str, *params: object) -> None:
    conn = raw(path)
    conn.execute(sql, params)
    conn.close()


def test_swapped_rows_fail(vault: Vault) -> None:
    vault.put("alice", b"alice-secret")
    vault.put("bob", b"bob-secret")
    conn = raw(vault.path)
    a = conn.execute("SELECT value, iv FROM store WHERE key='alice'").fetchone()
    b = conn.execute("SELECT value, iv FROM store WHERE key='bob'").fetchone()
    conn.execute("UPDATE store SET value=?, iv=? WHERE key='alice'", b)
    conn.execute("UPDATE store SET value=?, iv=? WHERE key='bob'", a)
    conn.close()
    with pytest.raises(IntegrityError):
        vault.get("alice")
    with pytest.raises(IntegrityError):
        vault.get("bob")


def test_renamed_row_fails_wrong_aad(vault: Vault) -> None:
    vault.put("alice", b"alice-secret")
    _tamper(vault.path, "UPDATE store SET key='mallory' WHERE key='alice'")
    with pytest.raises(IntegrityError):
        vault.get("mallory")


def test_row_from_other_vault_fails(tmp_path: Path, vault: Vault) -> None:
    with Vault.create(tmp_path / "other.db", backend()) as other:
        other.put("k", b"from-other")
        row = raw(other.path).execute("SELECT value, id, iv FROM store").fetchone()
    vault.put("k", b"mine")
    _tamper(vault.path, "UPDATE store SET value=?, id=?, iv=? WHERE key='k'", *row)
    with pytest.raises(IntegrityError):
        vault.get("k")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v, iv: (v[:-1], iv),  # truncated tag
        lambda v, iv: (v[:5], iv),
        lambda v, iv: (b"", iv),
        lambda v, iv: (bytes([v[0] ^ 1]) + v[1:], iv),  # flipped first bit
        lambda v, iv: (v[:-1] + bytes([v[-1] ^ 0x80]), iv),  # flipped tag bit
        lambda v, iv: (v, bytes([iv[0] ^ 1]) + iv[1:]),  # flipped nonce
        lambda v, iv: (v, iv[:8]),  # truncated nonce
        lambda v, iv: (v + b"\0", iv),  # appended byte
    ],
)
def test_tampered_ciphertext_fails(vault: Vault, mutate) -> None:
    vault.put("k", b"a value long enough to flip")
    conn = raw(vault.path)
    value, iv = conn.execute("SELECT value, iv FROM store WHERE key='k'").fetchone()
    conn.execute("UPDATE store SET value=?, iv=? WHERE key='k'", mutate(value, iv))
    conn.close()
    with pytest.raises(IntegrityError):
        vault.get("k")


def test_non_blob_and_unknown_alg_fail(vault: Vault) -> None:
    vault.put("k", b"v")
    _tamper(vault.path, "UPDATE store SET alg='AES-CBC' WHERE key='k'")
    with pytest.raises(IntegrityError):
        vault.get("k")
    vault.put("k", b"v")
    _tamper(vault.path, "UPDATE store SET value='text' WHERE key='k'")
    with pytest.raises(IntegrityError):
        vault.get("k")


def test_tampered_data_key_is_integrity_error(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    Vault.create(path, backend()).close()
    conn = raw(path)
    (blob,) = conn.execute("SELECT value FROM secrets").fetchone()
    conn.execute("UPDATE secrets SET value=?", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    conn.close()
    # the key check proves the passphrase without decrypting: the data key is first
    # unwrapped, and found tampered, when a value is read or written
    with Vault.open(path, backend()) as vault, pytest.raises(IntegrityError):
        vault.put("k", b"v")
    # a vault without a key check (made before it existed) decrypts at open
    conn = raw(path)
    conn.execute("DELETE FROM meta WHERE name='key_check'")
    conn.close()
    with pytest.raises(IntegrityError):
        Vault.open(path, backend())


def test_tampered_verifier_or_params(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    Vault.create(path, backend()).close()
    # the verifier proves the key where there is no key check (older vaults, tokens)
    _tamper(path, "DELETE FROM meta WHERE name='key_check'")
    _tamper(path, "UPDATE meta SET value='00' WHERE name='verifier'")
    with pytest.raises(WrongKeyError):
        Vault.open(path, backend())
    path2 = tmp_path / "v2.db"
    Vault.create(path2, backend()).close()
    conn = raw(path2)
    params = json.loads(conn.execute(
        "SELECT value FROM meta WHERE name='backend_params'").fetchone()[0])
    params["log_n"] = 40  # a tampered, memory-exhausting cost must be refused
    conn.execute("UPDATE meta SET value=? WHERE name='backend_params'", (json.dumps(params),))
    conn.close()
    with pytest.raises(VaultFormatError):
        Vault.open(path2, backend())


def test_not_a_vault(tmp_path: Path) -> None:
    with pytest.raises(VaultFormatError):
        Vault.open(tmp_path / "absent.db", backend())
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(VaultFormatError):
        Vault.open(junk, backend())
    orig = tmp_path / "orig.db"
    _tamper(orig, "CREATE TABLE secrets (id TEXT NOT NULL, value TEXT, salt TEXT, iv TEXT)")
    with pytest.raises(VaultFormatError, match="original"):
        Vault.open(orig, backend())
    with pytest.raises(VaultFormatError):
        Vault.create(orig, backend())


def test_create_twice_refused(vault: Vault) -> None:
    with pytest.raises(VaultFormatError):
        Vault.create(vault.path, backend())


def test_rotate_new_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, backend(b"old")) as v:
        v.put("k", b"kept")
        v.rotate(backend(b"new"))
        assert v.get("k") == b"kept"
        v.put("k2", b"after")
    with pytest.raises(WrongKeyError):
        Vault.open(path, backend(b"old"))
    with Vault.open(path, backend(b"new")) as v:
        assert (v.get("k"), v.get("k2")) == (b"kept", b"after")


class _FailingRoot:
    """Wraps a real root key but fails on the n-th wrap (to test atomic rotation)."""

    def __init__(self, inner, fail_at: int) -> None:
        self.inner, self.calls, self.fail_at = inner, 0, fail_at

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        self.calls += 1
        if self.calls == self.fail_at:
            raise BackendError("injected failure")
        return self.inner.wrap(data_key, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return self.inner.unwrap(blob, aad)

    def close(self) -> None:
        self.inner.close()


class _FailingBackend(PassphraseBackend):
    def create_root(self):
        root, params = super().create_root()
        return _FailingRoot(root, fail_at=2), params


def test_rotation_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, backend(b"old")) as v:
        v.put("k", b"kept")
        # the 2nd wrap fails: after the data-key row was rewritten, before meta was
        with pytest.raises(BackendError):
            v.rotate(_FailingBackend(CHEAP, b"new"))
        assert v.get("k") == b"kept"
    with Vault.open(path, backend(b"old")) as v:
        assert v.get("k") == b"kept"
    with pytest.raises(WrongKeyError):
        Vault.open(path, backend(b"new"))


def test_rekey_reencrypts_everything(vault: Vault) -> None:
    for i in range(5):
        vault.put(f"k{i}", bytes([i]) * i)
    before = raw(vault.path).execute("SELECT id FROM secrets").fetchall()
    assert vault.rekey() == 5
    conn = raw(vault.path)
    after = conn.execute("SELECT id FROM secrets").fetchall()
    assert len(after) == 1 and after != before
    assert {r[0] for r in conn.execute("SELECT id FROM store")} == {after[0][0]}
    conn.close()
    for i in range(5):
        assert vault.get(f"k{i}") == bytes([i]) * i


def test_one_mebibyte_value(vault: Vault) -> None:
    big = bytes(range(256)) * 4096
    vault.put("big", big)
    assert vault.get("big") == big


def _sized(seed_and_size: tuple[bytes, int]) -> bytes:
    seed, size = seed_and_size
    return (seed * (size // len(seed) + 1))[:size]


# arbitrary small values, plus patterned values up to and including 1 MiB
_values = st.one_of(
    st.binary(max_size=4096),
    st.tuples(st.binary(min_size=1, max_size=32),
              st.one_of(st.integers(0, 1 << 20), st.just(1 << 20))).map(_sized),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(min_size=1, max_size=80), value=_values)
@example(key="k", value=b"")
@example(key="k", value=os.urandom(1 << 20))
def test_arbitrary_round_trip(vault: Vault, key: str, value: bytes) -> None:
    vault.put(key, value)
    assert vault.get(key) == value


def test_backend_registry() -> None:
    assert {"passphrase", "pkcs11"} <= set(available())
    assert isinstance(load_backend("passphrase", CHEAP, b"x"), PassphraseBackend)
    with pytest.raises(BackendError):
        load_backend("no-such-backend", CHEAP)


def test_open_or_create(tmp_path: Path) -> None:
    s = CryptSettings(db_path=tmp_path / "sub" / "v.db", kdf_log_n=10)
    with Vault.open_or_create(s, b"pw") as v:
        v.put("k", b"v")
    with Vault.open_or_create(s, b"pw") as v:
        assert v.get("k") == b"v"
    with pytest.raises(VaultFormatError):
        Vault.open_or_create(CryptSettings(), b"pw")


def test_rekey_by_another_process_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, backend()) as daemon_side:
        daemon_side.put("before", b"1")
        with Vault.open(path, backend()) as cli_side:
            cli_side.rekey()  # deletes the data key daemon_side has cached
        daemon_side.put("after", b"2")  # must use the new key, not the deleted one
        assert daemon_side.get("before") == b"1"
    with Vault.open(path, backend()) as fresh:
        assert (fresh.get("before"), fresh.get("after")) == (b"1", b"2")


def test_closed_vault_raises_crypt_error(tmp_path: Path) -> None:
    from edgesec.crypt.errors import CryptError

    v = Vault.create(tmp_path / "v.db", backend())
    v.close()
    with pytest.raises(CryptError):
        v.get("k")
    with pytest.raises(CryptError):
        v.put("k", b"v")


# ------------------------------------------------------------------ key check
def _meta(path: Path, name: str) -> str | None:
    conn = raw(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def test_key_check_is_stored_and_a_tampered_one_refuses_the_key(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, backend()) as vault:
        vault.put("k", b"v")
    check = _meta(path, "key_check")
    assert check is not None and len(bytes.fromhex(check)) == 32
    with pytest.raises(WrongKeyError):
        Vault.open(path, backend(b"wrong"))
    conn = raw(path)
    conn.execute("UPDATE meta SET value=? WHERE name='key_check'", ("00" * 32,))
    conn.close()
    with pytest.raises(WrongKeyError):
        Vault.open(path, backend())


def test_a_vault_without_key_check_gets_one_at_open(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, backend()) as vault:
        vault.put("k", b"v")
    conn = raw(path)
    conn.execute("DELETE FROM meta WHERE name='key_check'")
    conn.close()
    with Vault.open(path, backend()) as vault:
        assert vault.get("k") == b"v"
    assert _meta(path, "key_check") is not None
    with Vault.open(path, backend()) as vault:
        assert vault.get("k") == b"v"


def test_rotation_replaces_the_key_check(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Vault.create(path, backend()) as vault:
        vault.put("k", b"v")
        before = _meta(path, "key_check")
        vault.rotate(backend(b"new passphrase"))
    assert _meta(path, "key_check") not in (None, before)
    with pytest.raises(WrongKeyError):
        Vault.open(path, backend())
    with Vault.open(path, backend(b"new passphrase")) as vault:
        assert vault.get("k") == b"v"


def test_opening_with_the_key_check_does_not_load_cryptography(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "v.db"
    with Vault.create(path, backend()) as vault:
        vault.put("k", b"v")
    code = textwrap.dedent(f"""
        import sys
        from edgesec.crypt import CryptSettings, Vault
        from edgesec.crypt.backends.passphrase import PassphraseBackend
        vault = Vault.open({str(path)!r}, PassphraseBackend(CryptSettings(kdf_log_n=10),
                                                            b"correct horse"))
        print("cryptography" in sys.modules, vault.get("k"), "cryptography" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "b'v'", "True"]


def test_scrypt_is_rfc_7914_and_bounded() -> None:
    from edgesec.crypt.backends.passphrase import derive
    from edgesec.crypt.errors import BackendError

    # RFC 7914, section 12: P="password", S="NaCl", N=1024, r=8, p=16 (first 32 bytes)
    expected = bytes.fromhex(
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162")
    assert derive(b"password", b"NaCl", 10, r=8, p=16) == expected
    with pytest.raises(BackendError):
        derive(b"password", b"NaCl", 20, r=16)  # 2 GiB


def test_kdf_parameters_over_the_memory_bound_are_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    Vault.create(path, backend()).close()
    params = json.loads(_meta(path, "backend_params") or "{}")
    params.update(log_n=20, r=32)  # 4 GiB of scrypt memory in a tampered file
    conn = raw(path)
    conn.execute("UPDATE meta SET value=? WHERE name='backend_params'", (json.dumps(params),))
    conn.close()
    with pytest.raises(VaultFormatError):
        Vault.open(path, backend())
