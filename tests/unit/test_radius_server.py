"""RADIUS server request path with a fake policy (same ``admit`` signature as the registry)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad.packet import AuthPacket

from edgesec.access import radius_codec as rc
from edgesec.access.radius import RadiusConfig, RadiusServer, RadiusService
from edgesec.access.radius_dictionary import pyrad_dictionary

SECRET = b"s3cret"
D = pyrad_dictionary()
CLIENT = ("127.0.0.1", 40000)


@dataclass
class Adm:
    accept: bool
    vlan: int = 0
    psk: str = ""
    label: str = ""
    reason: str = ""


@dataclass
class FakePolicy:
    table: dict[str, Adm] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    fail: bool = False

    def admit(self, mac: str, passphrase: str | None = None) -> Adm:
        self.calls.append((mac, passphrase))
        if self.fail:
            raise RuntimeError("database is locked")
        return self.table.get(mac, Adm(False, reason="unknown"))


def server(policy: FakePolicy, **kw) -> RadiusServer:
    cfg = RadiusConfig(secret=SECRET, clients=ipaddress.IPv4Network("127.0.0.0/30"),
                       default_psk="global-passphrase", **kw)
    return RadiusServer(cfg, policy)


def hostapd_request(mac: str, secret: bytes = SECRET, password: str | None = None,
                    with_ma: bool = True, user: str | None = None) -> AuthPacket:
    """An Access-Request shaped like hostapd's MAC-ACL query (macaddr_acl=2)."""
    plain = mac.replace(":", "").lower()
    pkt = AuthPacket(secret=secret, dict=D)
    pkt["User-Name"] = user if user is not None else plain
    pkt["User-Password"] = pkt.PwCrypt(password if password is not None else plain)
    pkt["Calling-Station-Id"] = mac.replace(":", "-").upper()
    pkt["NAS-IP-Address"] = "127.0.0.1"
    pkt["Called-Station-Id"] = "02-00-00-00-00-01:edgesec"
    pkt["NAS-Port-Type"] = "Wireless-802.11"
    if with_ma:
        pkt.add_message_authenticator()
    return pkt


def answer(srv: RadiusServer, pkt: AuthPacket, addr=CLIENT) -> AuthPacket | None:
    raw = pkt.RequestPacket()
    out = srv.handle(raw, addr)
    if out is None:
        return None
    rep = pkt.CreateReply(packet=out)
    rep.request_authenticator = pkt.authenticator
    assert pkt.VerifyReply(rep, out, enforce_ma=True), "reply must verify with its MA"
    return rep


MAC = "aa:bb:cc:00:00:01"


