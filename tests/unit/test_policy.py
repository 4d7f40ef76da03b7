"""Unit tests of the pure firewall policy (registry snapshot in, nftables JSON out)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from edgesec.net import policy as P
from edgesec.net.firewall import table_differences
from edgesec.registry import Device

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def Dev(mac: str, **fields: Any) -> Device:
    """A real registry record, on VLAN 1 unless told otherwise."""
    return Device(mac, **{"vlanid": 1, **fields})


def cfg(nat_if: str = "wan0") -> P.PolicyConfig:
    subs = tuple(P.PolicySubnet(v, f"br{v}", ipaddress.IPv4Network(f"10.0.{v}.0/24"))
                 for v in (1, 2, 3))
    return P.PolicyConfig(subnets=subs, nat_interface=nat_if)


DA = Dev(A, vlanid=1, primary_ip="10.0.1.5")
DB = Dev(B, vlanid=2, primary_ip="10.0.2.5")
DC = Dev(C, vlanid=3, primary_ip="10.0.3.5")


def rules(c: P.PolicyConfig) -> list[dict[str, Any]]:
    return [x["add"]["rule"] for x in P.skeleton(c).commands if "rule" in x.get("add", {})]


def test_isolation_only_leases_no_paths() -> None:
    rows = P.elements(cfg(), [DA, DB, DC], [])
    assert rows[P.LEASES] == {("br1", A, "10.0.1.5"), ("br2", B, "10.0.2.5"),
                              ("br3", C, "10.0.3.5")}
    assert rows[P.BRIDGES] == set() and rows[P.NAT] == set() and rows[P.DENIED] == set()


def test_every_device_chain_ends_in_drop_and_gateway_allows_only_dhcp_dns_mdns() -> None:
    rs = rules(cfg())
    by_chain: dict[str, list[dict[str, Any]]] = {}
    for r in rs:
        by_chain.setdefault(r["chain"], []).append(r)
    for chain in ("input", "input6", "from_device", "to_device"):
        assert by_chain[chain][-1]["expr"] == [{"drop": None}], chain
    accepted_ports = set()
    for r in by_chain["input"]:
        if {"accept": None} in r["expr"]:
            for e in r["expr"]:
                m = e.get("match", {})
                if m.get("left", {}).get("payload", {}).get("field") == "dport":
                    accepted_ports.add((m["left"]["payload"]["protocol"], m["right"]))
    assert accepted_ports == {("udp", 67), ("udp", 53), ("tcp", 53), ("udp", 5353)}
    # the only unconditional accept in input is for traffic NOT from device bridges
    first = by_chain["input"][0]["expr"][0]["match"]
    assert first["op"] == "!=" and first["right"] == "@device_ifs"


def test_anti_spoofing_checks_bridge_mac_and_ip_before_any_accept() -> None:
    chain = [r for r in rules(cfg()) if r["chain"] == "from_device"]
    names = [r["comment"].rsplit(":", 1)[1] for r in chain]
    assert names.index("spoof") < names.index("bridge") < names.index("nat-out")
    spoof = chain[names.index("spoof")]["expr"][0]["match"]
    assert spoof["op"] == "!=" and spoof["right"] == "@leases"
    assert [k for k in spoof["left"]["concat"]] == [
        {"meta": {"key": "iifname"}}, {"payload": {"protocol": "ether", "field": "saddr"}},
        {"payload": {"protocol": "ip", "field": "saddr"}}]


def test_bridge_allows_both_directions_of_exactly_that_pair() -> None:
    rows = P.elements(cfg(), [DA, DB, DC], [(A, B)])
    assert rows[P.BRIDGES] == {("10.0.1.5", "10.0.2.5"), ("10.0.2.5", "10.0.1.5")}


def test_bridge_with_secondary_ips_covers_every_combination() -> None:
    a2 = replace(DA, secondary_ip="10.0.1.6")
    rows = P.elements(cfg(), [a2, DB], [(A, B)])
    assert len(rows[P.BRIDGES]) == 4


def test_nat_only_for_devices_with_nat_and_only_with_a_nat_interface() -> None:
    a = replace(DA, nat=True)
    assert P.elements(cfg(), [a, DB], [])[P.NAT] == {"10.0.1.5"}
    assert P.elements(cfg(nat_if=""), [a, DB], [])[P.NAT] == set()
    assert not [r for r in rules(cfg(nat_if="")) if "nat" in r["comment"]]
    masq = [r for r in rules(cfg()) if r["chain"] == "postrouting"]
    assert masq and {"masquerade": None} in masq[0]["expr"]


def test_denied_device_loses_every_path_and_its_bridges_stop_applying() -> None:
    b = replace(DB, allow=False, nat=True)
    rows = P.elements(cfg(), [DA, b, DC], [(A, B), (B, C)])
    assert rows[P.DENIED] == {B}
    assert rows[P.BRIDGES] == set()
    assert rows[P.NAT] == set()
    assert all(mac != B for _, mac, _ in rows[P.LEASES])


def test_address_outside_the_vlan_subnet_is_not_trusted() -> None:
    moved = replace(DA, vlanid=2)  # still holds 10.0.1.5 from VLAN 1
    rows = P.elements(cfg(), [moved, DB], [(A, B)])
    assert rows[P.LEASES] == {("br2", B, "10.0.2.5")}
    assert rows[P.BRIDGES] == set()
    unknown_vlan = replace(DA, vlanid=99)
    assert P.elements(cfg(), [unknown_vlan], [])[P.LEASES] == set()


def test_bridge_to_unknown_device_is_ignored() -> None:
    rows = P.elements(cfg(), [DA], [(A, B)])
    assert rows[P.BRIDGES] == set()


def test_full_commands_replace_table_in_one_list_and_diff_uses_set_elements() -> None:
    c = cfg()
    rows = P.elements(c, [DA, DB], [(A, B)])
    cmds = P.full_commands(c, rows, table_exists=True)
    assert cmds[0] == {"delete": {"table": {"family": "inet", "name": "edgesec"}}}
    assert {"add": {"table": {"family": "inet", "name": "edgesec"}}} in cmds
    new = P.elements(c, [DA, DB, replace(DC)], [(A, B), (A, C)])
    add = {n: new[n] - rows[n] for n in P.ROW_SETS}
    dele = {n: rows[n] - new[n] for n in P.ROW_SETS}
    assert add[P.BRIDGES] == {("10.0.1.5", "10.0.3.5"), ("10.0.3.5", "10.0.1.5")}
    assert not any(dele.values())
    diff = P.diff_commands("edgesec", add, dele)
    assert all(next(iter(x)) == "add" and "element" in next(iter(x.values())) for x in diff)
    bridge_cmd = next(x for x in diff if x["add"]["element"]["name"] == P.BRIDGES)
    assert {"concat": ["10.0.1.5", "10.0.3.5"]} in bridge_cmd["add"]["element"]["elem"]
    assert P.diff_commands("edgesec", P.empty_rows(), P.empty_rows()) == []


def test_table_name_comes_from_settings() -> None:
    c = P.PolicyConfig(subnets=(), table="edgesec_t1")
    for cmd in P.skeleton(c).commands:
        body = next(iter(next(iter(cmd.values())).values()))
        assert body.get("table", body.get("name")) == "edgesec_t1"


def _listing(c: P.PolicyConfig, rows: P.Rows) -> dict[str, Any]:
    """What ``nft -j list table`` would print for the policy (shape only)."""
    sk = P.skeleton(c)
    out: list[dict[str, Any]] = [{"metainfo": {}}, {"table": {"name": c.table}}]
    for name in P.SET_TYPES:
        items = sk.device_ifs if name == P.DEVICE_IFS else rows.get(name, set())
        s: dict[str, Any] = {"name": name}
        if items:
            s["elem"] = [P._elem(r) for r in items]
        out.append({"set": s})
    out += [{"chain": {"name": ch}} for ch in sk.chains]
    out += [{"rule": {"chain": ch, "comment": cm}}
            for ch, cms in sk.rule_comments.items() for cm in cms]
    return {"nftables": out}


def test_table_differences_detects_missing_altered_and_equal() -> None:
    c = cfg()
    rows = P.elements(c, [DA, DB], [(A, B)])
    sk = P.skeleton(c)
    assert table_differences(_listing(c, rows), sk, rows) == []
    assert table_differences(None, sk, rows) == ["table missing"]
    fewer = P.elements(c, [DA, DB], [])
    assert table_differences(_listing(c, fewer), sk, rows) == ["set bridges"]
    listing = _listing(c, rows)
    listing["nftables"] = [o for o in listing["nftables"]
                           if o.get("rule", {}).get("comment") != "edgesec:input:drop"]
    assert table_differences(listing, sk, rows) == ["rules of chain input"]


def _split(nat_if: str = "wan0") -> P.PolicyConfig:
    return replace(cfg(nat_if), dns_forward_port=5053)


def _match(expr: list[dict[str, Any]], left: dict[str, Any]) -> Any:
    return next((e["match"]["right"] for e in expr if e.get("match", {}).get("left") == left),
                None)


def test_split_dns_redirects_only_nat_devices_and_accepts_the_port_only_from_them() -> None:
    rs = rules(_split())
    by_chain: dict[str, list[dict[str, Any]]] = {}
    for r in rs:
        by_chain.setdefault(r["chain"], []).append(r)
    redirect = by_chain["prerouting"]
    assert [r["comment"] for r in redirect] == ["edgesec:prerouting:dns-redirect-udp",
                                                "edgesec:prerouting:dns-redirect-tcp"]
    for r, proto in zip(redirect, ("udp", "tcp"), strict=True):
        e = r["expr"]
        assert _match(e, {"meta": {"key": "iifname"}}) == "@device_ifs"
        assert _match(e, {"payload": {"protocol": "ip", "field": "saddr"}}) == "@nat"
        assert _match(e, {"fib": {"result": "type", "flags": ["daddr"]}}) == "local"
        assert _match(e, {"payload": {"protocol": proto, "field": "dport"}}) == 53
        assert e[-1] == {"redirect": {"port": 5053}}
    # input: the forwarder's port needs a NAT source, and drop stays last
    fwd = [r for r in by_chain["input"] if "5053" in str(r["expr"])]
    assert len(fwd) == 2 and all(
        _match(r["expr"], {"payload": {"protocol": "ip", "field": "saddr"}}) == "@nat"
        for r in fwd)
    names = [r["comment"].rsplit(":", 1)[1] for r in by_chain["input"]]
    assert names.index("spoof") < names.index("dns-forward-udp") and names[-1] == "drop"
    sk = P.skeleton(_split())
    assert "prerouting" in sk.chains
    chain = next(c["add"]["chain"] for c in sk.commands
                 if c.get("add", {}).get("chain", {}).get("name") == "prerouting")
    assert (chain["type"], chain["hook"], chain["prio"]) == ("nat", "prerouting", -100)
    rows = P.elements(_split(), [DA, replace(DB, nat=True)], [])
    assert table_differences(_listing(_split(), rows), sk, rows) == []


def test_no_redirect_without_split_or_without_nat_interface() -> None:
    for c in (cfg(), _split(nat_if="")):
        assert "prerouting" not in P.skeleton(c).chains
        assert "5053" not in str(rules(c))


def test_forwarder_port_answers_only_allowed_devices_with_nat() -> None:
    """Asked packet by packet of the computed rules (``edgesec.net.evaluator``)."""
    from edgesec.net.evaluator import Packet, Ruleset

    c = _split()
    devices = [replace(DA, nat=True), DB, replace(DC, nat=True, allow=False)]
    rs = Ruleset.from_policy(P.skeleton(c).commands, P.elements(c, devices, []))
    for proto in ("udp", "tcp"):
        def to_gw(d: Device, port: int, src: str = "", proto: str = proto) -> bool:
            return bool(rs.verdict(Packet(f"br{d.vlanid}", d.mac, src or d.primary_ip,
                                          f"10.0.{d.vlanid}.1", l4proto=proto, dport=port)))
        assert to_gw(DA, 5053) and to_gw(DA, 53)
        assert not to_gw(DB, 5053) and to_gw(DB, 53)  # no NAT: the local resolver only
        assert not to_gw(DC, 5053) and not to_gw(DC, 53)  # denied: nothing
        assert not to_gw(DB, 5053, src="10.0.1.5")  # B claiming A's address: spoof drop
