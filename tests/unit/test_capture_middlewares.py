"""Middleware plugins: discovery, pcap store, cleaner, flows, EVE, protobuf."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from typer.testing import CliRunner

from edgesec.capture import middleware
from edgesec.capture.cli import app
from edgesec.capture.communityid import community_id
from edgesec.capture.options import CaptureOptions
from edgesec.capture.pcapfile import PcapReader, PcapWriter
from edgesec.capture.pipeline import Pipeline
from edgesec.capture.recap import recap
from edgesec.capture.synth import write_mixed
from shared_data import DATA

DEV, GW = "02:00:00:00:00:01", "02:00:00:00:00:fe"
BUILTINS = {"header", "pcap", "cleaner", "flows", "eve", "protobuf"}


def pcap_bytes(pkts, start=1_700_000_000_000_000, step=1000) -> bytes:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    for i, p in enumerate(pkts):
        raw = bytes(p)
        w.write(start + i * step, len(raw), raw)
    return buf.getvalue()


def test_builtins_are_registered_as_entry_points():
    assert set(middleware.available()) >= BUILTINS
    # the fast path's table is exactly the entry points of pyproject.toml
    assert {n: middleware.available()[n] for n in middleware.BUILTINS} == middleware.BUILTINS
    for name in BUILTINS:
        assert middleware.load(name).name == name


def test_unknown_middleware_is_a_clear_error():
    with pytest.raises(middleware.MiddlewareError, match="unknown capture middleware 'nope'"):
        middleware.load("nope")


class Exploding:
    name = "exploding"

    def init(self, ctx):
        self.batches = 0

    def process(self, batch):
        self.batches += 1
        raise RuntimeError("boom")

    def close(self):
        pass


def test_a_failing_plugin_does_not_stop_the_others(tmp_path):
    boom = Exploding()
    pipe = Pipeline(CaptureOptions(capture_db_path=tmp_path / "c.sqlite"), [boom, "header"])
    raw = bytes(Ether() / IP() / UDP())
    pipe.feed("br0", [(1, len(raw), raw)])
    pipe.close()
    assert boom.batches == 1 and pipe.errors == 1
    con = sqlite3.connect(tmp_path / "c.sqlite")
    assert con.execute("SELECT count(*) FROM udp").fetchone()[0] == 1


def conversation():
    e, r = Ether(src=DEV, dst=GW), Ether(src=GW, dst=DEV)
    a, b = "10.0.1.2", "10.9.0.1"
    return [
        e / IP(src=a, dst=b) / TCP(sport=40000, dport=443, flags="S"),
        r / IP(src=b, dst=a) / TCP(sport=443, dport=40000, flags="SA"),
        e / IP(src=a, dst=b) / TCP(sport=40000, dport=443, flags="A"),
        e / IP(src=a, dst=b) / TCP(sport=40000, dport=443, flags="PA") / Raw(b"x" * 100),
        r / IP(src=b, dst=a) / TCP(sport=443, dport=40000, flags="FA"),
        e / IP(src=a, dst="10.0.0.1") / ICMP(type=8, id=1),
        r / IP(src="10.0.0.1", dst=a) / ICMP(type=0, id=1),
        e / IP(src=a, dst="10.0.0.1") / ICMP(type=3, code=3),
        e / IP(src=a, dst="10.0.0.1") / UDP(sport=5555, dport=53)
        / DNS(id=5, rd=1, qd=DNSQR(qname="iot.example.com")),
        r / IP(src="10.0.0.1", dst=a) / UDP(sport=53, dport=5555)
        / DNS(id=5, qr=1, qd=DNSQR(qname="iot.example.com"),
              an=DNSRR(rrname="iot.example.com", rdata="192.0.2.7", ttl=60)),
    ]


def test_flows_table(tmp_path):
    pkts = conversation()
    opts = CaptureOptions(capture_db_path=tmp_path / "f.sqlite")
    recap(io.BytesIO(pcap_bytes(pkts)), opts, ifname="br1", middlewares=["flows"])
    con = sqlite3.connect(tmp_path / "f.sqlite")
    con.row_factory = sqlite3.Row
    flows = {(r["proto"], r["dst_port"]): dict(r) for r in con.execute("SELECT * FROM flows")}
    assert len(flows) == 4  # tcp, icmp echo, icmp unreachable (one-way), dns
    tcp = flows[(6, 443)]
    lens = [len(bytes(p)) for p in pkts]
    assert (tcp["src_ip"], tcp["src_port"], tcp["dst_ip"]) == ("10.0.1.2", 40000, "10.9.0.1")
    assert (tcp["pkts_toserver"], tcp["pkts_toclient"]) == (3, 2)
    assert tcp["bytes_toserver"] == lens[0] + lens[2] + lens[3]
    assert tcp["bytes_toclient"] == lens[1] + lens[4]
    assert (tcp["src_mac"], tcp["dst_mac"], tcp["ifname"]) == (DEV, GW, "br1")
    assert tcp["first_seen"] == 1_700_000_000_000_000 and tcp["last_seen"] == tcp["first_seen"] \
        + 4000
    assert tcp["state"] == "closed" and tcp["tcp_flags"] == 0x1B
    assert tcp["community_id"] == community_id(6, "10.9.0.1", "10.0.1.2", 443, 40000)
    echo = flows[(1, 0)]
    assert (echo["pkts_toserver"], echo["pkts_toclient"]) == (1, 1)
    assert echo["community_id"] == community_id(1, "10.0.1.2", "10.0.0.1", 8, 0)
    assert flows[(1, 3)]["pkts_toserver"] == 1
    assert flows[(17, 53)]["state"] == "established"
    idx = {r[1] for r in con.execute("PRAGMA index_list(flows)")}
    assert {"flows_src_mac", "flows_dst_mac"} <= idx


def test_flow_timeout_starts_a_new_flow(tmp_path):
    pkts = [Ether(src=DEV, dst=GW) / IP(src="10.0.1.2", dst="10.9.0.9") / UDP(sport=1, dport=2)] * 3
    opts = CaptureOptions(capture_db_path=tmp_path / "t.sqlite", flow_timeout=1, batch_size=1)
    recap(io.BytesIO(pcap_bytes(pkts, step=3_000_000)), opts, middlewares=["flows"])
    con = sqlite3.connect(tmp_path / "t.sqlite")
    assert [r[0] for r in con.execute("SELECT pkts_toserver FROM flows")] == [1, 1, 1]


def test_eve_dns_and_flow_events(tmp_path):
    eve = tmp_path / "eve.json"
    opts = CaptureOptions(capture_db_path=tmp_path / "e.sqlite", eve_path=eve)
    recap(io.BytesIO(pcap_bytes(conversation())), opts, ifname="br1", middlewares=["eve"])
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    dns = [e for e in events if e["event_type"] == "dns"]
    flows = [e for e in events if e["event_type"] == "flow"]
    assert len(flows) == 4 and len(dns) == 2
    q, a = dns
    assert q["dns"]["type"] == "query" and q["dns"]["rrname"] == "iot.example.com"
    assert q["dns"]["rrtype"] == "A" and q["dest_port"] == 53 and q["proto"] == "UDP"
    assert a["dns"]["type"] == "answer" and a["dns"]["rcode"] == "NOERROR"
    assert a["dns"]["answers"] == [{"rrname": "iot.example.com", "rrtype": "A", "ttl": 60,
                                    "rdata": "192.0.2.7"}]
    assert q["flow_id"] == a["flow_id"] and q["community_id"] == a["community_id"]
    dflow = next(f for f in flows if f["flow_id"] == q["flow_id"])
    assert dflow["flow"]["pkts_toserver"] == 1 and dflow["flow"]["reason"] == "shutdown"
    assert q["timestamp"].endswith("+0000") and q["in_iface"] == "br1"
    assert dflow["ether"] == {"src_mac": DEV, "dest_mac": GW}


def test_eve_and_flows_agree_on_flow_ids(tmp_path):
    opts = CaptureOptions(capture_db_path=tmp_path / "a.sqlite", eve_path=tmp_path / "eve.json")
    recap(io.BytesIO(pcap_bytes(conversation())), opts, middlewares=["flows", "eve"])
    con = sqlite3.connect(tmp_path / "a.sqlite")
    db_ids = {r[0] for r in con.execute("SELECT flow_id FROM flows")}
    eve_ids = {json.loads(x)["flow_id"] for x in (tmp_path / "eve.json").read_text().splitlines()}
    assert db_ids == eve_ids


def test_pcap_store_rotates_and_keeps_every_packet(tmp_path):
    src = tmp_path / "mix.pcap"
    write_mixed(src, 600)
    opts = CaptureOptions(capture_db_path=tmp_path / "db" / "c.sqlite", pcap_rotate_size=8192,
                          batch_size=64)
    recap(src.open("rb"), opts, ifname="br0", middlewares=["pcap"])
    store = tmp_path / "db" / "pcap"
    assert oct(store.stat().st_mode & 0o777) == "0o770"
    con = sqlite3.connect(opts.capture_db_path)
    rows = con.execute("SELECT name, packets, size, timestamp, end_timestamp, caplen "
                       "FROM pcap ORDER BY timestamp").fetchall()
    assert len(rows) > 5
    got = []
    for name, packets, size, first, last, caplen in rows:
        path = store / name
        assert path.stat().st_size == size <= 8192
        pkts = list(PcapReader(path.open("rb")))
        assert len(pkts) == packets and pkts[0][0] == first and pkts[-1][0] == last
        assert sum(len(p[2]) for p in pkts) == caplen
        got += pkts
    assert got == list(PcapReader(src.open("rb")))


def test_cleaner_holds_the_bound_oldest_first(tmp_path):
    src = tmp_path / "mix.pcap"
    write_mixed(src, 3000)
    opts = CaptureOptions(capture_db_path=tmp_path / "c.sqlite", pcap_rotate_size=16384,
                          pcap_store_size=65536, batch_size=50)
    sizes = []

    class Probe:
        name = "probe"

        def init(self, ctx):
            pass

        def process(self, batch):
            sizes.append(sum(f.stat().st_size for f in opts.store_dir.iterdir()))

        def close(self):
            pass

    pipe = Pipeline(opts, ["pcap", "cleaner", Probe()])
    pkts = list(PcapReader(src.open("rb")))
    for i in range(0, len(pkts), 50):
        pipe.feed("br0", pkts[i:i + 50])
    pipe.close()
    assert max(sizes) <= 65536
    assert pipe.ctx.stats["pcap_files_removed"] > 0
    con = sqlite3.connect(opts.capture_db_path)
    names = sorted(p.name for p in opts.store_dir.iterdir())
    assert sorted(r[0] for r in con.execute("SELECT name FROM pcap")) == names
    kept = list(PcapReader((opts.store_dir / min(
        names, key=lambda n: int(n.split("-")[1]))).open("rb")))
    # the newest packets survive: the last packet is in the store
    last = pkts[-1]
    stored = [p for n in names for p in PcapReader((opts.store_dir / n).open("rb"))]
    assert last in stored and pkts[0] not in stored and kept


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return n, i
        shift += 7


def test_recap_pipe_mode_writes_protobuf_records(tmp_path):
    fifo = tmp_path / "rows.fifo"
    data = bytearray()

    def reader():
        while not fifo.exists():
            pass
        with open(fifo, "rb") as fh:
            data.extend(fh.read())

    t = threading.Thread(target=reader)
    t.start()
    res = CliRunner().invoke(app, ["-k", "-f", str(fifo), "-p",
                                   str(DATA / "original-test.pcap")])
    t.join(10)
    assert res.exit_code == 0, res.output
    assert "Created pipe file at" in res.output
    headers = []
    i = 0
    while i < len(data):
        size, i = _read_varint(data, i)
        body = bytes(data[i:i + size])
        i += size
        assert body[0] == 0x12  # field 2, length-delimited
        hlen, j = _read_varint(body, 1)
        headers.append(body[j:j + hlen].decode())
    assert len(headers) == 268
    assert headers.count("eth") == 78 and headers.count("mdns") == 46
    assert not os.path.exists(str(fifo) + ".sqlite")


def test_options_from_settings_like_object():
    class Section:
        capture_db_path = Path("/x/c.sqlite")
        filter = "udp"
        middlewares = "header, pcap ,cleaner"
        buffer_timeout = "25"

    o = CaptureOptions.from_settings(Section())
    assert o.middlewares == ("header", "pcap", "cleaner") and o.buffer_timeout == 25
    assert CaptureOptions.from_json(o.to_json()) == o
    assert o.store_dir == Path("/x/pcap") and o.eve_file == Path("/x/eve.json")


def test_options_from_the_real_config(tmp_path):
    from edgesec.capture.service import build_capture_service
    from edgesec.config import load_settings

    ini = tmp_path / "config.ini"
    ini.write_text("[system]\nexecCapture = true\n[capture]\ncaptureDbPath = \"db/cap.sqlite\"\n"
                   "filter = \"udp port 53\"\npromiscuous = true\nbufferTimeout = 25\n"
                   "middlewares = \"header,pcap,cleaner\"\ncaptureInterfaces = \"br1,br2\"\n"
                   "pcapRotateSize = 8192\npcapStoreSize = 65536\n")
    svc = build_capture_service(load_settings(ini), None)
    o = svc.options
    assert o.capture_db_path == tmp_path / "db" / "cap.sqlite"
    assert (o.filter, o.promiscuous, o.buffer_timeout) == ("udp port 53", True, 25)
    assert o.middlewares == ("header", "pcap", "cleaner")
    assert (o.pcap_rotate_size, o.pcap_store_size) == (8192, 65536)
    assert svc.interfaces == ["br1", "br2"] and svc.name == "capture"
    assert svc.status().startswith("stopped")
    assert CaptureOptions.from_json(o.to_json()) == o
