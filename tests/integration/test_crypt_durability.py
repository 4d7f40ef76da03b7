"""Crash safety and confidentiality of the vault file (real SQLite, real SIGKILL)."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgesec.crypt import CryptCommands, CryptSettings, Vault
from edgesec.crypt.backends.passphrase import PassphraseBackend

pytestmark = pytest.mark.integration

WRITER = r"""
import sys
from edgesec.crypt import Vault, CryptSettings
from edgesec.crypt.backends.passphrase import PassphraseBackend
from hashlib import sha256
path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v = Vault.open(path, PassphraseBackend(CryptSettings(kdf_log_n=10), b"pw"))
print("READY", flush=True)
for i in range(start, start + count):
    v.put(f"key-{i}", sha256(str(i).encode()).digest() * (1 + i % 7))
    print(i, flush=True)  # acknowledged only after put() returned (committed)
"""


def expected(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (1 + i % 7)


def run_and_kill(path: Path, start: int, kill_after: int) -> list[int]:
    """Start a writer of 1,000 PUTs, SIGKILL it after ``kill_after`` acks."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start), "1000"],
                            stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    return acked


def test_kill9_during_1000_puts_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    Vault.create(path, PassphraseBackend(CryptSettings(kdf_log_n=10), b"pw")).close()
    rng = random.Random(7)
    all_acked: list[int] = []
    for round_no in range(3):
        acked = run_and_kill(path, round_no * 1000, rng.randint(100, 900))
        assert acked, "writer acknowledged nothing"
        all_acked += acked
        conn = sqlite3.connect(str(path))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        with Vault.open(path, PassphraseBackend(CryptSettings(kdf_log_n=10), b"pw")) as v:
            for i in all_acked:
                assert v.get(f"key-{i}") == expected(i), f"acknowledged key-{i} lost"
            for name in v.names():  # nothing corrupt, including un-acked tail writes
                assert v.get(name) == expected(int(name.split("-")[1]))


def test_db_file_holds_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    secrets = [os.urandom(24).hex().encode() for _ in range(20)]
    big = os.urandom(1 << 20)
    with Vault.create(path, PassphraseBackend(CryptSettings(kdf_log_n=12), b"passphrase-x")) as v:
        for i, secret in enumerate(secrets):
            v.put(f"k{i}", secret)
        v.put("big", big)
        cmds = CryptCommands(v)
        assert cmds.handle("PUT_CRYPT", ("cmd", base64.urlsafe_b64encode(secrets[0]).decode()))
        v.put("psk", b"device-psk-123456")
        blobs = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("vault.db")]
        assert len(blobs) >= 2  # main file and the WAL while open
    blobs += [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("vault.db")]
    needles = [*secrets, b"device-psk-123456", b"passphrase-x", big[1000:1032], big[-32:]]
    needles += [base64.b64encode(s)[:32] for s in secrets]
    for blob in blobs:
        for needle in needles:
            assert needle not in blob
