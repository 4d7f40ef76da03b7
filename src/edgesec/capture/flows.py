"""Flows middleware: one SQLite row per bidirectional flow (beyond the original).

Table ``flows`` (columns ``flowtrack.FLOW_COLUMNS``): Community ID v1,
first/last seen (µs), packets and bytes each way, originator and responder
MAC (a device's traffic: ``WHERE src_mac = ? OR dst_mac = ?``). Rows are
upserted once per batch for the flows the batch touched; flows idle past
``flow_timeout`` leave memory (their row stays).
"""

from __future__ import annotations

from edgesec.capture.flowtrack import FLOW_COLUMNS, FlowTracker
from edgesec.capture.middleware import Batch, Context

CREATE = (
    "CREATE TABLE IF NOT EXISTS flows (flow_id INTEGER PRIMARY KEY, community_id TEXT, "
    "ifname TEXT, proto INTEGER, src_ip TEXT, src_port INTEGER, dst_ip TEXT, dst_port INTEGER, "
    "src_mac TEXT, dst_mac TEXT, first_seen INTEGER, last_seen INTEGER, "
    "pkts_toserver INTEGER, pkts_toclient INTEGER, bytes_toserver INTEGER, "
    "bytes_toclient INTEGER, tcp_flags INTEGER, state TEXT)"
)
INDEXES = (
    "CREATE INDEX IF NOT EXISTS flows_src_mac ON flows (src_mac, first_seen)",
    "CREATE INDEX IF NOT EXISTS flows_dst_mac ON flows (dst_mac, first_seen)",
    "CREATE INDEX IF NOT EXISTS flows_community_id ON flows (community_id)",
    "CREATE INDEX IF NOT EXISTS flows_last_seen ON flows (last_seen)",
)
_UPDATED = ("last_seen", "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient",
            "tcp_flags", "state")
UPSERT = (
    f"INSERT INTO flows ({', '.join(FLOW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in FLOW_COLUMNS)}) ON CONFLICT(flow_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _UPDATED)
)


class FlowsMiddleware:
    """Maintain the ``flows`` table."""

    name = "flows"

    def init(self, ctx: Context) -> None:
        """Create the table and indexes."""
        self._db = ctx.db
        ctx.db.execute(CREATE)
        for stmt in INDEXES:
            ctx.db.execute(stmt)
        self.tracker = FlowTracker(ctx.options.flow_timeout)

    def process(self, batch: Batch) -> None:
        """Account the batch and upsert the touched flows."""
        seen = self.tracker.update(batch.ifname, batch.frames, [p[1] for p in batch.packets])
        touched = {id(f): f for f in seen if f is not None}
        if touched:
            self._db.executemany(UPSERT, [f.row() for f in touched.values()])
        self.tracker.expire()

    def close(self) -> None:
        """Forget the in-memory flows (rows are current)."""
        self.tracker.drain()
