"""RADIUS codec: round trips, RFC 2868 Tunnel-Password vectors, Message-Authenticator,
and hypothesis fuzzing of the decoder."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad.packet import AuthPacket, Packet

from edgesec.access import radius_codec as rc
from edgesec.access.radius_dictionary import pyrad_dictionary

SECRET = b"radius"
RA = bytes(range(16))
D = pyrad_dictionary()


def _md5(data: bytes) -> bytes:
    """MD5 from a different implementation (cryptography/OpenSSL) than hashlib's use in rc."""
    h = hashes.Hash(hashes.MD5())
    h.update(data)
    return h.finalize()


def _reference_salt_decrypt(value: bytes, secret: bytes, ra: bytes) -> bytes:
    """RFC 2868 §3.5 written out byte by byte, as an independent check."""
    salt, cipher = value[:2], value[2:]
    plain = []
    prev = ra + salt
    for i in range(0, len(cipher), 16):
        b = _md5(secret + prev)
        c = cipher[i : i + 16]
        plain.extend(c[j] ^ b[j] for j in range(16))
        prev = c
    return bytes(plain[1 : 1 + plain[0]])


# Vectors derived for this project: secret "radius", Request Authenticator 00..0f.
TUNNEL_VECTORS = [
    (b"1234554321", b"\x80\x01", "800102850062ebba81ef5bf4fd5da2bb6e78"),
    (b"correct horse battery staple 42", b"\x81\x02",
     "810254557f9194b886fb4485bee2e6b44b2ab14f1b2a216d0c926d5ac4479c22adf6"),
]


@pytest.mark.parametrize(("psk", "salt", "expected"), TUNNEL_VECTORS)
def test_tunnel_password_vectors(psk: bytes, salt: bytes, expected: str) -> None:
    enc = rc.salt_encrypt(psk, SECRET, RA, salt)
    assert enc.hex() == expected
    assert _reference_salt_decrypt(enc, SECRET, RA) == psk
    assert rc.salt_decrypt(enc, SECRET, RA) == psk
    # pyrad's independent implementation decodes it too
    p = Packet(secret=SECRET, authenticator=RA, dict=D)
    assert p.SaltDecrypt(enc) == psk


@given(psk=st.binary(min_size=0, max_size=64), salt=st.binary(min_size=2, max_size=2),
       ra=st.binary(min_size=16, max_size=16))
@settings(max_examples=60, deadline=None)
def test_tunnel_password_round_trip(psk: bytes, salt: bytes, ra: bytes) -> None:
    enc = rc.salt_encrypt(psk, SECRET, ra, salt)
    assert enc[0] & 0x80, "salt high bit must be set (RFC 2868)"
    assert (len(enc) - 2) % 16 == 0
    assert _reference_salt_decrypt(enc, SECRET, ra) == psk
    assert rc.salt_decrypt(enc, SECRET, ra) == psk


def test_random_salts_differ() -> None:
    salts = {rc.salt_encrypt(b"x" * 10, SECRET, RA)[:2] for _ in range(50)}
    assert len(salts) > 1


def test_user_password_vector_and_pyrad() -> None:
    enc = rc.encrypt_user_password(b"001122334455", SECRET, RA)
    assert enc.hex() == "f94a6a953e15ab7e81dc4863213ee75f"
    assert rc.decrypt_user_password(enc, SECRET, RA) == b"001122334455"
    p = AuthPacket(secret=SECRET, authenticator=RA, dict=D)
    assert p.PwDecrypt(enc) == "001122334455"
    assert p.PwCrypt("a passphrase longer than sixteen") == rc.encrypt_user_password(
        b"a passphrase longer than sixteen", SECRET, RA)


