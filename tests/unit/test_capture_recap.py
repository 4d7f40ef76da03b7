"""Recap end to end: parity fixtures, a generated mixed pcap, the CLI."""

from __future__ import annotations

import collections
import io
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgesec.capture.cli import app
from edgesec.capture.options import CaptureOptions
from edgesec.capture.recap import recap
from edgesec.capture.schema import TABLE_NAMES, columns
from edgesec.capture.synth import templates, write_mixed
from shared_data import DATA

# Row counts the original's recap wrote for these files (data/README.md).
PARITY = {
    "original-test.pcap": dict(eth=78, arp=6, ip4=46, ip6=23, tcp=0, udp=69, icmp4=0,
                               icmp6=0, dns=0, mdns=46, dhcp=0),
    "original-middleware-test.pcap": dict(eth=35, arp=0, ip4=33, ip6=0, tcp=14, udp=19,
                                          icmp4=0, icmp6=0, dns=0, mdns=0, dhcp=0),
}


def counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLE_NAMES}
    finally:
        con.close()


@pytest.mark.parametrize("name", sorted(PARITY))
def test_parity_with_the_originals_row_counts(tmp_path, name):
    db = tmp_path / "cap.sqlite"
    res = CliRunner().invoke(app, ["-p", str(DATA / name), "-f", str(db), "-t"])
    assert res.exit_code == 0, res.output
    assert counts(db) == PARITY[name]
    assert f"Processed packets = {PARITY[name]['eth']}" in res.output
    assert f"Processed pcap file/stream size = {(DATA / name).stat().st_size} bytes" in res.output


def test_original_test_pcap_values(tmp_path):
    db = tmp_path / "cap.sqlite"
    with (DATA / "original-test.pcap").open("rb") as fh:
        recap(fh, CaptureOptions(capture_db_path=db))
    con = sqlite3.connect(db)
    ts = [r[0] for r in con.execute("SELECT timestamp FROM eth ORDER BY timestamp")]
    assert ts[0] == 1664194593636003 and ts[-1] == 1664194599339232
    assert {r[0] for r in con.execute("SELECT DISTINCT ifname FROM eth")} == {"ifname"}
    # every layer row shares its frame's id
    for table in TABLE_NAMES[1:]:
        orphans = con.execute(
            f"SELECT count(*) FROM {table} WHERE id NOT IN (SELECT id FROM eth)").fetchone()[0]
        assert orphans == 0
    srcs = {r[0] for r in con.execute(
        "SELECT ip_src FROM ip4 JOIN mdns USING (id)")}
    assert srcs == {"172.17.19.13", "172.17.19.36"}
    assert con.execute("SELECT count(*) FROM mdns WHERE qname != ''").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM eth WHERE ether_type = 50").fetchone()[0] == 3


def tshark_counts(pcap: Path) -> dict[str, int]:
    """Independent per-table counts from tshark's protocol stacks."""
    out = subprocess.run(
        ["tshark", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
         "-o", "tcp.analyze_sequence_numbers:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE",
         "-r", str(pcap),
         "-T", "fields", "-e", "frame.protocols", "-e", "udp.port", "-e", "tcp.port"],
        check=True, capture_output=True, text=True).stdout
    c: collections.Counter[str] = collections.Counter()
    for line in out.splitlines():
        protos, uports, tports = [*line.split("\t"), "", ""][:3]
        layers = protos.split(":")
        c["eth"] += 1
        for proto, table in (("arp", "arp"), ("ip", "ip4"), ("ipv6", "ip6"), ("tcp", "tcp"),
                             ("udp", "udp"), ("icmp", "icmp4"), ("icmpv6", "icmp6"),
                             ("mdns", "mdns"), ("dhcp", "dhcp")):
            c[table] += proto in layers
        c["dns"] += "dns" in layers and "53" in (uports + "," + tports).split(",")
    return {t: c[t] for t in TABLE_NAMES}


