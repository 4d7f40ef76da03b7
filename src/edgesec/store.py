"""SQLite persistence of the device registry.

The connection DB keeps the original's ``instance`` table (same name and
columns, so an original database opens unchanged) and adds what the original
lost on restart: IP addresses (already columns of ``instance``), ``bridges``
and ``tickets``, and (version 3) ``group_members`` and ``access_rules``.
The schema is versioned with ``PRAGMA user_version`` and migrated forward on
open.  Every write is one transaction committed with WAL
and ``synchronous=FULL`` before the call returns, so an acknowledged change
survives ``kill -9`` and power loss.

The DB and its ``-wal``/``-shm`` are the daemon's own (mode 0600: they hold
passphrases), and a DB that fails ``PRAGMA quick_check`` is refused at open
rather than failing every write later.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SCHEMA_VERSION = 4
PRIVATE_MODE = 0o600
QUICK_CHECK_ROWS = 5  # problems quoted in the error


class StoreError(RuntimeError):
    """The connection DB cannot be used (corrupt, not a database, unreadable)."""

# Version 1 is the original edgesec's table; later versions are ours.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE IF NOT EXISTS instance (
        id TEXT NOT NULL, mac TEXT NOT NULL, status INTEGER, vlanid INTEGER,
        primaryip TEXT, secondaryip TEXT, nat INTEGER, allow INTEGER,
        label TEXT, timestamp INTEGER, pass TEXT, PRIMARY KEY (id, mac));
    """,
    2: """
    CREATE UNIQUE INDEX IF NOT EXISTS instance_mac ON instance (mac);
    CREATE TABLE IF NOT EXISTS bridges (
        mac_a TEXT NOT NULL, mac_b TEXT NOT NULL, reason TEXT NOT NULL DEFAULT 'manual',
        created INTEGER NOT NULL DEFAULT 0, expires INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (mac_a, mac_b), CHECK (mac_a < mac_b));
    CREATE TABLE IF NOT EXISTS tickets (
        passphrase TEXT PRIMARY KEY, issuer TEXT NOT NULL, label TEXT NOT NULL,
        vlanid INTEGER NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,
        used_by TEXT NOT NULL DEFAULT '');
    """,
    # Groups and one-way access (docs/network.md). proto '' and port 0 mean "any".
    3: """
    CREATE TABLE IF NOT EXISTS group_members (
        grp TEXT NOT NULL, mac TEXT NOT NULL, created INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (grp, mac));
    CREATE INDEX IF NOT EXISTS group_members_mac ON group_members (mac);
    CREATE TABLE IF NOT EXISTS access_rules (
        mac_from TEXT NOT NULL, mac_to TEXT NOT NULL, proto TEXT NOT NULL DEFAULT '',
        port INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (mac_from, mac_to, proto, port), CHECK (mac_from <> mac_to));
    """,
    # Quarantine (edgesec.detect): which devices are contained, and the audit
    # trail of every quarantine/release decision with its evidence.
    4: """
    CREATE TABLE IF NOT EXISTS quarantine (
        mac TEXT PRIMARY KEY, reason TEXT NOT NULL, source TEXT NOT NULL,
        created INTEGER NOT NULL, expires INTEGER NOT NULL DEFAULT 0,
        evidence TEXT NOT NULL DEFAULT '');
    CREATE TABLE IF NOT EXISTS audit (
        ts REAL NOT NULL, mac TEXT NOT NULL, action TEXT NOT NULL, source TEXT NOT NULL,
        reason TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '');
    """,
}


def database_files(path: Path) -> tuple[Path, Path, Path]:
    """An SQLite database's files: the main one, its ``-wal`` and its ``-shm``."""
    return path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")


