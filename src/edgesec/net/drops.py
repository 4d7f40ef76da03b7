"""What the kernel dropped: the per-pair counters of the policy's ``drops`` set.

The firewall's final drop rules feed ``saddr . daddr`` of every dropped IPv4
packet from a device into a dynamic set with a counter per element (forgotten
after :data:`~edgesec.net.policy.DROPS_TIMEOUT_S` without drops). This module
reads and parses it; explain turns it into "N packets dropped".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edgesec.net import policy as P

Counts = dict[tuple[str, str], tuple[int, int]]  # (saddr, daddr) -> (packets, bytes)


def parse(listing: Mapping[str, Any]) -> Counts:
    """Counts from ``nft -j list set inet <table> drops`` (malformed entries skipped)."""
    out: Counts = {}
    for obj in listing.get("nftables", []):
        body = obj.get("set") if isinstance(obj, dict) else None
        if not isinstance(body, dict) or body.get("name") != P.DROPS:
            continue
        for item in body.get("elem", []):
            elem = item.get("elem", item) if isinstance(item, dict) else None
            if not isinstance(elem, dict):
                continue
            val = elem.get("val")
            pair = val.get("concat") if isinstance(val, dict) else None
            if not (isinstance(pair, list) and len(pair) == 2):
                continue
            counter = elem.get("counter") or {}
            out[(str(pair[0]), str(pair[1]))] = (int(counter.get("packets", 0)),
                                                 int(counter.get("bytes", 0)))
    return out


def read(backend: Any, table: str) -> Counts:
    """The current counts, or none when the set cannot be listed."""
    rc, text, _err = backend.cmd(f"list set inet {table} {P.DROPS}")
    if rc != 0:
        return {}
    try:
        return parse(json.loads(text))
    except (ValueError, TypeError, AttributeError):
        return {}
