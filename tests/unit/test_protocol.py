"""The supervisor's text protocol: request parsing, reply/event formatting, authenticated UDP.

Formats are checked byte for byte against the original's (SPEC.md §2,
ORIGINAL_FACTS.md §1.5-1.6); the authenticated framing against its design in
docs/supervisor.md, including replay and timestamp-window rejection through
the real :meth:`SupervisorServer.handle`.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesec.events import EventBus
from edgesec.registry import Bridge, Device
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable
from edgesec.supervisor.server import ConfigurationError, SupervisorServer

KEY = b"correct horse battery staple"
UUID = "0b0c7a36-3f0e-4d3a-9d83-2bb1b8a1d6c4"


# -- request parsing ---------------------------------------------------------------


@pytest.mark.parametrize(("data", "name", "args"), [
    (b"PING_SUPERVISOR", "PING_SUPERVISOR", ()),
    (b"PING_SUPERVISOR\n", "PING_SUPERVISOR", ()),
    (b"GET_ALL\r\n", "GET_ALL", ()),
    (b"ACCEPT_MAC 11:22:33:44:55:66 2", "ACCEPT_MAC", ("11:22:33:44:55:66", "2")),
    (b"SET_IP add 11:22:33:44:55:66 10.0.1.3 \t\n", "SET_IP",
     ("add", "11:22:33:44:55:66", "10.0.1.3")),
    # single spaces separate words: a double space is an empty argument (rejected later)
    (b"DENY_MAC  11:22:33:44:55:66", "DENY_MAC", ("", "11:22:33:44:55:66")),
    ("REGISTER_TICKET 11:22:33:44:55:66 caf\u00e9 3".encode(), "REGISTER_TICKET",
     ("11:22:33:44:55:66", "caf\u00e9", "3")),
])
def test_parse_command_splits_words(data: bytes, name: str, args: tuple[str, ...]) -> None:
    assert proto.parse_command(data) == proto.Command(name, args)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b" \n\t", "blank"),
    (b" PING_SUPERVISOR", "space"),
    (b"PING\0_SUPERVISOR", "NUL"),
    (b"GET_MAP \xff\xfe", "UTF-8"),
    (b"A" * (proto.MAX_DATAGRAM + 1), "exceeds"),
    (b"GET_ALL " + b"x" * 65536, "exceeds"),
])
def test_parse_command_rejects_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(proto.ProtocolError, match=reason):
        proto.parse_command(data)


def test_parse_command_accepts_the_largest_datagram() -> None:
    data = b"GET_MAP " + b"a" * (proto.MAX_DATAGRAM - 8)
    assert len(data) == proto.MAX_DATAGRAM
    assert proto.parse_command(data).name == "GET_MAP"


@given(st.binary(max_size=300))
def test_parse_command_fuzz_only_protocol_errors(data: bytes) -> None:
    try:
        cmd = proto.parse_command(data)
    except proto.ProtocolError:
        return
    assert cmd.name and " " not in cmd.name and "\0" not in cmd.name
    assert " ".join((cmd.name, *cmd.args)) == data.decode().rstrip(proto.TRAILING)


# -- reply formatting ----------------------------------------------------------------


def test_device_line_has_the_originals_eleven_fields() -> None:
    dev = Device(mac="00:01:02:03:04:05", allow=True, vlanid=2, nat=True, psk="secret-pass",
                 primary_ip="10.0.2.7", secondary_ip="10.0.2.8", label="cam", id=UUID,
                 join_ts=1664194593636003, status=1)
    line = proto.format_device(dev)
    assert line == (f"a,00:01:02:03:04:05,10.0.2.7,10.0.2.8,2,1,cam,{UUID},1,"
                    "1664194593636003,1\n")
    assert len(line.rstrip("\n").split(",")) == 11


def test_device_line_of_a_denied_device_without_ips_or_psk() -> None:
    dev = Device(mac="aa:bb:cc:dd:ee:ff", allow=False, vlanid=0, id=UUID, status=2)
    assert proto.format_device(dev) == f"d,aa:bb:cc:dd:ee:ff,,,0,0,,{UUID},0,0,2\n"


def test_device_list_and_empty_list() -> None:
    a = Device(mac="00:00:00:00:00:01", id=UUID)
    b = Device(mac="00:00:00:00:00:02", id=UUID, allow=False)
    assert proto.format_devices([]) == "OK\n"
    assert proto.format_devices([a, b]) == proto.format_device(a) + proto.format_device(b)


def test_bridge_lines_from_pairs_and_records() -> None:
    assert proto.format_bridges([]) == "OK\n"
    pairs = [("00:00:00:00:00:01", "00:00:00:00:00:02")]
    records = [Bridge("00:00:00:00:00:01", "00:00:00:00:00:02", "mdns")]
    expected = "00:00:00:00:00:01,00:00:00:00:00:02\n"
    assert proto.format_bridges(pairs) == expected
    assert proto.format_bridges(records) == expected


# -- events ----------------------------------------------------------------------------

MAC = "11:22:33:44:55:66"


@pytest.mark.parametrize(("kind", "data", "line"), [
    ("ip", {"ip": "10.0.1.23", "type": 1, "primary": 1}, f"IP {MAC} 10.0.1.23 1 1\n"),
    ("ip", {"ip": "10.0.1.24", "type": 2, "primary": 0}, f"IP {MAC} 10.0.1.24 2 0\n"),
    ("ap", {"status": 1}, f"AP {MAC} 1\n"),
    ("ap", {"status": 2}, f"AP {MAC} 2\n"),
    ("bridge_added", {"peer": "aa:bb:cc:dd:ee:ff", "reason": "manual"},
     f"BRIDGE_ADDED {MAC} aa:bb:cc:dd:ee:ff manual\n"),
    ("bridge_removed", {"peer": "aa:bb:cc:dd:ee:ff", "reason": "mdns expired"},
     f"BRIDGE_REMOVED {MAC} aa:bb:cc:dd:ee:ff mdns_expired\n"),
    ("bridge_removed", {"peer": "aa:bb:cc:dd:ee:ff", "reason": ""},
     f"BRIDGE_REMOVED {MAC} aa:bb:cc:dd:ee:ff -\n"),
    ("mdns", {"text": "QUERY printer.local"}, "MDNS QUERY printer.local\n"),
    ("firewall_healed", {"family": "inet", "table": "edgesec", "heals": 3,
                         "reason": "table\ndeleted"},
     "FIREWALL_HEALED inet edgesec 3 table_deleted\n"),
    ("device", {"device": None, "removed": object(), "reason": "reclaimed"},
     f"DEVICE_REMOVED {MAC} reclaimed\n"),
])
def test_event_lines(kind: str, data: dict, line: str) -> None:
    assert proto.format_event(kind, MAC, data) == line


@pytest.mark.parametrize(("kind", "data"), [
    ("ip", {"ip": "10.0.1.23", "type": 3, "primary": 1}),  # the original sends no DEL event
    ("device", {"device": None}),
    ("mdns", {"other": 1}),
    ("nonsense", {}),
])
def test_events_not_forwarded(kind: str, data: dict) -> None:
    assert proto.format_event(kind, MAC, data) is None


# -- authenticated UDP framing -------------------------------------------------------------


def test_signed_request_round_trip_and_layout() -> None:
    data, nonce = proto.sign_request(KEY, "GET_ALL", now=1_700_000_000, nonce="00112233445566ff")
    assert nonce == "00112233445566ff"
    head = "EDGESEC1 1700000000 00112233445566ff"
    tag = hmac.new(KEY, f"{head} GET_ALL".encode(), hashlib.sha256).hexdigest()
    assert data == f"{head} {tag} GET_ALL".encode()
    assert proto.verify_request(KEY, data, now=1_700_000_010) == (
        "GET_ALL", "00112233445566ff", 1_700_000_000)


def test_signed_request_keeps_spaces_of_the_command() -> None:
    data, nonce = proto.sign_request(KEY, "ACCEPT_MAC 11:22:33:44:55:66 3", now=100)
    assert proto.verify_request(KEY, data, now=100)[0] == "ACCEPT_MAC 11:22:33:44:55:66 3"
    assert len(nonce) == 16


@pytest.mark.parametrize("now_offset", [proto.AUTH_WINDOW_S + 1, -(proto.AUTH_WINDOW_S + 1)])
def test_request_outside_the_time_window_is_refused(now_offset: int) -> None:
    data, _ = proto.sign_request(KEY, "PING_SUPERVISOR", now=1_000_000)
    with pytest.raises(proto.ProtocolError, match="window"):
        proto.verify_request(KEY, data, now=1_000_000 + now_offset)


def test_request_with_wrong_key_or_tampered_command_is_refused() -> None:
    data, _ = proto.sign_request(KEY, "DENY_MAC 11:22:33:44:55:66", now=50)
    with pytest.raises(proto.ProtocolError, match="HMAC"):
        proto.verify_request(b"another key", data, now=50)
    tampered = data.replace(b"DENY_MAC", b"ADD_NAT ")
    with pytest.raises(proto.ProtocolError, match="HMAC"):
        proto.verify_request(KEY, tampered, now=50)
    # moving the timestamp invalidates the HMAC too
    tampered_ts = data.replace(b" 50 ", b" 51 ", 1)
    with pytest.raises(proto.ProtocolError, match="HMAC"):
        proto.verify_request(KEY, tampered_ts, now=50)


@pytest.mark.parametrize("data", [
    b"PING_SUPERVISOR",
    b"EDGESEC1 100 0011223344556677 PING_SUPERVISOR",
    b"EDGESEC0 100 0011223344556677 " + b"0" * 64 + b" PING_SUPERVISOR",
    b"EDGESEC1 1x0 0011223344556677 " + b"0" * 64 + b" PING_SUPERVISOR",
    b"EDGESEC1 100 00112233445566 " + b"0" * 64 + b" PING_SUPERVISOR",
    b"EDGESEC1 100 00112233445566GG " + b"0" * 64 + b" PING_SUPERVISOR",
    "EDGESEC1 \u00b2 0011223344556677 ".encode() + b"0" * 64 + b" PING_SUPERVISOR",
    "EDGESEC1 100 0011223344556677 \u00e9\u00e9 PING_SUPERVISOR".encode(),
    b"EDGESEC1 100 0011223344556677 \xff PING",
])
def test_malformed_authentication_header_is_refused(data: bytes) -> None:
    with pytest.raises(proto.ProtocolError):
        proto.verify_request(KEY, data, now=100)


@given(st.binary(max_size=200))
def test_verify_request_fuzz_only_protocol_errors(data: bytes) -> None:
    with pytest.raises(proto.ProtocolError):
        proto.verify_request(KEY, data, now=100)


@given(st.text(max_size=120))
def test_verify_request_fuzz_text_after_magic(rest: str) -> None:
    with pytest.raises(proto.ProtocolError):
        proto.verify_request(KEY, f"EDGESEC1 {rest}".encode(), now=100)


def test_reply_framing_binds_the_request_nonce() -> None:
    signed = proto.sign_reply(KEY, "00112233445566ff", "OK\n")
    assert signed.startswith(b"EDGESEC1 00112233445566ff ")
    assert proto.verify_reply(KEY, "00112233445566ff", signed) == "OK\n"
    with pytest.raises(proto.ProtocolError, match="does not answer"):
        proto.verify_reply(KEY, "ffffffffffffffff", signed)
    with pytest.raises(proto.ProtocolError, match="HMAC"):
        proto.verify_reply(KEY, "00112233445566ff", signed.replace(b"OK", b"NO"))
    with pytest.raises(proto.ProtocolError):
        proto.verify_reply(KEY, "00112233445566ff",
                           "EDGESEC1 00112233445566ff \u00e9 OK\n".encode())


# -- framing through the server (replay, no oracle) --------------------------------------


def _auth_server() -> SupervisorServer:
    table = CommandTable()
    table.register("PING_SUPERVISOR", lambda _q: proto.PONG, (0,))
    return SupervisorServer(table, EventBus(), None, "192.0.2.1", 32001, key=KEY)


def test_authenticated_channel_answers_signed_requests_once() -> None:
    server = _auth_server()
    data, nonce = proto.sign_request(KEY, "PING_SUPERVISOR")
    reply = server.handle(data, ("192.0.2.9", 4000), "udp-auth")
    assert reply is not None
    assert proto.verify_reply(KEY, nonce, reply) == "PONG\n"
    # the same datagram again is a replay: silently dropped
    assert server.handle(data, ("192.0.2.9", 4000), "udp-auth") is None
    assert server.malformed == 1


def test_authenticated_channel_drops_unsigned_stale_and_forged_requests() -> None:
    server = _auth_server()
    peer = ("192.0.2.9", 4000)
    assert server.handle(b"PING_SUPERVISOR", peer, "udp-auth") is None
    stale, _ = proto.sign_request(KEY, "PING_SUPERVISOR", now=1_000)
    assert server.handle(stale, peer, "udp-auth") is None
    forged, _ = proto.sign_request(b"not the key", "PING_SUPERVISOR")
    assert server.handle(forged, peer, "udp-auth") is None
    assert server.malformed == 3


def test_authenticated_malformed_command_gets_signed_fail() -> None:
    server = _auth_server()
    data, nonce = proto.sign_request(KEY, "NO_SUCH_COMMAND")
    reply = server.handle(data, ("192.0.2.9", 4000), "udp-auth")
    assert reply is not None and proto.verify_reply(KEY, nonce, reply) == "FAIL\n"


def test_non_loopback_udp_without_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="supervisorControlKey"):
        SupervisorServer(CommandTable(), EventBus(), None, "0.0.0.0", 32001)
    # without a key plain loopback UDP is off unless explicitly allowed
    off = SupervisorServer(CommandTable(), EventBus(), None, "127.0.0.1", 32001)
    assert off.udp_port == 0 and off.udp_off_reason == "no key"
    assert "udp=off (no key)" in off.status()
    plain = SupervisorServer(CommandTable(), EventBus(), None, "127.0.0.1", 32001,
                             allow_plain_udp=True)
    assert plain.udp_port == 32001 and not plain.udp_authenticated
    # the opt-in never opens a non-loopback address without a key
    with pytest.raises(ConfigurationError, match="supervisorControlKey"):
        SupervisorServer(CommandTable(), EventBus(), None, "0.0.0.0", 32001,
                         allow_plain_udp=True)
    # a configured key authenticates loopback UDP too
    keyed = SupervisorServer(CommandTable(), EventBus(), None, "127.0.0.1", 32001, key=KEY)
    assert keyed.udp_authenticated
