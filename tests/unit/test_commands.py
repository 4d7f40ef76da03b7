"""Every supervisor command through the real :class:`SupervisorServer.handle`.

Success paths check the reply *and* the durable state (a second SQLite
connection sees the change); bad-input paths check that the reply is
``FAIL\\n`` and that nothing changed.  The last tests fuzz parse + dispatch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from edgesec.config import parse_settings
from edgesec.events import EventBus
from edgesec.registry import Registry
from edgesec.store import Store
from edgesec.supervisor.commands import CommandTable, NetworkCommands, Request
from edgesec.supervisor.protocol import DeviceLine, parse_device_line
from edgesec.supervisor.server import SupervisorServer

CONFIG = "\n".join([
    "[system]", "defaultOpenVlanId = 1", "allowAllConnections = false",
    "[interfaces]",
    *(f'if{v} = "{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0"' for v in range(1, 6)),
])
A, B, C = "11:22:33:44:55:66", "aa:bb:cc:dd:ee:ff", "00:01:02:03:04:05"
PEER = "\0client"  # an abstract UNIX address, as our client binds


class Harness:
    """A registry on a real SQLite file, the command table and the server's handle()."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "connections.sqlite"
        self.settings = parse_settings(CONFIG)
        self.bus = EventBus()
        self.events: list = []
        self.bus.subscribe(self.events.append)
        self.store = Store(self.db)
        self.registry = Registry(self.settings, self.store, self.bus)
        self.table = CommandTable()
        NetworkCommands(self.registry).install(self.table)
        self.server = SupervisorServer(self.table, self.bus, None)

    def send(self, data: bytes | str, peer: object = PEER, channel: str = "unix") -> str:
        raw = data.encode() if isinstance(data, str) else data
        reply = self.server.handle(raw, peer, channel)  # type: ignore[arg-type]
        assert reply is not None
        return reply.decode()

    def device_line(self, mac: str) -> DeviceLine:
        line = parse_device_line(self.send(f"GET_MAP {mac}"))
        assert line is not None
        return line

    def durable_rows(self) -> dict[str, tuple]:
        """What another process would read from the DB right now."""
        other = Store(self.db)
        try:
            return {r.mac: r for r in other.load_devices()}
        finally:
            other.close()


@pytest.fixture
def h(tmp_path: Path):
    harness = Harness(tmp_path)
    yield harness
    harness.store.close()


# -- success paths -------------------------------------------------------------------


def test_ping(h: Harness) -> None:
    assert h.send("PING_SUPERVISOR") == "PONG\n"
    assert h.send("PING_SUPERVISOR\n") == "PONG\n"


def test_accept_mac_is_durable_and_normalised(h: Harness) -> None:
    assert h.send("ACCEPT_MAC 11-22-33-44-55-66 3") == "OK\n"
    line = h.device_line(A)
    assert (line.allow, line.mac, line.vlanid) == ("a", A, "3")
    assert re.fullmatch(r"[0-9a-f-]{36}", line.id)
    row = h.durable_rows()[A]
    assert row.allow and row.vlanid == 3 and row.id == line.id


def test_deny_mac(h: Harness) -> None:
    assert h.send(f"ACCEPT_MAC {A} 2") == "OK\n"
    assert h.send(f"DENY_MAC {A}") == "OK\n"
    assert h.device_line(A).allow == "d"
    assert not h.durable_rows()[A].allow


def test_add_and_remove_nat(h: Harness) -> None:
    assert h.send(f"ADD_NAT {A}") == "OK\n"
    assert h.device_line(A).nat == "1" and h.durable_rows()[A].nat
    assert h.send(f"REMOVE_NAT {A}") == "OK\n"
    assert h.device_line(A).nat == "0" and not h.durable_rows()[A].nat


def test_assign_and_clear_psk(h: Harness) -> None:
    assert h.send(f"ASSIGN_PSK {A} device-passphrase") == "OK\n"
    assert h.device_line(A).has_psk == "1"
    assert h.durable_rows()[A].psk == "device-passphrase"
    assert h.send(f"CLEAR_PSK {A}") == "OK\n"
    assert h.device_line(A).has_psk == "0" and h.durable_rows()[A].psk == ""