def test_request_round_trip_and_ma() -> None:
    attrs = [(rc.USER_NAME, b"001122334455"), (rc.CALLING_STATION_ID, b"00-11-22-33-44-55"),
             (rc.PROXY_STATE, b"p1"), (rc.PROXY_STATE, b"p2")]
    raw = rc.encode_request(7, RA, SECRET, attrs)
    req = rc.decode(raw)
    assert (req.code, req.ident, req.authenticator) == (rc.ACCESS_REQUEST, 7, RA)
    assert req.get(rc.USER_NAME) == b"001122334455"
    assert req.all(rc.PROXY_STATE) == [b"p1", b"p2"]
    assert rc.verify_request_ma(req, SECRET)
    assert not rc.verify_request_ma(req, b"other")
    # pyrad verifies our Message-Authenticator too
    p = AuthPacket(packet=raw, secret=SECRET, dict=D)
    assert p.verify_message_authenticator()
    # one flipped bit anywhere breaks it
    for i in (3, 10, 40, len(raw) - 1):
        bad = bytearray(raw)
        bad[i] ^= 1
        try:
            r2 = rc.decode(bytes(bad))
        except rc.RadiusError:
            continue
        assert not rc.verify_request_ma(r2, SECRET)


def test_request_without_ma() -> None:
    raw = rc.encode_request(1, RA, SECRET, [(rc.USER_NAME, b"u")], with_ma=False)
    req = rc.decode(raw)
    assert req.ma_offset == -1
    assert not rc.verify_request_ma(req, SECRET)


def test_reply_verified_by_pyrad_with_proxy_state() -> None:
    req_pkt = AuthPacket(secret=SECRET, dict=D, authenticator=RA, id=9)
    req_pkt["User-Name"] = "001122334455"
    req_pkt["Proxy-State"] = b"state-1"
    req_pkt.add_message_authenticator()
    raw = req_pkt.RequestPacket()
    req = rc.decode(raw)
    attrs = rc.vlan_attributes(42) + rc.tunnel_password_attribute(b"passphrase-42", SECRET, RA)
    out = rc.encode_reply(rc.ACCESS_ACCEPT, req, SECRET, attrs)
    assert out[20] == rc.MESSAGE_AUTHENTICATOR, "Message-Authenticator must come first"
    rep = req_pkt.CreateReply(packet=out)
    rep.request_authenticator = RA
    assert req_pkt.VerifyReply(rep, out, enforce_ma=True)
    assert rep["Tunnel-Private-Group-Id"] == ["42"]
    assert rep["Tunnel-Type"] == ["VLAN"]
    assert rep["Tunnel-Medium-Type"] == ["IEEE-802"]
    assert rep["Tunnel-Password"] == ["passphrase-42"]
    assert rep["Proxy-State"] == [b"state-1"]
    # the Response Authenticator per RFC 2865 §3
    assert out[4:20] == hashlib.md5(out[:4] + RA + out[20:] + SECRET).digest()
    # the Message-Authenticator per RFC 3579 §3.2 (request authenticator in the header)
    zeroed = out[:4] + RA + out[20:22] + bytes(16) + out[38:]
    assert out[22:38] == hmac.digest(SECRET, zeroed, "md5")


def test_tunnel_attribute_encoding() -> None:
    a = rc.vlan_attributes(5)
    assert a == bytes.fromhex("4006 0000000d") + bytes.fromhex("4106 00000006") + b"\x51\x035"


@pytest.mark.parametrize("data", [
    b"", b"\x01" * 19,
    bytes([1, 1, 0, 19]) + bytes(16),          # length < 20
    bytes([1, 1, 0, 40]) + bytes(16),          # length > received
    bytes([1, 1, 0x10, 1]) + bytes(4097),      # length > 4096
    bytes([1, 1, 0, 22]) + bytes(16) + b"\x01\x01",  # attribute length < 2
    bytes([1, 1, 0, 23]) + bytes(16) + b"\x01\x05\x00",  # attribute overruns
    bytes([1, 1, 0, 21]) + bytes(16) + b"\x01",  # truncated attribute header
    bytes([1, 1, 0, 24]) + bytes(16) + b"\x50\x04ab",  # short Message-Authenticator
    bytes([1, 1, 0, 56]) + bytes(16) + (b"\x50\x12" + bytes(16)) * 2,  # two MAs
])
def test_decode_rejects_malformed(data: bytes) -> None:
    with pytest.raises(rc.RadiusError):
        rc.decode(data)


