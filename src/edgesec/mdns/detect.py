"""Kernel-side detection of first packets to announced addresses (nftables).

Owns the table ``inet edgesec_mdns`` (separate from the main firewall
table, so the two never collide): two timed sets of addresses whose owners
announced them over mDNS, and one forward-hook chain at priority
``filter - 10`` (before the main forward chain) that only **logs** new
connections from a device bridge to such an address to NFLOG group *N*::

    iifname { br2, br5 } ip daddr @announced4 ct state new \
        limit rate 200/second log group N

Python sees only those first packets (read by :mod:`edgesec.mdns.nflog`);
every other forwarded packet stays in the kernel.  The chain never accepts
or drops anything.  Talks nftables JSON through :mod:`edgesec.net.nftbackend`
(the libnftables binding, or the ``nft`` binary without it).  :meth:`Detector.intact`
tells whether someone removed or altered the table (the service re-installs it).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TABLE", "Detector", "NftError"]

TABLE = "edgesec_mdns"
FAMILY = "inet"


class NftError(RuntimeError):
    """libnftables refused a command."""


def _nft() -> Any:
    from edgesec.net.nftbackend import shared_backend

    return shared_backend()


class Detector:
    """Creates, feeds and removes the detection table."""

    def __init__(self, bridges: list[str], group: int, timeout: int = 600,
                 backend: Any = None) -> None:
        self.bridges = sorted(set(bridges))
        self.group = group
        self.timeout = max(1, int(timeout))
        self._nft = backend if backend is not None else _nft()

    def own_pids(self) -> frozenset[int]:
        """Processes whose ruleset commits are ours (the watcher ignores them)."""
        return frozenset(self._nft.own_pids())

    def intact(self) -> bool:
        """Whether the table still has both sets, the chain and its rules."""
        rc, text, _err = self._nft.cmd(f"list table {FAMILY} {TABLE}", terse=True)
        if rc != 0:
            return False
        kinds: dict[str, list[str]] = {}
        for item in json.loads(text).get("nftables", []):
            for kind in ("set", "chain", "rule"):
                if kind in item:
                    kinds.setdefault(kind, []).append(item[kind].get("name", ""))
        return (sorted(kinds.get("set", [])) == ["announced4", "announced6"]
                and kinds.get("chain") == ["detect"]
                and len(kinds.get("rule", [])) == (2 if self.bridges else 0))

    def _run(self, commands: list[dict[str, Any]]) -> None:
        rc, _out, err = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(err.strip() or f"nft exit {rc}")

    def _rule(self, proto: str, set_name: str) -> dict[str, Any]:
        expr: list[dict[str, Any]] = [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                       "right": {"set": list(self.bridges)}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "daddr"}},
                       "right": f"@{set_name}"}},
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
            {"limit": {"rate": 200, "per": "second"}},
            {"log": {"group": self.group, "prefix": "edgesec-mdns "}},
        ]
        return {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": "detect",
                                 "expr": expr}}}

    def install(self) -> None:
        """(Re)create the table from scratch."""
        self.remove()
        cmds: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
        for name, kind in (("announced4", "ipv4_addr"), ("announced6", "ipv6_addr")):
            cmds.append({"add": {"set": {"family": FAMILY, "table": TABLE, "name": name,
                                         "type": kind, "flags": ["timeout"],
                                         "timeout": self.timeout}}})
        cmds.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": "detect",
                                       "type": "filter", "hook": "forward", "prio": -10,
                                       "policy": "accept"}}})
        if self.bridges:
            cmds.append(self._rule("ip", "announced4"))
            cmds.append(self._rule("ip6", "announced6"))
        self._run(cmds)

    def announce(self, addresses: list[str]) -> None:
        """Add (or refresh the timeout of) announced addresses."""
        v4 = [a for a in addresses if ":" not in a]
        v6 = [a for a in addresses if ":" in a]
        cmds: list[dict[str, Any]] = []
        for name, addrs in (("announced4", v4), ("announced6", v6)):
            if addrs:
                elems = [{"elem": {"val": a, "timeout": self.timeout}} for a in addrs]
                cmds.append({"delete": {"element": {"family": FAMILY, "table": TABLE,
                                                    "name": name, "elem": addrs}}})
                cmds.append({"add": {"element": {"family": FAMILY, "table": TABLE,
                                                 "name": name, "elem": elems}}})
        for cmd in cmds:  # a delete of an absent element fails; that is fine
            try:
                self._run([cmd])
            except NftError:
                if "add" in cmd:
                    raise

    def announced(self) -> set[str]:
        """Addresses currently in the sets."""
        out: set[str] = set()
        for name in ("announced4", "announced6"):
            rc, text, _err = self._nft.cmd(f"list set {FAMILY} {TABLE} {name}")
            if rc != 0:
                continue
            for item in json.loads(text).get("nftables", []):
                for elem in item.get("set", {}).get("elem", []):
                    val = elem.get("elem", {}).get("val") if isinstance(elem, dict) else elem
                    if isinstance(val, str):
                        out.add(val)
        return out

    def remove(self) -> None:
        """Delete the table if it exists."""
        rc, _out, _err = self._nft.cmd(f"list table {FAMILY} {TABLE}")
        if rc == 0:
            self._run([{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