def test_get_map_unknown_and_get_all(h: Harness) -> None:
    assert h.send(f"GET_MAP {A}") == "OK\n"
    assert h.send("GET_ALL") == "OK\n"
    h.send(f"ACCEPT_MAC {A} 1")
    h.send(f"DENY_MAC {B}")
    lines = h.send("GET_ALL").splitlines()
    assert [ln.split(",")[:2] for ln in lines] == [["a", A], ["d", B]]
    assert h.send(f"GET_MAP {B}") == lines[1] + "\n"


def test_set_ip_slots_and_events(h: Harness) -> None:
    h.send(f"ACCEPT_MAC {A} 1")
    assert h.send(f"SET_IP add {A} 10.0.1.10") == "OK\n"
    assert h.send(f"SET_IP old {A} 10.0.1.11") == "OK\n"
    line = h.device_line(A)
    assert (line.primary_ip, line.secondary_ip) == ("10.0.1.10", "10.0.1.11")
    assert h.durable_rows()[A].primaryip == "10.0.1.10"
    ip_events = [(e.data["ip"], e.data["type"], e.data["primary"]) for e in h.events
                 if e.kind == "ip"]
    assert ip_events == [("10.0.1.10", 1, 1), ("10.0.1.11", 2, 0)]
    assert h.send(f"SET_IP del {A} 10.0.1.10") == "OK\n"
    assert h.device_line(A)[2:4] == ("", "10.0.1.11")  # primary, secondary


def test_set_ip_arp_is_ignored_and_type_prefix_counts(h: Harness) -> None:
    assert h.send(f"SET_IP arp-add {A} 10.0.1.10") == "OK\n"
    assert h.send(f"GET_MAP {A}") == "OK\n"  # nothing was recorded
    assert h.send(f"SET_IP address {A} 10.0.2.10") == "OK\n"  # first three letters: add
    assert h.device_line(A).primary_ip == "10.0.2.10"


def test_bridges_by_mac_and_by_ip(h: Harness) -> None:
    assert h.send("GET_BRIDGES") == "OK\n"
    assert h.send(f"ADD_BRIDGE {B} {A}") == "OK\n"
    assert h.send(f"ADD_BRIDGE {A} {B}") == "OK\n"  # unordered pair: no duplicate
    assert h.send("GET_BRIDGES") == f"{A},{B}\n"
    h.send(f"SET_IP add {A} 10.0.1.5")
    h.send(f"SET_IP add {C} 10.0.1.6")
    assert h.send("ADD_BRIDGE 10.0.1.5 10.0.1.6") == "OK\n"
    assert set(h.send("GET_BRIDGES").splitlines()) == {f"{A},{B}", f"{C},{A}"}
    assert h.send(f"REMOVE_BRIDGE {B} {A}") == "OK\n"
    assert h.send("GET_BRIDGES") == f"{C},{A}\n"
    assert h.send(f"REMOVE_BRIDGE {B} {A}") == "OK\n"  # absent bridge: still OK (original)
    h.send(f"ADD_BRIDGE {B} {C}")
    assert h.send(f"CLEAR_BRIDGE {C}") == "OK\n"
    assert h.send("GET_BRIDGES") == "OK\n"
    kinds = [e.kind for e in h.events if e.kind.startswith("bridge")]
    assert kinds.count("bridge_added") == 3 and kinds.count("bridge_removed") == 3


def test_register_ticket(h: Harness) -> None:
    reply = h.send(f"REGISTER_TICKET {A} camera 4")
    assert re.fullmatch(r"\d{16}\n", reply)
    second = h.send(f"REGISTER_TICKET {A} door 5")
    assert re.fullmatch(r"\d{16}\n", second) and second != reply
    assert h.registry.admit(C, reply.strip()).vlan == 4


def test_subscribe_and_unsubscribe_events(h: Harness) -> None:
    assert h.send("SUBSCRIBE_EVENTS") == "OK\n"
    assert h.send("SUBSCRIBE_EVENTS") == "OK\n"  # idempotent
    assert list(h.server.subscribers) == [("unix", PEER)]
    assert h.send("UNSUBSCRIBE_EVENTS") == "OK\n"
    assert not h.server.subscribers
    # an unbound UNIX client has no address that events could reach
    assert h.send("SUBSCRIBE_EVENTS", peer=None) == "FAIL\n"


