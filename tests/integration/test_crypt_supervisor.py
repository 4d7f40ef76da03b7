"""The vault through the running daemon's supervisor socket (real ``edgesec run``)."""

from __future__ import annotations

import base64
import functools
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import Daemon, write_config  # tests/ is on sys.path (tests/conftest.py)
from edgesec.crypt import CryptSettings, Vault
from edgesec.supervisor.client import ClientError, SupervisorClient

pytestmark = pytest.mark.integration

PASS = "daemon-vault-pass"
CONTROL_KEY = "crypt-test-control-key"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EDGESEC_CRYPT_PASSPHRASE", PASS)
    return PASS


@pytest.fixture
def daemon(tmp_path: Path, passphrase: str) -> Iterator[Daemon]:
    d = Daemon(write_config(tmp_path))
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_every_command_through_the_socket(daemon: Daemon, tmp_path: Path) -> None:
    assert daemon.ctl(f"PUT_CRYPT secret {b64(b'top secret')}") == "OK\n"
    assert daemon.ctl("GET_CRYPT secret") == f"{b64(b'top secret')}\n"
    assert daemon.ctl("GET_CRYPT missing") == "FAIL\n"
    assert daemon.ctl("GEN_RANDKEY key 32") == "OK\n"
    assert daemon.ctl("GEN_RANDKEY iv 16") == "OK\n"
    enc = daemon.ctl(f"ENCRYPT_BLOB key iv {b64(b'blob data')}").strip()
    assert daemon.ctl(f"DECRYPT_BLOB key iv {enc}") == f"{b64(b'blob data')}\n"
    assert daemon.ctl("GEN_PRIVKEY pk 32") == "OK\n"
    assert daemon.ctl("GEN_PUBKEY pub pk") == "OK\n"
    assert daemon.ctl("GEN_CERT cert pk gw.example") == "OK\n"
    assert daemon.ctl(f"GEN_CERT cert2 pk {'c' * 200}") == "FAIL\n"  # no overflow, clean FAIL
    assert daemon.ctl(f"SIGN_BLOB pk {b64(b'msg')}").strip() not in ("", "FAIL")
    assert daemon.ctl("PUT_CRYPT  x") == "FAIL\n"  # empty token
    assert daemon.ctl("PING_SUPERVISOR") == "PONG\n"  # still alive after bad input
    daemon.stop()
    # persisted, encrypted, readable with the passphrase after the daemon is gone
    with Vault.open(tmp_path / "crypt.sqlite", settings=CryptSettings(),
                    secret=PASS.encode()) as vault:
        assert vault.get("secret") == b"top secret"
        assert (vault.get("cert") or b"").startswith(b"-----BEGIN CERTIFICATE-----")
    daemon.start()
    assert daemon.ctl("GET_CRYPT secret") == f"{b64(b'top secret')}\n"


