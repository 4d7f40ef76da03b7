"""Pure parts of the lab: the generated gateway config, the hostapd-style RADIUS
exchange against edgesec's server code, the status parsers and the state file."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesec.access import radius_codec as rc
from edgesec.access.radius import RadiusConfig, RadiusServer
from edgesec.config import parse_settings
from edgesec.lab import gwconfig, hostap, report
from edgesec.lab.state import DeviceState, LabState, check_prefix
from edgesec.registry import Admission, Device
from edgesec.supervisor.protocol import format_bridges, format_devices

SECRET = "lab-unit-secret"
MAC = "02:aa:bb:cc:dd:ee"


# -- gateway config ----------------------------------------------------------------


@pytest.mark.parametrize("devices", [0, 1, 5, 12, 50, 300, 1000])
def test_config_gives_every_device_its_own_subnet_with_a_dhcp_range(devices: int) -> None:
    s = parse_settings(gwconfig.render(devices, gwconfig.LabSecrets.generate()))
    pool = sorted(s.interfaces.pool_vlans)
    assert len(pool) >= devices
    nets = [s.interfaces.subnet_for_vlan(v).network for v in pool]
    assert len(set(nets)) == len(nets)
    for vlan in [*pool, gwconfig.OPEN_VLAN]:
        rng, sub = s.dhcp.range_for_vlan(vlan), s.interfaces.subnet_for_vlan(vlan)
        assert rng is not None and rng.first in sub.network and rng.last in sub.network
        assert sub.gateway not in (rng.first, rng.last)
    sysv = s.system
    assert sysv.allow_all_connections and sysv.allocate_vlans and sysv.exec_radius
    assert all((sysv.exec_firewall, sysv.exec_dhcp, sysv.exec_mdns_forward, sysv.exec_capture))
    assert s.nat.nat_interface == "wan0" and s.radius.server_ip == "127.0.0.1"
    assert gwconfig.check(s, devices) == []


def test_config_refuses_more_devices_than_vlans() -> None:
    with pytest.raises(ValueError):
        gwconfig.pool_prefix(5000)


# -- the hostapd side of RADIUS against edgesec's server code ------------------------


class Policy:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.asked: list[str] = []

    def admit(self, mac: str, passphrase: str | None = None) -> Admission:
        assert passphrase is None  # MAC auth: User-Password is the MAC
        self.asked.append(mac)
        return self.admission


def _exchange(admission: Admission) -> tuple[hostap.Verdict, Policy]:
    policy = Policy(admission)
    server = RadiusServer(
        RadiusConfig(secret=SECRET.encode()), policy
    )
    packet, auth = hostap.access_request(MAC, SECRET.encode(), 7)
    reply = server.handle(packet, ("127.0.0.1", 40000))
    assert reply is not None
    return hostap.parse_reply(reply, 7, auth, SECRET.encode()), policy


def test_accept_carries_vlan_and_psk() -> None:
    verdict, policy = _exchange(Admission(True, 117, "device-own-psk", "", "known"))
    assert verdict == hostap.Verdict(True, 117, "device-own-psk")
    assert policy.asked == [MAC]


def test_reject() -> None:
    verdict, _ = _exchange(Admission(False, reason="denied"))
    assert verdict == hostap.Verdict(False)


def test_request_looks_like_hostapd_macacl() -> None:
    packet, auth = hostap.access_request(MAC, SECRET.encode(), 3)
    req = rc.decode(packet)
    assert req.get(rc.USER_NAME) == b"02aabbccddee"
    assert req.get(rc.CALLING_STATION_ID) == b"02-AA-BB-CC-DD-EE"
    assert (
        rc.decrypt_user_password(req.get(rc.USER_PASSWORD), SECRET.encode(), auth)
        == b"02aabbccddee"
    )
    assert rc.verify_request_ma(req, SECRET.encode())


def test_reply_with_wrong_secret_or_id_is_refused() -> None:
    server = RadiusServer(RadiusConfig(secret=SECRET.encode()), Policy(Admission(True, 5)))
    packet, auth = hostap.access_request(MAC, SECRET.encode(), 9)
    reply = server.handle(packet, ("127.0.0.1", 1))
    with pytest.raises(hostap.JoinError):
        hostap.parse_reply(reply, 9, auth, b"another-secret")
    with pytest.raises(hostap.JoinError):
        hostap.parse_reply(reply, 10, auth, SECRET.encode())


@given(st.binary(max_size=300), st.integers(0, 255))
def test_parse_reply_fuzz_only_join_errors(data: bytes, ident: int) -> None:
    with contextlib.suppress(hostap.JoinError):
        hostap.parse_reply(data, ident, bytes(16), SECRET.encode())


# -- status parsers ---------------------------------------------------------------

macs = st.lists(st.integers(0, 2**48 - 1), min_size=1, max_size=6, unique=True).map(
    lambda ns: [":".join(f"{(n >> s) & 0xFF:02x}" for s in range(40, -1, -8)) for n in ns]
)


@given(macs, st.data())
def test_parse_all_reads_what_the_supervisor_formats(mac_list: list[str], data) -> None:
    devices = [
        Device(
            mac=m,
            allow=data.draw(st.booleans()),
            vlanid=data.draw(st.integers(0, 4094)),
            nat=data.draw(st.booleans()),
            psk="",
            primary_ip=f"10.0.0.{i + 2}",
            secondary_ip="",
            label="",
            id=f"id{i}",
            join_ts=1,
            status=i % 3,
        )
        for i, m in enumerate(mac_list)
    ]
    parsed = report.parse_all(format_devices(devices))
    assert set(parsed) == set(mac_list)
    for d in devices:
        f = parsed[d.mac]
        assert (f[0] == "a", f[2], int(f[4]), f[5] == "1") == (
            d.allow,
            d.primary_ip,
            d.vlanid,
            d.nat,
        )
    pairs = list(itertools.pairwise(mac_list))
    assert report.parse_bridges(format_bridges(pairs)) == pairs


@given(st.text(max_size=400))
def test_status_parsers_never_raise(text: str) -> None:
    for mac, fields in report.parse_all(text).items():
        assert len(mac) == 17 and len(fields) >= 11
    for a, b in report.parse_bridges(text):
        assert len(a) == len(b) == 17


def test_rows_merge_lab_and_daemon_views() -> None:
    st_ = LabState(
        prefix="lx",
        dir="/nonexistent",
        devices=[
            DeviceState("dev1", "02:00:00:00:00:01", state="joined", vlan=100, ip="10.100.0.2"),
            DeviceState("dev2", "02:00:00:00:00:02", state="rejected"),
        ],
    )
    all_reply = (
        "a,02:00:00:00:00:01,10.100.0.2,,100,1,,x,0,1,0\nd,02:00:00:00:00:02,,,1,0,,y,0,1,2\n"
    )
    rows = report.rows(st_, all_reply, "02:00:00:00:00:01,02:00:00:00:00:02\n")
    assert [(r.name, r.vlan, r.ip, r.nat, r.bridges, r.connected) for r in rows] == [
        ("dev1", "100", "10.100.0.2", True, ["dev2"], "attached"),
        ("dev2", "1", "", False, ["dev1"], "no"),
    ]
    assert rows[1].allowed == "deny"


# -- state -----------------------------------------------------------------------


def test_state_round_trip(tmp_path: Path) -> None:
    state = LabState(
        prefix="lx",
        dir=str(tmp_path / "lx"),
        daemon_pid=42,
        devices=[DeviceState("dev1", MAC, vlan=100, ip="10.100.0.2")],
    )
    state.save()
    assert (tmp_path / "lx" / "state.json").stat().st_mode & 0o077 == 0
    again = LabState.load("lx", tmp_path)
    assert again == state
    assert again.device("dev1").vlan == 100
    with pytest.raises(KeyError):
        again.device("dev9")


@given(st.text(max_size=20))
def test_prefix_check(text: str) -> None:
    try:
        assert check_prefix(text) == text
    except ValueError:
        return
    assert len(f"{text}-gw") <= 15 and text.isalnum() and text.islower()


def test_device_macs_are_stable_unicast_and_distinct() -> None:
    from edgesec.lab.lab import device_mac

    seen = {device_mac("elab", f"dev{i}") for i in range(1, 1001)}
    assert len(seen) == 1000
    for mac in seen:
        first = int(mac[:2], 16)
        assert first & 1 == 0 and first & 2  # unicast, locally administered
    assert device_mac("elab", "dev1") == device_mac("elab", "dev1") != device_mac("x2", "dev1")


# -- the wan's DNS server -----------------------------------------------------------


def test_dnsd_answers_a_queries() -> None:
    import dns.message

    from edgesec.lab import dnsd

    q = dns.message.make_query("wan.edgesec-lab.test.", "A")
    reply = dns.message.from_wire(dnsd.answer(q.to_wire(), "198.51.100.2"))
    assert reply.id == q.id and [r.to_text() for r in reply.answer[0]] == ["198.51.100.2"]
    aaaa = dns.message.from_wire(
        dnsd.answer(dns.message.make_query("x.", "AAAA").to_wire(), "198.51.100.2")
    )
    assert aaaa.answer == [] and aaaa.rcode() == 0
    assert dnsd.answer(reply.to_wire(), "198.51.100.2") is None  # responses are ignored


@given(st.binary(max_size=600))
def test_dnsd_fuzz(data: bytes) -> None:
    from edgesec.lab import dnsd

    out = dnsd.answer(data, "198.51.100.2")
    assert out is None or isinstance(out, bytes)


def test_status_table_never_splits_identifiers_even_when_narrow() -> None:
    from rich.console import Console

    macs = [f"02:00:00:00:00:{i:02x}" for i in range(1, 4)]
    st_ = LabState(
        prefix="lx",
        dir="/nonexistent",
        devices=[DeviceState(f"dev{i}", m, state="joined") for i, m in enumerate(macs, 1)],
    )
    all_reply = "".join(
        f"a,{m},10.100.0.{i},10.100.0.{100 + i},100,0,,x,0,1,1\n" for i, m in enumerate(macs)
    )
    bridges = f"{macs[0]},{macs[1]}\n{macs[0]},{macs[2]}\n"
    table = report.table("lab lx", report.rows(st_, all_reply, bridges))
    for width in (60, 80, 240):
        console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(table)
        text = console.export_text()
        for i, m in enumerate(macs):
            assert m in text and f"10.100.0.{i} " in text and f"10.100.0.{100 + i} " in text