@pytest.mark.slow  # waits out real time (deadlines, back-off, idle sampling)
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is a Debian dependency")
def test_mixed_pcap_counts_match_tshark(tmp_path):
    pcap = tmp_path / "mix.pcap"
    write_mixed(pcap, len(templates()) * 3 + 17)
    db = tmp_path / "mix.sqlite"
    with pcap.open("rb") as fh:
        res = recap(fh, CaptureOptions(capture_db_path=db, batch_size=100))
    assert res.error is None
    expected = tshark_counts(pcap)
    assert all(expected[t] > 0 for t in TABLE_NAMES)
    assert counts(db) == expected


def test_mixed_pcap_columns_are_filled(tmp_path):
    pcap = tmp_path / "mix.pcap"
    write_mixed(pcap, len(templates()))
    db = tmp_path / "mix.sqlite"
    with pcap.open("rb") as fh:
        recap(fh, CaptureOptions(capture_db_path=db), ifname="br7")
    con = sqlite3.connect(db)
    assert con.execute("SELECT DISTINCT doff FROM tcp").fetchall() == [(5,)]
    chaddrs = {r[0] for r in con.execute("SELECT chaddr FROM dhcp")}
    assert chaddrs == {f"02:00:00:00:00:{i:02x}" for i in range(1, 9)}
    qnames = {r[0] for r in con.execute("SELECT qname FROM dns")}
    assert "device3.example.com" in qnames and "tcp.example.org" in qnames
    assert con.execute("SELECT count(*) FROM ip6 WHERE ip6_un1_flow = 74565").fetchone()[0] == 8
    assert {r[0] for r in con.execute("SELECT DISTINCT ifname FROM eth")} == {"br7"}
    names = [r[1] for r in con.execute("PRAGMA index_list(eth)")]
    assert "eth_dhost" in names and "eth_shost" in names
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert columns("tcp")[5:7] == ("res1", "doff")


def damaged(tmp_path: Path) -> tuple[Path, int]:
    pcap = tmp_path / "mix.pcap"
    write_mixed(pcap, 100)
    data = pcap.read_bytes()
    # keep exactly 40 records and half of the 41st
    off = 24
    for _ in range(40):
        caplen = int.from_bytes(data[off + 8:off + 12], "little")
        off += 16 + caplen
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(data[: off + 20])
    return bad, 40


def test_damaged_pcap_keeps_rows_and_fails(tmp_path):
    bad, good = damaged(tmp_path)
    db = tmp_path / "d.sqlite"
    res = CliRunner().invoke(app, ["-p", str(bad), "-f", str(db)])
    assert res.exit_code == 1
    assert "truncated" in res.output and "packet 41" in res.output
    assert counts(db)["eth"] == good


def test_stdin_stream_with_n(tmp_path):
    pcap = DATA / "original-middleware-test.pcap"
    db = tmp_path / "s.sqlite"
    res = CliRunner().invoke(app, ["-n", "-f", str(db), "-i", "wlan9"],
                             input=pcap.read_bytes())
    assert res.exit_code == 0, res.output
    assert counts(db) == PARITY["original-middleware-test.pcap"]
    con = sqlite3.connect(db)
    assert {r[0] for r in con.execute("SELECT ifname FROM eth")} == {"wlan9"}


def test_real_pipe_on_stdin(tmp_path):
    db = tmp_path / "p.sqlite"
    pcap = DATA / "original-test.pcap"
    with pcap.open("rb") as fh:
        proc = subprocess.run([sys.executable, "-m", "edgesec.capture.cli", "-n", "-f", str(db)],
                              stdin=fh, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Processed packets = 78" in proc.stdout
    assert counts(db) == PARITY["original-test.pcap"]


def test_no_arguments_prints_help():
    res = CliRunner().invoke(app, [])
    assert res.exit_code == 0 and "-p" in res.output


def test_garbage_input_is_an_error(tmp_path):
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"hello world, not a pcap at all")
    res = CliRunner().invoke(app, ["-p", str(bad), "-f", str(tmp_path / "x.sqlite")])
    assert res.exit_code == 1 and "bad magic" in res.output