def test_without_passphrase_crypt_fails_rest_runs(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESEC_CRYPT_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with Daemon(write_config(tmp_path)) as d:
        assert d.ctl("PING_SUPERVISOR") == "PONG\n"
        assert d.ctl(f"PUT_CRYPT k {b64(b'v')}") == "FAIL\n"
        assert d.ctl("GET_CRYPT k") == "FAIL\n"
        assert d.ctl("ACCEPT_MAC 11:22:33:44:55:66 3") == "OK\n"


def test_wrong_passphrase_answers_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEC_CRYPT_PASSPHRASE", "right")
    cfg = write_config(tmp_path)
    with Daemon(cfg) as d:
        assert d.ctl(f"PUT_CRYPT k {b64(b'v')}") == "OK\n"
    monkeypatch.setenv("EDGESEC_CRYPT_PASSPHRASE", "wrong")
    with Daemon(cfg) as d:
        assert d.ctl("GET_CRYPT k") == "FAIL\n"
        assert d.ctl("PING_SUPERVISOR") == "PONG\n"


def test_secret_commands_refused_over_plain_udp(tmp_path: Path, passphrase: str) -> None:
    port = free_udp_port()
    cfg = write_config(tmp_path, {"supervisor": {
        "supervisorControlPort": port, "supervisorControlAddress": "127.0.0.1",
        "allowUnauthenticatedUdp": True}})
    with Daemon(cfg) as d:
        d.ctl("GEN_RANDKEY key 32")
        d.ctl("GEN_RANDKEY iv 16")
        enc = d.ctl(f"ENCRYPT_BLOB key iv {b64(b'x')}").strip()
        with SupervisorClient(udp=("127.0.0.1", port), timeout=3) as plain:
            assert plain.request(f"PUT_CRYPT k {b64(b'v')}") == "OK\n"  # not secret-returning
            assert plain.request("GET_CRYPT k") == "FAIL\n"
            assert plain.request(f"DECRYPT_BLOB key iv {enc}") == "FAIL\n"
        # the same requests over the UNIX socket succeed
        assert d.ctl("GET_CRYPT k") == f"{b64(b'v')}\n"
        assert d.ctl(f"DECRYPT_BLOB key iv {enc}") == f"{b64(b'x')}\n"


AUTH_CLIENT = """
import sys
from edgesec.supervisor.client import SupervisorClient
with SupervisorClient(udp=(sys.argv[1], int(sys.argv[2])), key=sys.argv[3].encode(),
                      timeout=5) as c:
    sys.stdout.write(c.request(sys.argv[4]))
"""


def test_secret_commands_over_authenticated_udp(tmp_path: Path, passphrase: str) -> None:
    ns, addr, port = f"ecr{os.getpid() % 100000}", "10.251.77.1", 32177
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run(["ip", "netns", "add", ns])
    try:
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # a veth pair inside the namespace gives a non-loopback address (no dummy module here)
        run(["ip", "-n", ns, "link", "add", "c0", "type", "veth", "peer", "name", "c1"])
        run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "c0"])
        run(["ip", "-n", ns, "link", "set", "c0", "up"])
        run(["ip", "-n", ns, "link", "set", "c1", "up"])
        key_file = tmp_path / "control.key"
        key_file.write_text(CONTROL_KEY)
        key_file.chmod(0o600)
        cfg = write_config(tmp_path, {"supervisor": {
            "supervisorControlPort": port, "supervisorControlAddress": addr,
            "supervisorControlKeyFile": "control.key"}})

        def udp(command: str, key: str = CONTROL_KEY) -> str:
            out = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-c", AUTH_CLIENT, addr, str(port),
                 key, command], capture_output=True, text=True, timeout=30)
            return out.stdout if out.returncode == 0 else f"error: {out.stderr[-200:]}"

        from isolation_lab import NetnsDaemon  # filesystem-bound control client

        with NetnsDaemon(cfg, netns=ns) as d:
            assert d.ctl(f"PUT_CRYPT k {b64(b'over udp')}") == "OK\n"
            assert udp("GET_CRYPT k") == f"{b64(b'over udp')}\n"
            assert udp("GET_CRYPT k", key="wrong-key").startswith("error:")  # dropped
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_kill9_during_1000_put_crypt(tmp_path: Path, passphrase: str) -> None:
    cfg = write_config(tmp_path)
    d = Daemon(cfg, verbosity=0)
    d.start()
    acked: list[int] = []
    kill_at = random.Random(11).randint(200, 800)
    reached = threading.Event()

    def killer() -> None:
        reached.wait(60)
        d.kill9()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with SupervisorClient(unix_path=d.socket_path, timeout=2) as client:
            for i in range(1000):
                try:
                    reply = client.request(f"PUT_CRYPT key-{i} {b64(str(i).encode() * 8)}")
                except ClientError:
                    break  # the daemon is gone
                if reply == "OK\n":
                    acked.append(i)
                if len(acked) == kill_at:
                    reached.set()
    finally:
        reached.set()
        thread.join(60)
        d.stop()
    assert len(acked) >= kill_at
    conn = sqlite3.connect(str(tmp_path / "crypt.sqlite"))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Daemon(cfg, verbosity=0) as d2:
        for i in acked:
            assert d2.ctl(f"GET_CRYPT key-{i}") == f"{b64(str(i).encode() * 8)}\n"
    with Vault.open(tmp_path / "crypt.sqlite", settings=CryptSettings(),
                    secret=PASS.encode()) as vault:
        for name in vault.names():  # every row (acked or not) decrypts: nothing corrupt
            assert vault.get(name) == name.split("-")[1].encode() * 8
