"""The bulk decoder gives exactly the per-frame decoder's rows; recap stores exactly them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.capture import columnar
from edgesec.capture.columnar import decode_columns
from edgesec.capture.decode import decode, new_ids
from edgesec.capture.options import CaptureOptions
from edgesec.capture.pcapfile import Packet, PcapReader
from edgesec.capture.recap import recap
from edgesec.capture.schema import TABLE_NAMES, WIDTHS
from edgesec.capture.synth import templates, write_mixed
from shared_data import DATA

_TEMPLATES = [bytes(p) for p in templates()]


def per_frame(packets: list[Packet], ifname: str, ids: list[str]) -> dict[str, list[tuple]]:
    """Reference: :func:`decode` frame by frame, rows grouped per table."""
    out: dict[str, list[tuple]] = {t: [] for t in TABLE_NAMES}
    for (ts, length, data), uid in zip(packets, ids, strict=True):
        for table, row in decode(data, ts, length, ifname, uid).items():
            out[table].append(row)
    return out


def as_rows(cols: dict[str, list]) -> dict[str, list[tuple]]:
    """Flat per-table values back into row tuples."""
    out = {}
    for table, values in cols.items():
        w = WIDTHS[table]
        assert len(values) % w == 0, table
        out[table] = [tuple(values[i:i + w]) for i in range(0, len(values), w)]
    return out


def check(packets: list[Packet], ifname: str = "br3") -> None:
    ids = [f"id{i}" for i in range(len(packets))]
    assert as_rows(decode_columns(packets, ifname, ids)) == per_frame(packets, ifname, ids)


def test_every_template_and_every_truncation_gives_the_same_rows():
    packets = []
    for i, raw in enumerate(_TEMPLATES):
        packets += [(1_000 + i, len(raw), raw[:cut]) for cut in range(len(raw) + 1)]
    check(packets)
    assert sum(map(len, decode_columns(packets, "x", ["i"] * len(packets)).values())) > 0


def test_the_original_fixtures_give_the_same_rows():
    for name in ("original-test.pcap", "original-middleware-test.pcap"):
        with (DATA / name).open("rb") as fh:
            check(list(PcapReader(fh)), "ifname")


def test_appends_to_given_columns_and_survives_a_full_address_cache(monkeypatch):
    monkeypatch.setattr(columnar, "TEXT_CACHE_SIZE", 3)
    columnar._TEXT.clear()
    packets = [(i, len(raw), raw) for i, raw in enumerate(_TEMPLATES)]
    check(packets)
    assert len(columnar._TEXT) <= 3
    cols = decode_columns(packets[:5], "a", ["x"] * 5)
    again = decode_columns(packets[5:9], "a", ["y"] * 4, cols)
    assert again is cols and len(cols["eth"]) == 9 * WIDTHS["eth"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_fuzz_random_frames_give_the_same_rows(frames):
    check([(i, len(f) + 3, f) for i, f in enumerate(frames)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_TEMPLATES),
                          st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                   max_size=6)), min_size=1, max_size=6))
def test_fuzz_mutated_templates_give_the_same_rows(items):
    packets = []
    for raw, flips in items:
        data = bytearray(raw)
        for pos, val in flips:
            if pos < len(data):
                data[pos] = val
        packets.append((len(packets), len(data), bytes(data)))
    check(packets)


def by_frame_order(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Each table's rows, sorted, every id replaced by its rank among the eth ids.

    Ids increase with the frames (UUIDv7 in the DB, indexes in the reference),
    so the rank is the frame's position among those with an eth row.
    """
    rank = {uid: i for i, uid in enumerate(sorted(r[1] for r in rows["eth"]))}
    out = {}
    for table, table_rows in rows.items():
        key = 1 if table == "eth" else 0
        out[table] = sorted(tuple(rank[v] if j == key else v for j, v in enumerate(r))
                            for r in table_rows)
    return out


def db_rows(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        return by_frame_order({t: con.execute(f"SELECT * FROM {t}").fetchall()
                               for t in TABLE_NAMES})
    finally:
        con.close()


def reference_rows(pcap: Path, ifname: str) -> dict[str, list[tuple]]:
    with pcap.open("rb") as fh:
        packets = list(PcapReader(fh))
    ids = list(range(len(packets)))
    return by_frame_order(per_frame(packets, ifname, ids))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["original-test.pcap", "original-middleware-test.pcap",
                                  "mixed"])
def test_recap_stores_the_per_frame_decoders_rows_row_for_row(tmp_path, name):
    pcap = DATA / name
    if name == "mixed":
        pcap = tmp_path / "mix.pcap"
        write_mixed(pcap, len(templates()) * 40 + 7)
    db = tmp_path / "r.sqlite"
    with pcap.open("rb") as fh:
        res = recap(fh, CaptureOptions(capture_db_path=db, batch_size=500), transaction=True)
    assert res.error is None and res.middleware_errors == 0
    got, want = db_rows(db), reference_rows(pcap, "ifname")
    assert got == want
    assert res.rows == sum(map(len, want.values()))


def test_ids_stay_increasing_across_a_counter_run(monkeypatch):
    from edgesec.capture.decode import _IdClock

    monkeypatch.setattr(_IdClock, "ms", _IdClock.ms + 10_000)  # no new millisecond meanwhile
    monkeypatch.setattr(_IdClock, "counter", (1 << 30) - 3)
    ids = new_ids(7)
    assert ids == sorted(ids) and len(set(ids)) == 7
    hexes = [i.replace("-", "") for i in ids]
    counters = [int(h[13:16], 16) << 30 | int(h[16:24], 16) & 0x3FFFFFFF for h in hexes]
    start = (1 << 30) - 3
    assert counters == list(range(start, start + 7))
