"""Capture filters: our libpcap compile gives tcpdump's own program, and a bad
expression is a clear error, never a crash."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from edgesec.capture.bpf import BpfError, attach, compile_filter

EXPRESSIONS = ("udp port 53", "tcp and not port 22", "icmp or arp", "ether host 02:00:00:00:00:01")


def tcpdump_program(expr: str) -> list[tuple[int, int, int, int]]:
    """``tcpdump -ddd`` for Ethernet: a count line, then ``code jt jf k`` per line."""
    binary = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    out = subprocess.run([binary, "-ddd", "-s", "65535", "-y", "EN10MB", expr], capture_output=True,
                         text=True, check=True, timeout=60).stdout.split("\n")
    count = int(out[0])
    rows = [tuple(int(x) for x in line.split()) for line in out[1:1 + count]]
    return [(r[0], r[1], r[2], r[3]) for r in rows]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_compiles_exactly_what_tcpdump_compiles(expr: str) -> None:
    assert compile_filter(expr) == tcpdump_program(expr)


@pytest.mark.parametrize("expr", ["udp port", "port 99999", "ether host nope", "(tcp"])
def test_a_bad_expression_is_a_clear_error(expr: str) -> None:
    with pytest.raises(BpfError, match="bad capture filter"):
        compile_filter(expr)


def test_attach_installs_the_program_on_a_socket() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        assert attach(sock, "udp port 53") == len(compile_filter("udp port 53"))
        with pytest.raises(BpfError):
            attach(sock, "not a filter")
