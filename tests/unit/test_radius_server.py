"""RADIUS server request path on a real registry (SQLite in memory).

The registry makes every decision (known device, denied device, tickets, the
AP passphrase as the default PSK); these tests check what the server does
around it: which requests reach the registry at all, what the replies carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad.packet import AuthPacket

from edgesec.access import radius_codec as rc
from edgesec.access.radius import RadiusConfig, RadiusServer, RadiusService
from edgesec.access.radius_dictionary import pyrad_dictionary
from edgesec.config import parse_settings
from edgesec.registry import Admission, Registry
from edgesec.store import Store

SECRET = b"s3cret"
D = pyrad_dictionary()
CLIENT = ("127.0.0.1", 40000)
CONFIG = """
[system]
defaultOpenVlanId = 1
[ap]
wpaPassphrase = "global-passphrase"
[interfaces]
""" + "".join(f'if{v} = "{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0"\n' for v in (1, 3, 4, 7, 9))


class Registered(Registry):
    """The real registry, remembering what it was asked (the server's side of the contract)."""

    def __init__(self, config: str = CONFIG) -> None:
        super().__init__(parse_settings(config), Store(":memory:"))
        self.calls: list[tuple[str, str | None]] = []

    def admit(self, mac: str, passphrase: str | None = None) -> Admission:
        self.calls.append((mac, passphrase))
        return super().admit(mac, passphrase)


def registry(vlan: int | None = 1, psk: str = "") -> Registered:
    """A registry that knows ``MAC`` on ``vlan`` (None: knows nothing)."""
    reg = Registered()
    if vlan is not None:
        reg.accept_mac(MAC, vlan)
        if psk:
            reg.assign_psk(MAC, psk)
    return reg


def server(policy: Registered, **kw) -> RadiusServer:
    cfg = RadiusConfig(secret=SECRET, clients=ipaddress.IPv4Network("127.0.0.0/30"), **kw)
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
    pol = registry(7, "device-own-passphrase")
    rep = answer(server(pol), hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_ACCEPT
    assert rep["Tunnel-Private-Group-Id"] == ["7"]
    assert rep["Tunnel-Type"] == ["VLAN"] and rep["Tunnel-Medium-Type"] == ["IEEE-802"]
    assert rep["Tunnel-Password"] == ["device-own-passphrase"]
    assert pol.calls == [(MAC, None)], "a User-Password equal to the MAC is no passphrase"


def test_accept_falls_back_to_ap_passphrase() -> None:
    """A device without its own PSK gets ``[ap] wpaPassphrase`` (decided by the registry)."""
    rep = answer(server(registry(3)), hostapd_request(MAC))
    assert rep is not None and rep["Tunnel-Private-Group-Id"] == ["3"]
    assert rep["Tunnel-Password"] == ["global-passphrase"]


def test_denied_device_is_rejected() -> None:
    pol = registry(3)
    pol.deny_mac(MAC)
    rep = answer(server(pol), hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_REJECT and "Tunnel-Password" not in rep


def test_reject_has_no_tunnel_attributes() -> None:
    pol = registry(None)
    rep = answer(server(pol), hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    assert "Tunnel-Password" not in rep and "Tunnel-Private-Group-Id" not in rep
    assert pol.get(MAC) is None, "a rejected stranger leaves no record"


def test_missing_ma_dropped_or_warned() -> None:
    pol = registry(1, "p" * 10)
    strict = server(pol)
    assert answer(strict, hostapd_request(MAC, with_ma=False)) is None
    assert strict.counters.missing_authenticator == 1 and pol.calls == []
    lax = server(pol, require_message_authenticator=False)
    rep = answer(lax, hostapd_request(MAC, with_ma=False))
    assert rep is not None and rep.code == rc.ACCESS_ACCEPT


def test_wrong_secret_and_bad_ma_dropped_even_in_warn_mode() -> None:
    pol = registry(1, "p" * 10)
    for srv in (server(pol), server(pol, require_message_authenticator=False)):
        assert answer(srv, hostapd_request(MAC, secret=b"wrong")) is None
        assert srv.counters.bad_authenticator == 1
    raw = bytearray(hostapd_request(MAC).RequestPacket())
    raw[-1] ^= 0xFF  # tamper with the last attribute after signing
    assert server(pol).handle(bytes(raw), CLIENT) is None
    assert pol.calls == []


def test_client_outside_network_dropped() -> None:
    pol = registry(1, "p" * 10)
    srv = server(pol)
    assert answer(srv, hostapd_request(MAC), ("127.0.0.9", 1)) is None
    assert answer(srv, hostapd_request(MAC), ("::1", 1)) is None
    assert srv.counters.unknown_client == 2 and pol.calls == []
    assert answer(srv, hostapd_request(MAC), ("127.0.0.3", 1)) is not None


def test_duplicate_gets_cached_reply_without_second_decision() -> None:
    pol = registry(1, "p" * 10)
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
    pol = registry(1, "p" * 10)
    srv = RadiusServer(RadiusConfig(secret=SECRET), pol, clock=lambda: now[0])
    raw = hostapd_request(MAC).RequestPacket()
    srv.handle(raw, CLIENT)
    now[0] = 1000.0
    srv.handle(raw, CLIENT)
    assert len(pol.calls) == 2


def test_ticket_passphrase_passed_to_policy() -> None:
    pol = registry(None)
    ticket = pol.register_ticket("aa:bb:cc:00:00:99", "cam", 9).passphrase
    rep = answer(server(pol), hostapd_request(MAC, password=ticket))
    assert rep is not None and rep.code == rc.ACCESS_ACCEPT
    assert rep["Tunnel-Private-Group-Id"] == ["9"] and rep["Tunnel-Password"] == [ticket]
    assert pol.calls == [(MAC, ticket)]
    dev = pol.get(MAC)
    assert dev is not None and dev.label == "cam" and dev.vlanid == 9


def test_mac_mismatch_and_missing_fields_rejected() -> None:
    pol = registry(1, "p" * 10)
    rep = answer(server(pol), hostapd_request(MAC, user="aabbcc000002"))
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    pkt = AuthPacket(secret=SECRET, dict=D)
    pkt["User-Name"] = "aabbcc000001"
    pkt.add_message_authenticator()
    rep = answer(server(pol), pkt)  # no User-Password
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    assert pol.calls == []


def test_policy_failure_is_a_reject() -> None:
    """The registry cannot record a new device (its database is gone): reject, count it."""
    pol = Registered(CONFIG.replace("[system]", "[system]\nallowAllConnections = true"))
    pol.store.db.close()
    srv = server(pol)
    rep = answer(srv, hostapd_request(MAC))
    assert rep is not None and rep.code == rc.ACCESS_REJECT
    assert srv.counters.policy_errors == 1


def test_other_codes_dropped() -> None:
    srv = server(registry())
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
    srv = server(registry(1, "p" * 10))
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
    srv = server(registry(1, "p" * 10))
    out = srv.handle(data, CLIENT)
    if data != _VALID:
        # any change to a signed request breaks its Message-Authenticator: no answer
        assert out is None
    else:
        assert out is not None and out[0] == rc.ACCESS_ACCEPT


def test_service_over_udp() -> None:
    async def run() -> None:
        pol = registry(4, "p" * 12)
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