def make_private(path: Path) -> None:
    """Create ``path`` 0600 if absent; tighten it and its ``-wal``/``-shm`` if open to others.

    SQLite gives the ``-wal`` and ``-shm`` files the main file's mode, so the
    main file's mode is the one that matters.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         PRIVATE_MODE))
    for p in database_files(path):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(p.stat().st_mode) & 0o077:
                os.chmod(p, PRIVATE_MODE)


_EMPTY: dict[str, Any] = {"int": 0, "str": "", "bool": False, "float": 0.0}
R = TypeVar("R", bound="DataclassInstance")


@cache
def columns(row_type: type[DataclassInstance]) -> dict[str, tuple[str, str]]:
    """Field name -> (column, field type) of a row dataclass; its SELECT list, in order.

    A field's column is its name unless its metadata names another (``column``).
    """
    return {f.name: (f.metadata.get("column", f.name), str(f.type)) for f in fields(row_type)}


def from_row(row_type: type[R], row: sqlite3.Row) -> R:
    """A row dataclass from a row read by column name (NULL is the type's empty value)."""
    values: dict[str, Any] = {}
    for name, (col, ftype) in columns(row_type).items():
        value = row[col]
        if value is None:
            value = _EMPTY.get(ftype)
        values[name] = bool(value) if ftype == "bool" else value
    return row_type(**values)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    mac: str
    status: int
    vlanid: int
    primaryip: str
    secondaryip: str
    nat: bool
    allow: bool
    label: str
    timestamp: int
    psk: str = field(metadata={"column": "pass"})  # the original's column name


@dataclass(frozen=True, slots=True)
class BridgeRow:
    mac_a: str
    mac_b: str
    reason: str
    created: int
    expires: int


@dataclass(frozen=True, slots=True)
class TicketRow:
    passphrase: str
    issuer: str
    label: str
    vlanid: int
    created: int
    expires: int
    used_by: str = ""  # the MAC the ticket was bound to by its first use


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    mac: str
    reason: str
    source: str  # "manual" (supervisor) or the detector that decided
    created: int
    expires: int = 0  # unix seconds, 0 = until released
    evidence: str = ""  # JSON of the alert(s) that caused it


@dataclass(frozen=True, slots=True)
class AuditRow:
    ts: float
    mac: str
    action: str  # quarantine | release | expire
    source: str
    reason: str
    evidence: str = ""


MAX_AUDIT_ROWS = 10_000  # the oldest audit rows are deleted beyond this


@dataclass(frozen=True, slots=True)
class MembershipRow:
    group: str = field(metadata={"column": "grp"})  # GROUP is an SQL keyword
    mac: str
    created: int = 0


@dataclass(frozen=True, slots=True)
class AccessRow:
    mac_from: str
    mac_to: str
    proto: str = ""  # "" (any protocol), "tcp" or "udp"
    port: int = 0  # 0 = any port (only with proto "")
    created: int = 0


class Store:
    """One SQLite connection to the connection DB; methods are transactions."""

    def __init__(self, path: Path | str | None) -> None:
        target = ":memory:" if path in (None, "", ":memory:") else str(path)
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            make_private(Path(target))
        self.path = target
        self.db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        try:
            self._quick_check()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:  # includes "database disk image is malformed"
            self.db.close()
            raise StoreError(f"connection DB '{target}' cannot be used: {exc}; restore it "
                             "from a backup or move it away to start empty") from None
        except BaseException:
            self.db.close()
            raise

    def _quick_check(self) -> None:
        """``PRAGMA quick_check`` (pages, indexes' order, NOT NULL; O(size), ms for 10k rows)."""
        rows = [r[0] for r in self.db.execute(
            f"PRAGMA quick_check({QUICK_CHECK_ROWS})").fetchall()]
        if rows != ["ok"]:
            found = "; ".join(r.replace("\n", " ") for r in rows)
            raise sqlite3.DatabaseError(f"corrupt (PRAGMA quick_check: {found})")

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                if target == 2:
                    self._dedupe_macs()
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={target}")

    def _dedupe_macs(self) -> None:
        """The original keyed rows by (id, mac); keep one row per MAC before indexing it."""
        self.db.execute(
            "DELETE FROM instance WHERE rowid NOT IN (SELECT max(rowid) FROM instance GROUP BY mac)"
        )

    @contextmanager
    def transaction(self, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back if the body raises.

        ``fsync=False`` commits with ``synchronous=NORMAL``: the change survives
        a crash of the process (it is in the WAL) but not a power loss.  Only
        for bookkeeping the original did not persist at all (join timestamps).
        """
        if not fsync:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        finally:
            if not fsync:
                self.db.execute("PRAGMA synchronous=FULL")

    # -- reads -------------------------------------------------------------
    def select(self, row_type: type[R], rest: str, params: tuple[Any, ...] = ()) -> list[R]:
        """``SELECT <row_type's columns> <rest>``, each row read by column name."""
        cur = self.db.cursor()
        cur.row_factory = sqlite3.Row
        listed = ", ".join(col for col, _ in columns(row_type).values())
        return [from_row(row_type, r) for r in cur.execute(f"SELECT {listed} {rest}", params)]

    def load_devices(self) -> list[DeviceRow]:
        return self.select(DeviceRow, "FROM instance ORDER BY rowid")

    def load_bridges(self) -> list[BridgeRow]:
        return self.select(BridgeRow, "FROM bridges ORDER BY rowid")

    def load_tickets(self) -> list[TicketRow]:
        return self.select(TicketRow, "FROM tickets")

    def load_memberships(self) -> list[MembershipRow]:
        return self.select(MembershipRow, "FROM group_members ORDER BY rowid")

    def load_access(self) -> list[AccessRow]:
        return self.select(AccessRow, "FROM access_rules ORDER BY rowid")

    # -- writes (call inside transaction()) ---------------------------------
    def put_device(self, row: DeviceRow) -> None:
        self.db.execute(
            "INSERT INTO instance (id, mac, status, vlanid, primaryip, secondaryip, nat, allow,"
            " label, timestamp, pass) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(mac) DO UPDATE SET id=excluded.id, status=excluded.status,"
            " vlanid=excluded.vlanid, primaryip=excluded.primaryip,"
            " secondaryip=excluded.secondaryip, nat=excluded.nat, allow=excluded.allow,"
            " label=excluded.label, timestamp=excluded.timestamp, pass=excluded.pass",
            (row.id, row.mac, row.status, row.vlanid, row.primaryip, row.secondaryip,
             int(row.nat), int(row.allow), row.label, row.timestamp, row.psk),
        )

    def delete_devices(self, macs: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM instance WHERE mac=?", [(m,) for m in macs])

    def put_bridge(self, row: BridgeRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO bridges (mac_a, mac_b, reason, created, expires)"
            " VALUES (?,?,?,?,?)",
            (row.mac_a, row.mac_b, row.reason, row.created, row.expires),
        )

    def delete_bridges(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.db.executemany("DELETE FROM bridges WHERE mac_a=? AND mac_b=?", list(pairs))

    def put_ticket(self, row: TicketRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO tickets (passphrase, issuer, label, vlanid, created,"
            " expires, used_by) VALUES (?,?,?,?,?,?,?)",
            (row.passphrase, row.issuer, row.label, row.vlanid, row.created, row.expires,
             row.used_by),
        )

    def delete_tickets(self, passphrases: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM tickets WHERE passphrase=?", [(p,) for p in passphrases])

    def put_membership(self, row: MembershipRow) -> None:
        self.db.execute("INSERT OR REPLACE INTO group_members (grp, mac, created) VALUES (?,?,?)",
                        (row.group, row.mac, row.created))

    def delete_membership(self, group: str, mac: str) -> None:
        self.db.execute("DELETE FROM group_members WHERE grp=? AND mac=?", (group, mac))

    def put_access(self, row: AccessRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO access_rules (mac_from, mac_to, proto, port, created)"
            " VALUES (?,?,?,?,?)", (row.mac_from, row.mac_to, row.proto, row.port, row.created))

    def delete_access(self, mac_from: str, mac_to: str, proto: str, port: int) -> None:
        self.db.execute("DELETE FROM access_rules WHERE mac_from=? AND mac_to=? AND proto=?"
                        " AND port=?", (mac_from, mac_to, proto, port))

    def delete_memberships_of(self, mac: str) -> None:
        """Every group membership and access rule naming ``mac`` (device removal)."""
        self.db.execute("DELETE FROM group_members WHERE mac=?", (mac,))
        self.db.execute("DELETE FROM access_rules WHERE mac_from=? OR mac_to=?", (mac, mac))

    def delete_tickets_used_by(self, macs: Iterable[str]) -> None:
        """Forget which tickets these devices used (removing a device removes its binding)."""
        self.db.executemany("DELETE FROM tickets WHERE used_by=?", [(m,) for m in macs])

    # -- quarantine and its audit trail (edgesec.detect) --------------------
    def load_quarantines(self) -> list[QuarantineRow]:
        return self.select(QuarantineRow, "FROM quarantine")

    def put_quarantine(self, row: QuarantineRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO quarantine (mac, reason, source, created, expires, evidence)"
            " VALUES (?,?,?,?,?,?)",
            (row.mac, row.reason, row.source, row.created, row.expires, row.evidence))

    def delete_quarantines(self, macs: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM quarantine WHERE mac=?", [(m,) for m in macs])

    def add_audit(self, row: AuditRow) -> None:
        """Append one decision; the table keeps the newest MAX_AUDIT_ROWS rows."""
        cur = self.db.execute(
            "INSERT INTO audit (ts, mac, action, source, reason, evidence) VALUES (?,?,?,?,?,?)",
            (row.ts, row.mac, row.action, row.source, row.reason, row.evidence))
        if cur.lastrowid and cur.lastrowid % 100 == 0:
            self.db.execute("DELETE FROM audit WHERE rowid <= ?",
                            (cur.lastrowid - MAX_AUDIT_ROWS,))

    def load_audit(self, mac: str | None = None, limit: int = 1000) -> list[AuditRow]:
        if mac:
            rows = self.select(AuditRow, "FROM audit WHERE mac=? ORDER BY rowid DESC LIMIT ?",
                               (mac, limit))
        else:
            rows = self.select(AuditRow, "FROM audit ORDER BY rowid DESC LIMIT ?", (limit,))
        return rows[::-1]
