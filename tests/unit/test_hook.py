"""The dnsmasq lease hook: argument validation (hypothesis) and the SET_IP exchange."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesec.dhcp.hook import HookError, LeaseEvent, main, parse_lease_args

MAC = "02:AB:cd:00:11:22"


def test_valid_lease_is_normalised_and_hostname_never_forwarded() -> None:
    ev = parse_lease_args(["add", MAC, "10.0.1.5", "evil host; rm -rf /"])
    assert ev == LeaseEvent("add", "02:ab:cd:00:11:22", "10.0.1.5")
    assert ev.command() == "SET_IP add 02:ab:cd:00:11:22 10.0.1.5 -"
    assert parse_lease_args(["old", MAC, "10.0.1.5"]).action == "old"  # type: ignore[union-attr]
    assert parse_lease_args(["del", MAC, "10.0.1.5"]).action == "del"  # type: ignore[union-attr]


@pytest.mark.parametrize("args", [["arp-add", MAC, "10.0.1.5"], ["arp-del", MAC, "10.0.1.5"],
                                  ["init"], ["tftp", "10", "10.0.1.5", "/f"]])
def test_actions_we_do_not_report_are_ignored(args: list[str]) -> None:
    assert parse_lease_args(args) is None


@pytest.mark.parametrize("args,msg", [
    ([], "no action"),
    (["ADD", MAC, "10.0.1.5"], "unknown action"),
    (["add", MAC], "expected MAC and IP"),
    (["add", "02:ab:cd:00:11", "10.0.1.5"], "invalid MAC"),
    (["add", "1-02:ab:cd:00:11:22", "10.0.1.5"], "invalid MAC"),
    (["add", MAC, "fe80::1"], "invalid IPv4"),
    (["add", MAC, "10.0.1.5 ACCEPT_MAC"], "invalid IPv4"),
    (["add", MAC, "0.0.0.0"], "not a lease"),
    (["add", MAC, "224.0.0.251"], "not a lease"),
    (["add", MAC, "10.0.1.5", "h", "extra"], "too many"),
])
def test_invalid_arguments_are_rejected(args: list[str], msg: str) -> None:
    with pytest.raises(HookError, match=msg):
        parse_lease_args(args)


@given(st.lists(st.text(max_size=40), max_size=6))
def test_any_arguments_give_a_single_line_command_or_a_clear_error(args: list[str]) -> None:
    try:
        ev = parse_lease_args(args)
    except HookError as exc:
        assert str(exc)
        return
    if ev is not None:
        words = ev.command().split(" ")
        assert len(words) == 5 and "\n" not in ev.command()


@given(st.sampled_from(["add", "old", "del"]), st.binary(min_size=6, max_size=6),
       st.integers(min_value=0x0A000001, max_value=0x0AFFFFFE))
def test_every_well_formed_lease_is_accepted(action: str, mac: bytes, ip: int) -> None:
    text = ":".join(f"{b:02X}" for b in mac)
    addr = ".".join(str((ip >> s) & 255) for s in (24, 16, 8, 0))
    ev = parse_lease_args([action, text, addr])
    assert ev is not None and ev.mac == text.lower() and ev.ip == addr


def _server(path: Path, reply: bytes) -> tuple[threading.Thread, list[bytes]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    got: list[bytes] = []

    def serve() -> None:
        with sock:
            data, addr = sock.recvfrom(4096)
            got.append(data)
            sock.sendto(reply, addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t, got


def test_main_sends_set_ip_and_waits_for_ok(tmp_path: Path) -> None:
    path = tmp_path / "sup.sock"
    t, got = _server(path, b"OK\n")
    assert main(["--socket", str(path), "add", MAC, "10.0.1.5", "host"]) == 0
    t.join(5)
    assert got == [b"SET_IP add 02:ab:cd:00:11:22 10.0.1.5 -"]


def test_main_reports_the_interface_dnsmasq_names(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sup.sock"
    t, got = _server(path, b"OK\n")
    monkeypatch.setenv("DNSMASQ_INTERFACE", "br100")
    assert main(["--socket", str(path), "old", MAC, "10.0.1.5"]) == 0
    t.join(5)
    assert got == [b"SET_IP old 02:ab:cd:00:11:22 10.0.1.5 br100"]


@pytest.mark.parametrize("value", ["br 1", "br1\nACCEPT_MAC", "x" * 16, "-", "a/b"])
def test_an_interface_dnsmasq_could_not_have_named_is_refused(value: str) -> None:
    with pytest.raises(HookError, match="DNSMASQ_INTERFACE"):
        parse_lease_args(["add", MAC, "10.0.1.5"], value)


@given(st.text(max_size=20))
def test_any_interface_value_gives_one_word_or_a_clear_error(value: str) -> None:
    try:
        ev = parse_lease_args(["add", MAC, "10.0.1.5"], value)
    except HookError as exc:
        assert "DNSMASQ_INTERFACE" in str(exc)
        return
    assert ev is not None and ev.command().count(" ") == 4 and "\n" not in ev.command()


def test_main_reports_fail_and_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "sup.sock"
    t, _ = _server(path, b"FAIL\n")
    assert main(["--socket", str(path), "del", MAC, "10.0.1.5"]) == 1
    t.join(5)
    assert main(["--socket", str(tmp_path / "missing.sock"), "--timeout", "0.5",
                 "add", MAC, "10.0.1.5"]) == 2
    assert main(["--socket", str(path), "arp-add", MAC, "10.0.1.5"]) == 0