# -- bad input ---------------------------------------------------------------------------

# command -> a valid argument list (for arity tests)
VALID_ARGS = {
    "PING_SUPERVISOR": [],
    "SUBSCRIBE_EVENTS": [],
    "UNSUBSCRIBE_EVENTS": [],
    "SET_IP": ["add", A, "10.0.1.2"],
    "ACCEPT_MAC": [A, "1"],
    "DENY_MAC": [A],
    "ADD_NAT": [A],
    "REMOVE_NAT": [A],
    "ASSIGN_PSK": [A, "passphrase1"],
    "CLEAR_PSK": [A],
    "GET_MAP": [A],
    "GET_ALL": [],
    "ADD_BRIDGE": [A, B],
    "REMOVE_BRIDGE": [A, B],
    "CLEAR_BRIDGE": [A],
    "GET_BRIDGES": [],
    "REGISTER_TICKET": [A, "label", "1"],
    "REMOVE_DEVICE": [A],
}


# covered by tests/unit/test_group_commands.py (they need known devices)
GROUP_COMMANDS = {"ADD_GROUP_MEMBER", "REMOVE_GROUP_MEMBER", "GET_GROUPS", "ADD_ACCESS",
                  "REMOVE_ACCESS", "GET_ACCESS"}


def test_every_command_is_covered(h: Harness) -> None:
    assert set(h.table.entries) == set(VALID_ARGS) | GROUP_COMMANDS


@pytest.mark.parametrize("name", sorted(VALID_ARGS))
def test_valid_arguments_succeed(h: Harness, name: str) -> None:
    if name == "REMOVE_DEVICE":
        assert h.send(f"ACCEPT_MAC {A} 1") == "OK\n"  # it removes an existing device
    reply = h.send(" ".join([name, *VALID_ARGS[name]]))
    assert reply != "FAIL\n" and reply.endswith("\n")


@pytest.mark.parametrize("name", sorted(VALID_ARGS))
def test_extra_argument_fails(h: Harness, name: str) -> None:
    assert h.send(" ".join([name, *VALID_ARGS[name], "extra"])) == "FAIL\n"
    assert h.send("GET_ALL") == "OK\n"  # nothing was created


@pytest.mark.parametrize("name", sorted(n for n, a in VALID_ARGS.items() if a))
def test_missing_argument_fails(h: Harness, name: str) -> None:
    args = VALID_ARGS[name]
    for count in range(len(args)):
        assert h.send(" ".join([name, *args[:count]])) == "FAIL\n"
    assert h.send("GET_ALL") == "OK\n"


BAD_MACS = ["11:22:33:44:55", "11:22:33:44:55:66:77", "11:22:33:44:55:6g", "112233445566xx",
            "11:22-33:44:55:66", "", "ff:ff:ff:ff:ff:ff:", "\u0661\u0661:22:33:44:55:66"]


@pytest.mark.parametrize("bad", BAD_MACS)
@pytest.mark.parametrize("template", [
    "SET_IP add {m} 10.0.1.2", "ACCEPT_MAC {m} 1", "DENY_MAC {m}", "ADD_NAT {m}",
    "REMOVE_NAT {m}", "ASSIGN_PSK {m} passphrase1", "CLEAR_PSK {m}", "GET_MAP {m}",
    "ADD_BRIDGE {m} " + A, "ADD_BRIDGE " + A + " {m}", "REMOVE_BRIDGE {m} " + A,
    "CLEAR_BRIDGE {m}", "REGISTER_TICKET {m} label 1", "REMOVE_DEVICE {m}",
])
def test_bad_mac_fails(h: Harness, template: str, bad: str) -> None:
    assert h.send(template.format(m=bad)) == "FAIL\n"
    assert h.send("GET_ALL") == "OK\n" and h.send("GET_BRIDGES") == "OK\n"
    assert h.registry.tickets() == []