def test_decode_ignores_padding() -> None:
    raw = rc.encode_request(1, RA, SECRET, [(rc.USER_NAME, b"u")])
    req = rc.decode(raw + b"garbage")
    assert req.raw == raw and rc.verify_request_ma(req, SECRET)


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None)
def test_fuzz_decode_never_raises_other(data: bytes) -> None:
    try:
        req = rc.decode(data)
    except rc.RadiusError:
        return
    assert 20 <= len(req.raw) <= len(data)
    rc.verify_request_ma(req, SECRET)


@given(st.lists(st.tuples(st.integers(1, 255).filter(lambda t: t != 80),
                          st.binary(max_size=60)), max_size=8),
       st.integers(0, 255), st.binary(min_size=16, max_size=16))
@settings(max_examples=100, deadline=None)
def test_fuzz_request_round_trip(attrs: list[tuple[int, bytes]], ident: int, ra: bytes) -> None:
    raw = rc.encode_request(ident, ra, SECRET, attrs)
    req = rc.decode(raw)
    assert list(req.attributes[1:]) == attrs
    assert rc.verify_request_ma(req, SECRET)


@given(st.integers(1, 8).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n)),
       st.binary(min_size=16, max_size=16))
@settings(max_examples=60, deadline=None)
def test_fuzz_password_decrypt(value: bytes, ra: bytes) -> None:
    plain = rc.decrypt_user_password(value, SECRET, ra)
    assert len(plain) <= len(value)


@given(st.binary(min_size=1, max_size=128).map(lambda b: b.rstrip(b"\x00") or b"x"),
       st.binary(min_size=16, max_size=16))
@settings(max_examples=60, deadline=None)
def test_user_password_round_trip(plain: bytes, ra: bytes) -> None:
    enc = rc.encrypt_user_password(plain, SECRET, ra)
    assert len(enc) % 16 == 0
    assert rc.decrypt_user_password(enc, SECRET, ra) == plain


@given(st.binary(max_size=80))
@settings(max_examples=150, deadline=None)
def test_fuzz_salt_decrypt(value: bytes) -> None:
    try:
        out = rc.salt_decrypt(value, SECRET, RA)
    except rc.RadiusError:
        return
    assert len(out) <= len(value) - 3


@pytest.mark.parametrize(("text", "mac"), [
    ("001122334455", "00:11:22:33:44:55"),
    ("00-11-22-33-44-55", "00:11:22:33:44:55"),
    ("00:11:22:AA:bb:cc", "00:11:22:aa:bb:cc"),
    ("0011.2233.4455", "00:11:22:33:44:55"),
    (b"AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff"),
    ("00112233445", None), ("0011223344556", None), ("zz-11-22-33-44-55", None),
    (b"\xff\xfe", None), ("", None),
])
def test_parse_mac(text: str | bytes, mac: str | None) -> None:
    assert rc.parse_mac(text) == mac


@given(st.binary(max_size=40))
@settings(max_examples=150, deadline=None)
def test_fuzz_parse_mac(data: bytes) -> None:
    out = rc.parse_mac(data)
    assert out is None or len(out) == 17


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=300))
@settings(max_examples=300)
def test_pre_keyed_digests_equal_the_standard_ones(secret: bytes, message: bytes) -> None:
    # Secrets longer than the 64-octet MD5 block are hashed first (RFC 2104 §2).
    key = rc.SecretKey(secret)
    assert key.hmac(message) == hmac.digest(secret, message, "md5")
    assert key.hmac(message) == key.hmac(message)  # the keyed states are not consumed
    assert key.md5(message) == hashlib.md5(secret + message).digest()


def test_pooled_salts_are_marked_and_spread() -> None:
    salts = [rc._random_salt() for _ in range(5000)]  # crosses a pool refill
    assert all(len(s) == 2 for s in salts)
    values = {rc.salt_encrypt(b"x", b"s", bytes(16))[:2] for _ in range(200)}
    assert all(v[0] & 0x80 for v in values) and len(values) > 150
    assert len(set(salts)) > 3000  # 65,536 possible values: repeats are rare
