"""An interpreter of the generated nftables ruleset, for asking "does this packet pass?".

Owns: answering, without root or a kernel, what the ruleset that
:mod:`edgesec.net.policy` builds does to one packet, given the set elements of
a registry snapshot. It reads the same libnftables JSON commands the firewall
sends (``add table/set/element/chain/rule``), so a property test can check
isolation, bridge symmetry, NAT direction and anti-spoofing on the *computed
rules* rather than on set contents (the idea of FAUCET's ``FakeOFTable``).

Only the expressions the policy uses are understood (matches on ``meta``,
``payload`` (``th`` ports too), ``ct state``/``ct direction``, ``concat`` keys
(compared as strings, as the policy's rows are), named and anonymous sets, and the
verdicts ``accept``/``drop``/``jump``/``goto``/``return``); anything else
raises :class:`UnsupportedExpression`, so a new rule form cannot be silently
misread. Network namespaces remain the end-to-end proof.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JsonCmd = dict[str, Any]


class UnsupportedExpression(ValueError):
    """The ruleset uses an expression this interpreter does not model."""


@dataclass(frozen=True, slots=True)
class Packet:
    """The fields of one packet that the ruleset can look at.

    ``oif`` empty means the packet is addressed to the gateway itself (input
    hook); otherwise it is being routed out of ``oif`` (forward hook).
    """

    iif: str
    src_mac: str
    src_ip: str
    dst_ip: str
    oif: str = ""
    l4proto: str = "tcp"
    dport: int = 0
    family: str = "ipv4"
    ct_state: str = "new"
    icmpv6_type: str = ""
    ct_direction: str = "original"  # "reply" for the answering side of a connection
    sport: int = 0

    @property
    def hook(self) -> str:
        return "forward" if self.oif else "input"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the ruleset decided and which rule (its comment) decided it."""

    accepted: bool
    rule: str

    def __bool__(self) -> bool:
        return self.accepted


@dataclass
class _Chain:
    hook: str | None
    type: str
    policy: str
    rules: list[tuple[str, list[dict[str, Any]]]]


class Ruleset:
    """One ``inet`` table built from command lists, ready to evaluate packets."""

    def __init__(self, commands: Iterable[JsonCmd]) -> None:
        self.sets: dict[str, set[Any]] = {}
        self.chains: dict[str, _Chain] = {}
        for cmd in commands:
            self._load(cmd)

    @classmethod
    def from_policy(cls, skeleton_commands: Iterable[JsonCmd],
                    rows: Mapping[str, Iterable[Any]]) -> Ruleset:
        """The skeleton plus a snapshot's set elements (as ``policy.elements`` gives)."""
        ruleset = cls(skeleton_commands)
        for name, items in rows.items():
            ruleset.sets.setdefault(name, set()).update(_key(i) for i in items)
        return ruleset

    def _load(self, cmd: JsonCmd) -> None:
        (op, body), = cmd.items()
        if op != "add":
            raise UnsupportedExpression(f"command {op!r}")
        (kind, obj), = body.items()
        if kind == "set":
            self.sets.setdefault(obj["name"], set())
        elif kind == "element":
            self.sets.setdefault(obj["name"], set()).update(_key(e) for e in obj["elem"])
        elif kind == "chain":
            self.chains[obj["name"]] = _Chain(obj.get("hook"), obj.get("type", ""),
                                              obj.get("policy", "accept"), [])
        elif kind == "rule":
            self.chains[obj["chain"]].rules.append((obj.get("comment", ""), obj["expr"]))
        elif kind != "table":
            raise UnsupportedExpression(f"object {kind!r}")

    # -- evaluation --------------------------------------------------------------
    def verdict(self, packet: Packet) -> Verdict:
        """Run the filter base chain of the packet's hook; its policy if nothing decides."""
        for name, chain in self.chains.items():
            if chain.hook == packet.hook and chain.type == "filter":
                decided = self._run(name, packet, depth=0)
                if decided is not None:
                    return decided
                return Verdict(chain.policy == "accept", f"{name}:policy")
        return Verdict(True, "no-chain")

    def _run(self, chain_name: str, packet: Packet, depth: int) -> Verdict | None:
        if depth > 16:
            raise UnsupportedExpression("jump loop")
        for comment, exprs in self.chains[chain_name].rules:
            outcome = self._rule(exprs, packet, depth)
            if outcome == "return":
                return None
            if isinstance(outcome, Verdict):
                return outcome if outcome.rule else Verdict(outcome.accepted, comment)
        return None

    def _rule(self, exprs: list[dict[str, Any]], packet: Packet,
              depth: int) -> Verdict | str | None:
        for expr in exprs:
            (kind, arg), = expr.items()
            if kind == "match":
                if not self._match(arg, packet):
                    return None
            elif kind in ("accept", "drop"):
                return Verdict(kind == "accept", "")
            elif kind in ("jump", "goto"):
                decided = self._run(arg["target"], packet, depth + 1)
                if decided is not None or kind == "goto":
                    return decided if decided is not None else "return"
            elif kind == "return":
                return "return"
            elif kind == "set" and arg.get("op") in ("add", "update"):
                continue  # feeds a dynamic set (drop counting); decides nothing
            elif kind not in ("counter", "log", "masquerade"):
                raise UnsupportedExpression(f"statement {kind!r}")
        return None

    def _match(self, match: dict[str, Any], packet: Packet) -> bool:
        left = _value(match["left"], packet)
        if left is None:  # the field is absent from this packet: nothing matches it
            return False
        right = match["right"]
        op = match["op"]
        if isinstance(right, str) and right.startswith("@"):
            found = left in self.sets.get(right[1:], set())
        elif isinstance(right, dict) and "set" in right:
            found = left in {_key(r) for r in right["set"]}
        elif isinstance(right, list):  # ct state flags: any of them
            found = left in right
        else:
            found = left == right
        if op in ("==", "in"):
            return found
        if op == "!=":
            return not found
        raise UnsupportedExpression(f"operator {op!r}")


