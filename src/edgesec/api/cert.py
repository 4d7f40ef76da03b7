"""The API's HTTPS certificate, issued by the gateway's own CA kept in the vault.

Pure functions over PEM bytes: :func:`new_ca` makes a CA (EC P-256, 10 years,
``CA:TRUE``, path length 0) and :func:`issue` a server certificate for the
gateway's names and addresses (``serverAuth``, 1 year). ``edgesec api cert``
keeps the CA's key in the vault (it never leaves it), writes the server key
(0600) and certificate where ``[api] keyFile``/``certFile`` say, and the CA
certificate beside them for clients to trust.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_ca(name: str = "edgesec gateway CA") -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a new CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        if not host or len(host) > 253 or any(c.isspace() for c in host):
            raise ValueError(f"not a host name or IP address: {host!r}") from None
        return x509.DNSName(host)


def issue(ca_key_pem: bytes, ca_cert_pem: bytes, hosts: list[str]) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a server certificate for ``hosts``, signed by the CA."""
    if not hosts:
        raise ValueError("name at least one host name or IP address")
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + SERVER_LIFETIME)
            .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)
