"""Groups and one-way access rules in the registry: validation, durability, events, bounds,
device removal, and the store's migration from schema 2.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesec import groups as G
from edgesec.config import parse_settings
from edgesec.events import EventBus
from edgesec.registry import Registry, RegistryError
from edgesec.store import MIGRATIONS, SCHEMA_VERSION, Store
from registry_world import durable_groups

A, B, C, D = ("02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c",
              "02:00:00:00:00:0d")
CONFIG = "\n".join(["[system]", "allowAllConnections = false", "defaultOpenVlanId = 1",
                    "[interfaces]",
                    *(f'if{v} = "{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0"' for v in (1, 2))])


class Bed:
    def __init__(self, db: Path) -> None:
        self.db = db
        self.events: list = []
        self.open()

    def open(self) -> None:
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.store = Store(self.db)
        self.reg = Registry(parse_settings(CONFIG), self.store, bus)
        self.g = self.reg.groups

    def restart(self) -> None:
        self.store.close()
        self.open()

    def durable(self) -> tuple[list, list]:
        return durable_groups(self.db)


@pytest.fixture
def bed(tmp_path: Path):
    b = Bed(tmp_path / "c.sqlite")
    for mac in (A, B, C, D):
        b.reg.accept_mac(mac, 1)
    b.events.clear()
    yield b
    b.store.close()


def test_membership_is_durable_listed_and_published(bed: Bed) -> None:
    bed.g.add_member("cams", A)
    bed.g.add_member("cams", "02-00-00-00-00-0B")  # any MAC notation
    bed.g.add_member("nvr_1", B)
    assert bed.g.memberships() == [("cams", A), ("cams", B), ("nvr_1", B)]
    assert sorted(bed.durable()[0]) == bed.g.memberships()
    assert bed.g.peers(A) == {B} and bed.g.peers(B) == {A} and bed.g.groups_of(B) == [
        "cams", "nvr_1"]
    ev = [e for e in bed.events if e.kind == "group_changed"]
    assert [(e.mac, e.data["group"], e.data["action"]) for e in ev] == [
        (A, "cams", "added"), (B, "cams", "added"), (B, "nvr_1", "added")]
    assert ev[1].data["members"] == (A, B)
    bed.g.remove_member("cams", A)
    assert bed.g.memberships() == [("cams", B), ("nvr_1", B)]
    assert bed.events[-1].data == {"group": "cams", "action": "removed", "reason": "manual",
                                   "members": (B,)}
    bed.restart()
    assert bed.g.memberships() == [("cams", B), ("nvr_1", B)]


def test_access_rule_is_durable_one_way_and_published(bed: Bed) -> None:
    rule = bed.g.add_access(A, B, "tcp", 80)
    bed.g.add_access(A, B)  # "any" is a different rule
    bed.g.add_access(C, B, "udp", 53)
    assert str(rule) == f"{A} -> {B} tcp/80"
    assert bed.g.rules() == [G.Access(A, B, "", 0), G.Access(A, B, "tcp", 80),
                             G.Access(C, B, "udp", 53)]
    assert bed.g.related(B) == {A, C} and bed.g.related(A) == {B}
    assert sorted(bed.durable()[1]) == [(A, B, "", 0), (A, B, "tcp", 80), (C, B, "udp", 53)]
    added = [e for e in bed.events if e.kind == "access_added"]
    assert [(e.mac, e.data["peer"], e.data["service"]) for e in added] == [
        (A, B, "tcp/80"), (A, B, "any"), (C, B, "udp/53")]
    bed.g.remove_access(A, B, "tcp", 80)
    assert bed.events[-1].kind == "access_removed" and bed.events[-1].data["rule"] == rule
    bed.restart()
    assert bed.g.rules() == [G.Access(A, B, "", 0), G.Access(C, B, "udp", 53)]


@pytest.mark.parametrize("call", [
    lambda g: g.add_member("Cams", A),            # upper case
    lambda g: g.add_member("", A),                # empty
    lambda g: g.add_member("x" * 33, A),          # too long
    lambda g: g.add_member("a b", A),             # space
    lambda g: g.add_member("caméra", A),          # non-ASCII
    lambda g: g.add_member("cams", "02:00:00:00:00:ff"),  # unknown device
    lambda g: g.add_member("cams", "not-a-mac"),
    lambda g: g.add_member("nvr", A),             # already a member
    lambda g: g.remove_member("nvr", B),          # not a member
    lambda g: g.remove_member("none", A),         # no such group
    lambda g: g.add_access(A, A),                 # itself
    lambda g: g.add_access(A, "02:00:00:00:00:ff"),
    lambda g: g.add_access(A, B, "tcp", 0),       # port out of range
    lambda g: g.add_access(A, B, "tcp", 65536),
    lambda g: g.add_access(A, B, "icmp", 1),      # protocol
    lambda g: g.add_access(A, B, "", 80),         # a port without a protocol
    lambda g: g.add_access(A, C, "tcp", 443),     # already exists
    lambda g: g.remove_access(A, C, "tcp", 80),   # does not exist
    lambda g: g.remove_access(C, A, "tcp", 443),  # the reverse does not exist either
])
def test_bad_requests_are_refused_and_change_nothing(bed: Bed, call) -> None:
    bed.g.add_member("nvr", A)
    bed.g.add_access(A, C, "tcp", 443)
    before = (bed.g.memberships(), bed.g.rules(), bed.durable(), len(bed.events))
    with pytest.raises(RegistryError):
        call(bed.g)
    assert (bed.g.memberships(), bed.g.rules(), bed.durable(), len(bed.events)) == before


@given(st.one_of(st.text(max_size=12), st.from_regex(r"(tcp|udp|any)/?[0-9]{0,6}",
                                                     fullmatch=True)))
def test_parse_service_accepts_exactly_tcp_udp_ports(text: str) -> None:
    m = re.fullmatch(r"(tcp|udp)/([0-9]{1,5})", text)
    want = text == "any" or bool(m and 1 <= int(m.group(2)) <= 65535)
    try:
        proto, port = G.parse_service(text)
    except RegistryError:
        assert not want
    else:
        assert want
        assert (proto, port) == (("", 0) if text == "any" else (m.group(1), int(m.group(2))))


def test_forget_removes_every_membership_and_rule_of_a_device(bed: Bed) -> None:
    bed.g.add_member("cams", A)
    bed.g.add_member("cams", B)
    bed.g.add_member("all", A)
    bed.g.add_access(A, C, "tcp", 80)
    bed.g.add_access(D, A)
    bed.g.add_access(B, C)
    bed.events.clear()
    assert bed.g.forget(A) == 4
    assert bed.g.memberships() == [("cams", B)]
    assert bed.g.rules() == [G.Access(B, C)]
    assert bed.durable() == ([("cams", B)], [(B, C, "", 0)])
    kinds = sorted((e.kind, e.data.get("reason")) for e in bed.events)
    assert kinds == [("access_removed", "device removed")] * 2 + [
        ("group_changed", "device removed")] * 2
    assert bed.g.forget(A) == 0


def test_removing_a_device_removes_its_memberships_and_rules_in_the_same_commit(
        bed: Bed) -> None:
    bed.g.add_member("cams", A)
    bed.g.add_member("cams", B)
    bed.g.add_access(C, A, "tcp", 80)
    bed.g.add_access(B, C)
    bed.events.clear()
    bed.reg.remove_device(A)
    assert bed.g.memberships() == [("cams", B)] and bed.g.rules() == [G.Access(B, C)]
    assert bed.durable() == ([("cams", B)], [(B, C, "", 0)])
    kinds = [(e.kind, e.data.get("reason")) for e in bed.events]
    assert ("group_changed", "removed") in kinds and ("access_removed", "removed") in kinds
    # the group and rule events come before the device's own removal event
    assert kinds.index(("access_removed", "removed")) < kinds.index(("device", "removed"))
    bed.restart()
    assert bed.g.memberships() == [("cams", B)] and bed.g.rules() == [G.Access(B, C)]


def test_bounds(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(G, "MAX_GROUP_MEMBERS", 2)
    monkeypatch.setattr(G, "MAX_ACCESS_RULES", 1)
    bed.g.add_member("g", A)
    bed.g.add_member("g", B)
    with pytest.raises(RegistryError, match="full"):
        bed.g.add_member("g", C)
    monkeypatch.setattr(G, "MAX_GROUP_PAIRS", 4)  # g holds 2 pairs; a second such group: 4
    bed.g.add_member("h", C)
    bed.g.add_member("h", D)
    with pytest.raises(RegistryError, match="pairs"):
        bed.g.add_member("i", A) or bed.g.add_member("i", C)
    bed.g.add_access(A, B)
    with pytest.raises(RegistryError, match="too many"):
        bed.g.add_access(B, A)


# -- schema migration -----------------------------------------------------------------


def test_a_schema_2_database_migrates_to_3_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    for v in (1, 2):
        con.executescript(MIGRATIONS[v])
    con.execute("PRAGMA user_version=2")
    con.execute("INSERT INTO instance (id, mac, status, vlanid, primaryip, secondaryip, nat,"
                " allow, label, timestamp, pass) VALUES ('id-a', ?, 0, 1, '10.0.1.5', '', 0,"
                " 1, 'cam', 0, '')", (A,))
    con.execute("INSERT INTO bridges (mac_a, mac_b) VALUES (?, ?)", (A, B))
    con.commit()
    con.close()
    store = Store(db)
    try:
        # 3 added groups; later steps (4: quarantine) run on top
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
        assert [d.mac for d in store.load_devices()] == [A]
        assert [(b.mac_a, b.mac_b) for b in store.load_bridges()] == [(A, B)]
        assert store.load_memberships() == [] and store.load_access() == []
        reg = Registry(parse_settings(CONFIG), store)
        reg.groups.add_member("cams", A)
    finally:
        store.close()
    again = Store(db)  # opening a current DB migrates nothing
    try:
        assert [(m.group, m.mac) for m in again.load_memberships()] == [("cams", A)]
    finally:
        again.close()