def _key(item: Any) -> Any:
    if isinstance(item, dict) and "concat" in item:
        return tuple(str(x) for x in item["concat"])
    if isinstance(item, list):
        return tuple(item)
    if isinstance(item, tuple):  # a policy row (strings; ports as text)
        return tuple(str(x) for x in item)
    return item


_META = {"iifname": "iif", "oifname": "oif", "l4proto": "l4proto", "nfproto": "family"}


def _value(left: dict[str, Any], packet: Packet) -> Any:
    """The packet's value of a match's left side, or None where the packet has none."""
    if "concat" in left:
        parts = tuple(_value(part, packet) for part in left["concat"])
        return None if None in parts else tuple(str(p) for p in parts)
    if "meta" in left:
        attr = _META.get(left["meta"]["key"])
        if attr is None:
            raise UnsupportedExpression(f"meta {left['meta']['key']!r}")
        return getattr(packet, attr)
    if "ct" in left:
        key = left["ct"]["key"]
        if key == "state":
            return packet.ct_state
        if key == "direction":
            return packet.ct_direction
        raise UnsupportedExpression(f"ct {key!r}")
    if "payload" in left:
        return _payload(left["payload"]["protocol"], left["payload"]["field"], packet)
    raise UnsupportedExpression(f"expression {left!r}")


def _payload(proto: str, fld: str, packet: Packet) -> Any:
    if (proto, fld) == ("ether", "saddr"):
        return packet.src_mac
    if proto == "ip" and packet.family == "ipv4" and fld in ("saddr", "daddr"):
        return packet.src_ip if fld == "saddr" else packet.dst_ip
    if proto == "ip6" and packet.family == "ipv6" and fld in ("saddr", "daddr"):
        return packet.src_ip if fld == "saddr" else packet.dst_ip
    if proto in ("udp", "tcp") and fld == "dport":
        return packet.dport if packet.l4proto == proto else None
    if proto == "th" and fld in ("dport", "sport"):  # the transport header, TCP or UDP
        if packet.l4proto not in ("tcp", "udp"):
            return None
        return packet.dport if fld == "dport" else packet.sport
    if (proto, fld) == ("icmpv6", "type"):
        return packet.icmpv6_type or None
    if proto in ("ip", "ip6", "icmpv6"):
        return None
    raise UnsupportedExpression(f"payload {proto} {fld}")