def test_recap_from_memory_stream_in_one_transaction(tmp_path):
    data = (DATA / "original-test.pcap").read_bytes()
    db = tmp_path / "m.sqlite"
    res = recap(io.BytesIO(data), CaptureOptions(capture_db_path=db), transaction=True)
    assert (res.packets, res.rows, res.bytes_read) == (78, 268, 29773)


def test_long_option_names_beside_the_letters(tmp_path):
    db = tmp_path / "l.sqlite"
    pcap = DATA / "original-middleware-test.pcap"
    res = CliRunner().invoke(app, ["--pcap", str(pcap), "--db", str(db), "--ifname", "br7",
                                   "--transaction"])
    assert res.exit_code == 0, res.output
    assert counts(db) == PARITY["original-middleware-test.pcap"]


def test_help_shows_no_phantom_command():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0 and "COMMAND" not in res.output and "--append" in res.output


def test_a_non_empty_db_is_refused_unless_append(tmp_path):
    db = tmp_path / "a.sqlite"
    pcap = str(DATA / "original-test.pcap")
    assert CliRunner().invoke(app, ["-p", pcap, "-f", str(db)]).exit_code == 0
    res = CliRunner().invoke(app, ["-p", pcap, "-f", str(db)])
    assert res.exit_code == 2 and "--append" in res.output
    assert counts(db) == PARITY["original-test.pcap"]  # nothing duplicated
    res = CliRunner().invoke(app, ["-p", pcap, "-f", str(db), "--append"])
    assert res.exit_code == 0, res.output
    assert counts(db) == {t: 2 * n for t, n in PARITY["original-test.pcap"].items()}


def test_no_db_is_created_when_the_input_cannot_be_read(tmp_path):
    db = tmp_path / "n.sqlite"
    res = CliRunner().invoke(app, ["-p", str(tmp_path / "missing.pcap"), "-f", str(db)])
    assert res.exit_code == 1 and "cannot open" in res.output
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"not a pcap at all, really not")
    res = CliRunner().invoke(app, ["-p", str(bad), "-f", str(db)])
    assert res.exit_code == 1 and "bad magic" in res.output
    assert not db.exists()


@pytest.mark.slow  # waits out real time (deadlines, back-off, idle sampling)
def test_progress_line_with_d(tmp_path):
    argv = [sys.executable, "-m", "edgesec.capture.cli", "-p", str(DATA / "original-test.pcap")]
    quiet = subprocess.run([*argv, "-f", str(tmp_path / "q.sqlite")], capture_output=True,
                           text=True, timeout=60)
    loud = subprocess.run([*argv, "-f", str(tmp_path / "d.sqlite"), "-d"], capture_output=True,
                          text=True, timeout=60)
    assert quiet.returncode == loud.returncode == 0
    assert "pkts/s" not in quiet.stderr
    assert "recap: 78 packets" in loud.stderr and "pkts/s" in loud.stderr
    assert "100% ETA 0 s" in loud.stderr


RSS_PROBE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def random_frames_pcap(path: Path, size: int) -> None:
    import os
    import random
    import struct

    rnd = random.Random(7)
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        n = 0
        while n < size:
            ln = rnd.randint(60, 1514)
            fh.write(struct.pack("<IIII", 1_700_000_000 + n // 10**6, n % 10**6, ln, ln))
            fh.write(os.urandom(ln))
            n += 16 + ln


@pytest.mark.slow  # recaps two large generated captures in child processes
def test_recap_memory_does_not_grow_with_the_input(tmp_path):
    peaks = {}
    for mb in (60, 180):  # both past the point where SQLite's page cache is full
        pcap = tmp_path / f"r{mb}.pcap"
        random_frames_pcap(pcap, mb * 10**6)
        out = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, sys.executable, "-m", "edgesec.capture.cli",
             "-p", str(pcap), "-f", str(tmp_path / f"r{mb}.sqlite")],
            capture_output=True, text=True, timeout=300, check=True)
        peaks[mb] = int(out.stdout) / 1024
        pcap.unlink()
    print(f"recap peak RSS: {peaks}")
    # was 243 MiB for 100 MB: the reader kept the whole input in one growing buffer
    assert peaks[180] <= peaks[60] + 15
    assert peaks[180] <= 100
