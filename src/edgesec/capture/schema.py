"""Header-table schema: the original's table names and columns, in order.

Owns the column lists of the header middleware tables (``eth`` … ``dhcp``),
the CREATE/INSERT statements built from them and the extra indexes we add
for time and MAC queries. The decoder produces row tuples in exactly this
column order.
"""

from __future__ import annotations

# dns and mdns rows have the same columns (as in the original's schema).
_DNS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "TEXT NOT NULL"),
    ("tid", "INTEGER"),
    ("flags", "INTEGER"),
    ("nqueries", "INTEGER"),
    ("nanswers", "INTEGER"),
    ("nauth", "INTEGER"),
    ("nother", "INTEGER"),
    ("qname", "TEXT"),
)

TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "eth": (
        ("timestamp", "INTEGER NOT NULL"),
        ("id", "TEXT NOT NULL"),
        ("caplen", "INTEGER"),
        ("length", "INTEGER"),
        ("ifname", "TEXT"),
        ("ether_dhost", "TEXT"),
        ("ether_shost", "TEXT"),
        ("ether_type", "INTEGER"),
    ),
    "arp": (
        ("id", "TEXT"),
        ("ar_hrd", "INTEGER"),
        ("ar_pro", "INTEGER"),
        ("ar_hln", "INTEGER"),
        ("ar_pln", "INTEGER"),
        ("ar_op", "INTEGER"),
        ("arp_sha", "TEXT"),
        ("arp_spa", "TEXT"),
        ("arp_tha", "TEXT"),
        ("arp_tpa", "TEXT"),
    ),
    "ip4": (
        ("id", "TEXT NOT NULL"),
        ("ip_hl", "INTEGER"),
        ("ip_v", "INTEGER"),
        ("ip_tos", "INTEGER"),
        ("ip_len", "INTEGER"),
        ("ip_id", "INTEGER"),
        ("ip_off", "INTEGER"),
        ("ip_ttl", "INTEGER"),
        ("ip_p", "INTEGER"),
        ("ip_sum", "INTEGER"),
        ("ip_src", "TEXT"),
        ("ip_dst", "TEXT"),
    ),
    "ip6": (
        ("id", "TEXT NOT NULL"),
        ("ip6_un1_flow", "INTEGER"),
        ("ip6_un1_plen", "INTEGER"),
        ("ip6_un1_nxt", "INTEGER"),
        ("ip6_un1_hlim", "INTEGER"),
        ("ip6_un2_vfc", "INTEGER"),
        ("ip6_src", "TEXT"),
        ("ip6_dst", "TEXT"),
    ),
    "tcp": (
        ("id", "TEXT NOT NULL"),
        ("source", "INTEGER"),
        ("dest", "INTEGER"),
        ("seq", "INTEGER"),
        ("ack_seq", "INTEGER"),
        ("res1", "INTEGER"),
        ("doff", "INTEGER"),
        ("fin", "INTEGER"),
        ("syn", "INTEGER"),
        ("rst", "INTEGER"),
        ("psh", "INTEGER"),
        ("ack", "INTEGER"),
        ("urg", "INTEGER"),
        ("window", "INTEGER"),
        ("check_p", "INTEGER"),
        ("urg_ptr", "INTEGER"),
    ),
    "udp": (
        ("id", "TEXT NOT NULL"),
        ("source", "INTEGER"),
        ("dest", "INTEGER"),
        ("len", "INTEGER"),
        ("check_p", "INTEGER"),
    ),
    "icmp4": (
        ("id", "TEXT NOT NULL"),
        ("type", "INTEGER"),
        ("code", "INTEGER"),
        ("checksum", "INTEGER"),
        ("gateway", "INTEGER"),
    ),
    "icmp6": (
        ("id", "TEXT NOT NULL"),
        ("icmp6_type", "INTEGER"),
        ("icmp6_code", "INTEGER"),
        ("icmp6_cksum", "INTEGER"),
        ("icmp6_un_data32", "INTEGER"),
    ),
    "dns": _DNS_COLUMNS,
    "mdns": _DNS_COLUMNS,
    "dhcp": (
        ("id", "TEXT NOT NULL"),
        ("op", "INTEGER"),
        ("htype", "INTEGER"),
        ("hlen", "INTEGER"),
        ("hops", "INTEGER"),
        ("xid", "INTEGER"),
        ("secs", "INTEGER"),
        ("flags", "INTEGER"),
        ("ciaddr", "TEXT"),
        ("yiaddr", "TEXT"),
        ("siaddr", "TEXT"),
        ("giaddr", "TEXT"),
        ("chaddr", "TEXT"),
    ),
}

TABLE_NAMES: tuple[str, ...] = tuple(TABLES)
WIDTHS: dict[str, int] = {table: len(cols) for table, cols in TABLES.items()}  # columns per row

_PRIMARY_KEYS = {"eth": "timestamp, id"}

# Our additions: the original had only the primary keys, so "what did MAC X
# do between t1 and t2" scanned the whole eth table. Time queries use the
# (timestamp, id) primary key of eth; joins to the layer tables use their
# primary key on id.
INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS eth_shost ON eth (ether_shost, timestamp)",
    "CREATE INDEX IF NOT EXISTS eth_dhost ON eth (ether_dhost, timestamp)",
)


def columns(table: str) -> tuple[str, ...]:
    """Column names of ``table`` in insertion order."""
    return tuple(name for name, _ in TABLES[table])


def create_statement(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the original's columns and key.

    ``WITHOUT ROWID``: the primary key is the table's only B-tree (the
    original's rowid tables kept a second index for it); columns, types and
    keys are unchanged for readers.
    """
    cols = ", ".join(f"{name} {kind}" for name, kind in TABLES[table])
    key = _PRIMARY_KEYS.get(table, "id")
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols}, PRIMARY KEY ({key})) WITHOUT ROWID"


def insert_statement(table: str) -> str:
    """Positional INSERT for ``table`` (one ``?`` per column)."""
    marks = ", ".join("?" for _ in TABLES[table])
    return f"INSERT OR IGNORE INTO {table} VALUES ({marks})"
