"""`edgesec api cert`: a server certificate from the gateway's CA, whose key stays in
the vault; the certificate verifies against the CA and serves TLS."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from edgesec.api import cert as C
from edgesec.api.cli import app as api_app
from edgesec.crypt import CryptSettings, Vault
from edgesec.crypt.cli import app as crypt_app

ENV = {"EDGESEC_CRYPT_PASSPHRASE": "pw-1"}


def test_issued_certificate_verifies_and_names_its_hosts() -> None:
    ca_key, ca_cert = C.new_ca()
    _key, pem = C.issue(ca_key, ca_cert, ["gw.lan", "10.0.1.1"])
    cert = x509.load_pem_x509_certificate(pem)
    ca = x509.load_pem_x509_certificate(ca_cert)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gw.lan"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.1.1"]
    with pytest.raises(ValueError):
        C.issue(ca_key, ca_cert, [])
    with pytest.raises(ValueError):
        C.issue(ca_key, ca_cert, ["two words"])


def test_cli_keeps_the_ca_in_the_vault_and_the_cert_serves_tls(tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "config.ini"
    config.write_text('[system]\ncryptDbPath = "vault.db"\n'
                      '[api]\ncertFile = "tls/api.crt"\nkeyFile = "tls/api.key"\n')
    assert runner.invoke(crypt_app, ["init", "-c", str(config), "--kdf-log-n", "10"],
                         env=ENV).exit_code == 0
    done = runner.invoke(api_app, ["cert", "--host", "127.0.0.1", "-c", str(config)], env=ENV)
    assert done.exit_code == 0, done.output
    key_file, cert_file = tmp_path / "tls/api.key", tmp_path / "tls/api.crt"
    assert key_file.stat().st_mode & 0o777 == 0o600
    with Vault.open(tmp_path / "vault.db", settings=CryptSettings(), secret=b"pw-1") as v:
        ca_key = v.get("api-ca-key")
    assert ca_key is not None and ca_key not in cert_file.read_bytes()
    # a second certificate comes from the same CA
    assert runner.invoke(api_app, ["cert", "--host", "127.0.0.1", "-c", str(config)],
                         env=ENV).exit_code == 0
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "tls/api-ca.crt"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")
        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(5) == b"hello"
        thread.join(5)
