"""edgesec.store reads rows by column name, never by position.

Every row type round-trips with a distinct value in every column (a swapped
pair of same-typed columns shows), the SELECT list can be reordered without
changing what is read, and an original edgesec ``instance`` row with NULLs
reads as the typed empty values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesec import store as S
from edgesec.store import (
    AccessRow,
    AuditRow,
    BridgeRow,
    DeviceRow,
    MembershipRow,
    QuarantineRow,
    Store,
    TicketRow,
)

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
DEVICE = DeviceRow("id-1", A, 2, 7, "10.0.7.10", "10.0.7.11", True, False, "cam", 123, "psk-9")
BRIDGE = BridgeRow(A, B, "mdns", 11, 22)
TICKET = TicketRow("pass-1", "issuer-1", "label-1", 5, 33, 44, B)
MEMBER = MembershipRow("cams", A, 55)
ACCESS = AccessRow(A, B, "tcp", 80, 66)
QUARANTINE = QuarantineRow(A, "port_scan", "detect:port_scan", 77, 88, '{"x":1}')
AUDIT = AuditRow(99.5, A, "quarantine", "manual", "why", '{"y":2}')


def filled(path: Path) -> Store:
    store = Store(path)
    with store.transaction():
        store.put_device(DEVICE)
        store.put_bridge(BRIDGE)
        store.put_ticket(TICKET)
        store.put_membership(MEMBER)
        store.put_access(ACCESS)
        store.put_quarantine(QUARANTINE)
        store.add_audit(AUDIT)
    return store


def loaded(store: Store) -> list[object]:
    return [store.load_devices(), store.load_bridges(), store.load_tickets(),
            store.load_memberships(), store.load_access(), store.load_quarantines(),
            store.load_audit(), store.load_audit(A)]


EXPECTED = [[DEVICE], [BRIDGE], [TICKET], [MEMBER], [ACCESS], [QUARANTINE], [AUDIT], [AUDIT]]


def test_every_row_type_round_trips_column_by_column(tmp_path: Path) -> None:
    store = filled(tmp_path / "c.sqlite")
    assert loaded(store) == EXPECTED
    store.close()
    again = Store(tmp_path / "c.sqlite")
    assert loaded(again) == EXPECTED
    again.close()


def test_rows_are_read_by_name_whatever_the_select_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reversed SELECT lists read the same rows; a positional reader would not."""
    store = filled(tmp_path / "c.sqlite")
    forward = S.columns

    def reversed_columns(row_type: type) -> dict[str, tuple[str, str]]:
        return dict(reversed(list(forward(row_type).items())))

    monkeypatch.setattr(S, "columns", reversed_columns)
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    assert loaded(store) == EXPECTED
    assert "SELECT pass, timestamp, label, allow, nat, secondaryip, primaryip, vlanid, " \
           "status, mac, id FROM instance ORDER BY rowid" in statements
    store.close()


def test_an_original_instance_row_with_nulls_reads_as_empty_values(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    with store.transaction():
        store.db.execute("INSERT INTO instance (id, mac) VALUES ('x', ?)", (A,))
    assert store.load_devices() == [DeviceRow("x", A, 0, 0, "", "", False, False, "", 0, "")]
    store.close()


def test_the_select_list_names_the_originals_columns() -> None:
    assert [c for c, _ in S.columns(DeviceRow).values()] == [
        "id", "mac", "status", "vlanid", "primaryip", "secondaryip", "nat", "allow", "label",
        "timestamp", "pass"]
    assert [c for c, _ in S.columns(MembershipRow).values()] == ["grp", "mac", "created"]
