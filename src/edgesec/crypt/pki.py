"""Key, certificate, signature and blob operations behind the crypt commands.

Pure functions over bytes (no vault access), each raising ``ValueError`` on bad
input.  Behaviour follows the original (src/utils/cryptou.c) except where it
was unsafe: stored key/IV lengths are checked, and CNs over 64 characters
(the X.509 upper bound ``ub-common-name``) are refused instead of overflowing.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

CERT_LIFETIME = dt.timedelta(seconds=31_536_000)
MAX_CN = 64


def generate_private_key_pem() -> bytes:
    """An EC P-256 key as unencrypted PKCS#8 PEM (the original ignores the size)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_private(pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("stored value is not an unencrypted PEM private key") from exc
    except Exception as exc:  # e.g. UnsupportedAlgorithm
        raise ValueError(f"cannot load private key: {type(exc).__name__}") from exc


def public_key_pem(private_pem: bytes) -> bytes:
    """SubjectPublicKeyInfo PEM of a PEM private key."""
    key = _load_private(private_pem)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def self_signed_cert_pem(private_pem: bytes, common_name: str,
                         now: dt.datetime | None = None) -> bytes:
    """Self-signed cert, subject = issuer = C=IE, O=nqmcyber, OU=R&D, CN=<cn>, 365 days."""
    if not 1 <= len(common_name) <= MAX_CN:
        raise ValueError(f"common name must be 1..{MAX_CN} characters")
    key = _load_private(private_pem)
    algorithm: hashes.SHA256 | None
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = None
    elif isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        algorithm = hashes.SHA256()
    else:
        raise ValueError("unsupported private key type for certificates")
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "IE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nqmcyber"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "R&D"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    start = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CERT_LIFETIME)
        .sign(key, algorithm)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def sign(private_pem: bytes, data: bytes) -> bytes:
    """SHA-256 signature: ECDSA (DER) for EC keys, PKCS#1 v1.5 for RSA keys."""
    key = _load_private(private_pem)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        from cryptography.hazmat.primitives.asymmetric import padding as apad

        return key.sign(data, apad.PKCS1v15(), hashes.SHA256())
    raise ValueError("SIGN_BLOB supports EC and RSA keys")


def _cbc(key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    if len(key) != 32:
        raise ValueError("stored key must be 32 bytes (AES-256)")
    if len(iv) != 16:
        raise ValueError("stored IV must be 16 bytes")
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-256-CBC + PKCS#7 (the original's ENCRYPT_BLOB, kept for wire compatibility)."""
    padder = padding.PKCS7(128).padder()
    enc = _cbc(key, iv).encryptor()
    return enc.update(padder.update(data) + padder.finalize()) + enc.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Inverse of ``cbc_encrypt``; ValueError on a bad length or padding."""
    if not data or len(data) % 16:
        raise ValueError("ciphertext length must be a positive multiple of 16")
    dec = _cbc(key, iv).decryptor()
    padded = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()