def test_accept_with_vlan_and_device_psk() -> None:
    pol = FakePolicy({MAC: Adm(True, 7, "device-own-passphrase")})
    rep = answer(server(pol), hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_ACCEPT
    assert rep["Tunnel-Private-Group-Id"] == ["7"]
    assert rep["Tunnel-Type"] == ["VLAN"] and rep["Tunnel-Medium-Type"] == ["IEEE-802"]
    assert rep["Tunnel-Password"] == ["device-own-passphrase"]
    assert pol.calls == [(MAC, None)], "a User-Password equal to the MAC is no passphrase"


def test_accept_falls_back_to_ap_passphrase() -> None:
    rep = answer(server(FakePolicy({MAC: Adm(True, 3, "")})), hostapd_request(MAC))
    assert rep is not None and rep["Tunnel-Password"] == ["global-passphrase"]


def test_reject_has_no_tunnel_attributes() -> None:
    rep = answer(server(FakePolicy()), hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    assert "Tunnel-Password" not in rep and "Tunnel-Private-Group-Id" not in rep


def test_missing_ma_dropped_or_warned() -> None:
    pol = FakePolicy({MAC: Adm(True, 1, "p" * 10)})
    strict = server(pol)
    assert answer(strict, hostapd_request(MAC, with_ma=False)) is None
    assert strict.counters.missing_authenticator == 1 and pol.calls == []
    lax = server(pol, require_message_authenticator=False)
    rep = answer(lax, hostapd_request(MAC, with_ma=False))
    assert rep is not None and rep.code == rc.ACCESS_ACCEPT


def test_wrong_secret_and_bad_ma_dropped_even_in_warn_mode() -> None:
    pol = FakePolicy({MAC: Adm(True, 1, "p" * 10)})
    for srv in (server(pol), server(pol, require_message_authenticator=False)):
        assert answer(srv, hostapd_request(MAC, secret=b"wrong")) is None
        assert srv.counters.bad_authenticator == 1
    raw = bytearray(hostapd_request(MAC).RequestPacket())
    raw[-1] ^= 0xFF  # tamper with the last attribute after signing
    assert server(pol).handle(bytes(raw), CLIENT) is None
    assert pol.calls == []


def test_client_outside_network_dropped() -> None:
    pol = FakePolicy({MAC: Adm(True, 1, "p" * 10)})
    srv = server(pol)
    assert answer(srv, hostapd_request(MAC), ("127.0.0.9", 1)) is None
    assert answer(srv, hostapd_request(MAC), ("::1", 1)) is None
    assert srv.counters.unknown_client == 2 and pol.calls == []
    assert answer(srv, hostapd_request(MAC), ("127.0.0.3", 1)) is not None


def test_duplicate_gets_cached_reply_without_second_decision() -> None:
    pol = FakePolicy({MAC: Adm(True, 1, "p" * 10)})
    srv = server(pol)
    raw = hostapd_request(MAC).RequestPacket()
    first = srv.handle(raw, CLIENT)
    second = srv.handle(raw, CLIENT)
    assert first is not None and first == second
    assert len(pol.calls) == 1 and srv.counters.duplicates == 1
    # same id/authenticator from another source port is a different request
    assert srv.handle(raw, ("127.0.0.1", 40001)) is not None
    assert len(pol.calls) == 2


def test_duplicate_cache_expires() -> None:
    now = [0.0]
    pol = FakePolicy({MAC: Adm(True, 1, "p" * 10)})
    srv = RadiusServer(RadiusConfig(secret=SECRET), pol, clock=lambda: now[0])
    raw = hostapd_request(MAC).RequestPacket()
    srv.handle(raw, CLIENT)
    now[0] = 1000.0
    srv.handle(raw, CLIENT)
    assert len(pol.calls) == 2


def test_ticket_passphrase_passed_to_policy() -> None:
    pol = FakePolicy({MAC: Adm(True, 9, "1234567890123456", label="cam")})
    rep = answer(server(pol), hostapd_request(MAC, password="1234567890123456"))
    assert rep is not None and rep.code == rc.ACCESS_ACCEPT
    assert pol.calls == [(MAC, "1234567890123456")]


def test_mac_mismatch_and_missing_fields_rejected() -> None:
    pol = FakePolicy({MAC: Adm(True, 1, "p" * 10)})
    rep = answer(server(pol), hostapd_request(MAC, user="aabbcc000002"))
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    pkt = AuthPacket(secret=SECRET, dict=D)
    pkt["User-Name"] = "aabbcc000001"
    pkt.add_message_authenticator()
    rep = answer(server(pol), pkt)  # no User-Password
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    assert pol.calls == []


def test_policy_failure_is_a_reject() -> None:
    pol = FakePolicy({MAC: Adm(True, 1, "p" * 10)}, fail=True)
    srv = server(pol)
    rep = answer(srv, hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    assert srv.counters.policy_errors == 1


def test_vlan_out_of_range_rejected() -> None:
    rep = answer(server(FakePolicy({MAC: Adm(True, 5000, "p" * 10)})), hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_REJECT


def test_other_codes_dropped() -> None:
    srv = server(FakePolicy())
    raw = bytearray(hostapd_request(MAC).RequestPacket())
    raw[0] = 4  # Accounting-Request
    assert srv.handle(bytes(raw), CLIENT) is None
    assert srv.counters.unknown_code == 1


def test_empty_secret_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        RadiusConfig(secret=b"")


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_fuzz_handle_random(data: bytes) -> None:
    srv = server(FakePolicy({MAC: Adm(True, 1, "p" * 10)}))
    out = srv.handle(data, CLIENT)
    assert out is None or out[0] in (rc.ACCESS_ACCEPT, rc.ACCESS_REJECT)


_VALID = hostapd_request(MAC).RequestPacket()


@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=4), st.integers(0, 40))
@settings(max_examples=300, deadline=None)
def test_fuzz_handle_mutations(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID)
    for pos, val in flips:
        data[pos] = val
    data = bytes(data[: len(data) - cut])
    srv = server(FakePolicy({MAC: Adm(True, 1, "p" * 10)}))
    out = srv.handle(data, CLIENT)
    if data != _VALID:
        # any change to a signed request breaks its Message-Authenticator: no answer
        assert out is None
    else:
        assert out is not None and out[0] == rc.ACCESS_ACCEPT


def test_service_over_udp() -> None:
    async def run() -> None:
        pol = FakePolicy({MAC: Adm(True, 4, "p" * 12)})
        svc = RadiusService(RadiusConfig(secret=SECRET, port=0), pol)
        await svc.start()
        assert svc.port != 0 and "listening" in svc.status()
        loop = asyncio.get_running_loop()
        pkt = hostapd_request(MAC)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.connect(("127.0.0.1", svc.port))
            await loop.sock_sendall(s, pkt.RequestPacket())
            out = await asyncio.wait_for(loop.sock_recv(s, 4096), 5)
            s.send(os.urandom(30))  # malformed: counted, server survives
            await loop.sock_sendall(s, hostapd_request(MAC).RequestPacket())
            out2 = await asyncio.wait_for(loop.sock_recv(s, 4096), 5)
        assert out[0] == rc.ACCESS_ACCEPT and out2[0] == rc.ACCESS_ACCEPT
        assert svc.protocol.counters.malformed == 1
        await svc.stop()
        assert svc.status() == "stopped"

    asyncio.run(run())