@pytest.mark.parametrize("vlan", ["99", "-1", "4095", "x", "1.0", "", "\u00b2", "0x1", " 1"])
def test_bad_vlan_fails(h: Harness, vlan: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert h.send(f"ACCEPT_MAC {A} {vlan}") == "FAIL\n"
    assert h.send(f"REGISTER_TICKET {A} label {vlan}") == "FAIL\n"
    assert h.send("GET_ALL") == "OK\n" and h.registry.tickets() == []
    # refused as bad input, not as a handler crash
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("command", [
    f"SET_IP add {A} 10.0.9.2",        # in no configured subnet
    f"SET_IP add {A} 10.0.1.256",      # not an address
    f"SET_IP add {A} fe80::1",         # IPv6 is not a lease the original records
    f"SET_IP tftp {A} 10.0.1.2",       # unknown lease type
    f"ASSIGN_PSK {A} short",           # WPA passphrases are 8-63 characters
    f"ASSIGN_PSK {A} {'x' * 64}",      # 64 characters must be hex
    f"ADD_BRIDGE {A} {A}",             # a device with itself
    f"ADD_BRIDGE {A} 10.0.1.2",        # mixed MAC and IP
    "ADD_BRIDGE 10.0.1.2 10.0.1.3",    # IPs of no known device
    f"REGISTER_TICKET {A} {'l' * 255} 1",  # label too long
])
def test_bad_values_fail_without_side_effects(h: Harness, command: str) -> None:
    assert h.send(command) == "FAIL\n"
    assert h.send("GET_ALL") == "OK\n" and h.send("GET_BRIDGES") == "OK\n"


@pytest.mark.parametrize("data", [
    b"", b"\n", b" ", b"NO_SUCH_COMMAND", b"ping_supervisor", b"GET_ALL\0", b"\xff\xfe\xfd",
    "G\u00c9T_ALL".encode("latin-1"), b"GET_MAP " + b"a" * 65536, b"x" * 65536,
    b" PING_SUPERVISOR", b"PUT_CRYPT key dmFsdWU",
])
def test_malformed_datagrams_fail_and_are_counted(h: Harness, data: bytes) -> None:
    before = h.server.malformed
    assert h.send(data) == "FAIL\n"
    assert h.send("PING_SUPERVISOR") == "PONG\n"  # still serving
    unknown_command = data.strip() and data.isascii() and b"\0" not in data \
        and not data.startswith(b" ") and len(data) < 32768
    assert h.server.malformed == before + (0 if unknown_command else 1)


def test_malformed_log_lines_are_rate_limited(h: Harness, caplog: pytest.LogCaptureFixture
                                              ) -> None:
    caplog.set_level("WARNING", logger="edgesec.supervisor.server")
    for _ in range(100):
        h.send(b"\xff")
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert 1 <= len(lines) <= 10
    assert h.server.malformed == 100


def test_handler_crash_is_contained(h: Harness) -> None:
    def boom(_q: Request) -> str:
        raise RuntimeError("bug")

    h.table.register("BOOM", boom, (0,))
    assert h.send("BOOM") == "FAIL\n"
    assert h.send("PING_SUPERVISOR") == "PONG\n"


def test_secret_command_refused_on_plain_udp(h: Harness) -> None:
    h.table.register("SECRET", lambda _q: "s3cret\n", (0,), secret=True)
    assert h.send("SECRET", peer=("127.0.0.1", 5000), channel="udp") == "FAIL\n"
    assert h.send("SECRET") == "s3cret\n"


# -- fuzzing -------------------------------------------------------------------------------

REPLY = re.compile(r"(OK|FAIL|PONG|\d{16})\n|([ad],[0-9a-f:]{17},[^\n]*\n)+"
                   r"|([0-9a-f:]{17},[0-9a-f:]{17}\n)+")
WORDS = st.sampled_from([*VALID_ARGS, "", A, B, "1", "4094", "add", "del", "10.0.1.7",
                         "ff:ff:ff:ff:ff:ff", "label", "passphrase1", "\u00e9", "\0"])


@pytest.fixture(scope="module")
def fuzz_harness(tmp_path_factory: pytest.TempPathFactory):
    harness = Harness(tmp_path_factory.mktemp("fuzz"))
    yield harness
    harness.store.close()


@hsettings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(st.one_of(st.binary(max_size=200),
                 st.lists(WORDS, min_size=1, max_size=5).map(lambda w: " ".join(w).encode())))
def test_fuzz_parse_and_dispatch(fuzz_harness: Harness, data: bytes) -> None:
    reply = fuzz_harness.send(data)
    assert REPLY.fullmatch(reply), reply
