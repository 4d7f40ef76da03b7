"""The management API against a real Registry (SQLite in memory) over real HTTP.

aiohttp's test server listens on loopback TCP, so these requests carry bearer
tokens; the UNIX-socket peer-credential path is covered by the daemon tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from edgesec.api.app import ApiContext, build_app, parse_status
from edgesec.api.tokens import TokenStore
from edgesec.config import parse_settings
from edgesec.events import EventBus
from edgesec.registry import Registry
from edgesec.store import Store

CONFIG = """
[system]
defaultOpenVlanId = 1
[interfaces]
if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"
if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"
[nat]
natInterface = "wan0"
[ap]
ssid = "lab;net"
"""
A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


class Api:
    """A client plus one token of each scope."""

    def __init__(self, client: TestClient, ctx: ApiContext, tokens: dict[str, str]) -> None:
        self.client, self.ctx, self.tokens = client, ctx, tokens

    def accept_pair(self) -> Registry:
        """A accepted on VLAN 1 and B on VLAN 2; the registry."""
        reg = self.ctx.registry
        reg.accept_mac(A, 1)
        reg.accept_mac(B, 2)
        return reg

    async def call(self, method: str, path: str, scope: str | None = "admin",
                   **kw: Any) -> tuple[int, Any]:
        headers = kw.pop("headers", {})
        if scope is not None:
            headers["Authorization"] = f"Bearer {self.tokens[scope]}"
        async with self.client.request(method, path, headers=headers, **kw) as res:
            text = await res.text()
            try:
                return res.status, json.loads(text)
            except ValueError:
                return res.status, text


def run(test: Callable[[Api], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        async for api in _api(tmp_path):
            await test(api)
    asyncio.run(main())


async def _api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = parse_settings(CONFIG, "test.ini", tmp_path)
    registry = Registry(settings, Store(":memory:"), EventBus())
    store = TokenStore(tmp_path / "tokens.json")
    tokens = {s: store.create(s, f"test {s}")[0] for s in ("read", "operator", "admin")}
    ctx = ApiContext(settings, registry, lambda: ["firewall ok running", "dhcp degraded no x"],
                     lambda: {"radius": {"requests": 3, "dropped|reason=malformed": 1}}, store)
    client = TestClient(TestServer(build_app(ctx)))
    await client.start_server()
    try:
        yield Api(client, ctx, tokens)
    finally:
        await client.close()


def test_devices_listed_without_psk_and_with_words(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        reg = api.ctx.registry
        reg.accept_mac(A, 1)
        reg.assign_psk(A, "secret-psk-1")
        reg.set_ip("add", A, "10.0.1.5")
        reg.accept_mac(B, 2)
        reg.add_bridge(A, B)
        status, body = await api.call("GET", "/api/v1/devices", "read")
        assert status == 200
        by_mac = {d["mac"]: d for d in body}
        assert by_mac[A]["has_psk"] is True and "psk" not in by_mac[A]
        assert "secret-psk-1" not in json.dumps(body)
        assert by_mac[A]["ips"] == ["10.0.1.5"] and by_mac[A]["status"] == "unknown"
        assert by_mac[A]["bridges"] == [B] and by_mac[B]["bridges"] == [A]
    run(t, tmp_path)


def test_every_scope_is_enforced(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        api.ctx.registry.accept_mac(A, 1)
        assert (await api.call("GET", "/api/v1/devices", None))[0] == 401
        bad = {"Authorization": "Bearer est_0000_nope"}
        assert (await api.call("GET", "/api/v1/devices", None, headers=bad))[0] == 401
        status, body = await api.call("PATCH", f"/api/v1/devices/{A}", "read",
                                      json={"nat": True})
        assert status == 403 and "operator" in body["detail"]
        assert api.ctx.registry.get(A).nat is False  # type: ignore[union-attr]
        status, _ = await api.call("PATCH", f"/api/v1/devices/{A}", "operator",
                                   json={"psk": "abcdefgh1"})
        assert status == 403
        status, body = await api.call("PATCH", f"/api/v1/devices/{A}", "operator",
                                      json={"nat": True})
        assert status == 200 and body["nat"] is True
        assert api.ctx.registry.get(A).nat is True  # type: ignore[union-attr]
    run(t, tmp_path)


@pytest.mark.parametrize(("body", "why"), [
    ({"nat": "yes"}, "nat: expected bool"),
    ({"vlan": True}, "vlan: expected int"),
    ({"vlan": 9}, "VLAN 9 is not configured"),
    ({"colour": "red"}, "unknown field"),
    ({}, "non-empty"),
    ([1, 2], "non-empty JSON object"),
])
def test_bad_patches_get_400_with_the_reason_and_change_nothing(
        tmp_path: Path, body: Any, why: str) -> None:
    async def t(api: Api) -> None:
        before = api.ctx.registry.accept_mac(A, 1)
        status, reply = await api.call("PATCH", f"/api/v1/devices/{A}", json=body)
        assert status == 400 and why in reply["detail"], reply
        assert api.ctx.registry.get(A) == before
    run(t, tmp_path)


def test_malformed_oversized_and_unknown(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        api.ctx.registry.accept_mac(A, 1)
        status, reply = await api.call("PATCH", f"/api/v1/devices/{A}", data=b"{nope")
        assert status == 400 and "not valid JSON" in reply["detail"]
        status, reply = await api.call("PATCH", f"/api/v1/devices/{A}",
                                       data=b'{"label": "' + b"x" * 70000 + b'"}')
        assert status in (400, 413) and "error" in reply
        assert (await api.call("GET", "/api/v1/devices/zz:zz"))[0] == 400
        status, reply = await api.call("GET", "/api/v1/devices/02:00:00:00:00:99")
        assert status == 404 and reply["error"] == "not found"
        assert (await api.call("GET", "/api/v1/nothing-here"))[0] == 404
    run(t, tmp_path)


def test_bridges_create_conflict_delete(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        reg = api.accept_pair()
        assert (await api.call("POST", "/api/v1/bridges", json={"a": A, "b": B}))[0] == 201
        assert reg.has_bridge(A, B)
        assert (await api.call("POST", "/api/v1/bridges", json={"a": B, "b": A}))[0] == 409
        _, body = await api.call("GET", "/api/v1/bridges", "read")
        assert body == [{"a": A, "b": B, "reason": "manual", "created": body[0]["created"],
                         "expires": None}]
        assert (await api.call("DELETE", f"/api/v1/bridges/{B}/{A}"))[0] == 204
        assert not reg.has_bridge(A, B)
        assert (await api.call("DELETE", f"/api/v1/bridges/{B}/{A}"))[0] == 404
    run(t, tmp_path)


def test_ticket_is_returned_once_with_an_escaped_wifi_payload(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        status, body = await api.call("POST", "/api/v1/tickets", "operator",
                                      json={"label": "cam", "vlan": 2})
        assert status == 201
        assert body["wifi_qr"] == f"WIFI:T:WPA;S:lab\\;net;P:{body['passphrase']};;"
        assert api.ctx.registry.admit("02:00:00:00:00:33", body["passphrase"]).vlan == 2
        status, body = await api.call("POST", "/api/v1/tickets", json={"label": "x", "vlan": 7})
        assert status == 400 and "VLAN" in body["detail"]
    run(t, tmp_path)


def test_status_is_structured(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        status, body = await api.call("GET", "/api/v1/status", "read")
        assert status == 200 and body["state"] == "degraded"
        by_name = {s["name"]: s for s in body["services"]}
        assert by_name["firewall"]["state"] == "ok"
        assert by_name["dhcp"] == {"name": "dhcp", "state": "degraded", "detail": "no x",
                                   "counters": {}}
    run(t, tmp_path)


def test_parse_status_reads_old_and_new_lines() -> None:
    assert parse_status(["supervisor ok listening x", "capture failed: boom",
                         "hostapd degraded not attached"]) == [
        {"name": "supervisor", "state": "ok", "detail": "listening x"},
        {"name": "capture", "state": "ok", "detail": "failed: boom"},
        {"name": "hostapd", "state": "degraded", "detail": "not attached"}]


def test_metrics_parse_and_follow_the_registry(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        api.ctx.registry.accept_mac(A, 1)
        api.ctx.registry.deny_mac(B)
        status, text = await api.call("GET", "/metrics", "read")
        assert status == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert samples[("edgesec_devices", (("state", "allowed"),))] == 1
        assert samples[("edgesec_devices", (("state", "denied"),))] == 1
        assert samples[("edgesec_radius_requests_total", ())] == 3
        assert samples[("edgesec_radius_dropped_total", (("reason", "malformed"),))] == 1
        assert samples[("edgesec_service_state",
                        (("service", "dhcp"), ("state", "degraded")))] == 1
    run(t, tmp_path)


def test_explain_names_the_missing_bridge_and_nat(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        reg = api.ctx.registry
        reg.accept_mac(A, 1)
        reg.set_ip("add", A, "10.0.1.5")
        reg.accept_mac(B, 2)
        reg.set_ip("add", B, "10.0.2.5")
        _, body = await api.call("GET", f"/api/v1/explain?src={A}&dst={B}", "read")
        assert body["allowed"] is False and body["rule"] == "edgesec:from_device:drop"
        assert f"ADD_BRIDGE {A} {B}" in body["remedies"]
        _, body = await api.call("GET", f"/api/v1/explain?src={A}&dst=198.51.100.7", "read")
        assert body["allowed"] is False and f"ADD_NAT {A}" in body["remedies"]
        reg.add_bridge(A, B)
        reg.set_nat(A, True)
        _, body = await api.call("GET", f"/api/v1/explain?src={A}&dst=10.0.2.5", "read")
        assert body["allowed"] is True and body["rule"] == "edgesec:from_device:bridge"
        _, body = await api.call("GET", f"/api/v1/explain?src={A}&dst=198.51.100.7", "read")
        assert body["allowed"] is True and body["rule"] == "edgesec:from_device:nat-out"
        status, body = await api.call("GET", "/api/v1/explain?src=nope&dst=x", "read")
        assert status == 400
    run(t, tmp_path)


def test_explain_names_the_group_or_access_rule(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        reg = api.ctx.registry
        for mac, vlan in ((A, 1), (B, 2)):
            reg.accept_mac(mac, vlan)
            reg.set_ip("add", mac, f"10.0.{vlan}.5")
        reg.groups.add_member("cams", A)
        _, body = await api.call("GET", f"/api/v1/explain?src={B}&dst={A}", "read")
        assert body["allowed"] is False
        assert f"ADD_GROUP_MEMBER cams {B}" in body["remedies"]
        assert any("group cams would allow it" in r for r in body["reasons"]), body
        reg.groups.add_access(A, B, "tcp", 80)
        _, body = await api.call("GET", f"/api/v1/explain?src={A}&dst={B}", "read")
        assert body["allowed"] is True and body["rule"] == "edgesec:from_device:access"
        assert f"allowed by access rule {A} -> {B} tcp/80" in body["reasons"]
        _, body = await api.call("GET", f"/api/v1/explain?src={B}&dst={A}", "read")
        assert body["allowed"] is False
        assert any("one-way" in r for r in body["reasons"]), body
        reg.groups.add_member("cams", B)
        _, body = await api.call("GET", f"/api/v1/explain?src={B}&dst={A}", "read")
        assert body["allowed"] is True and body["rule"] == "edgesec:from_device:group"
        assert "allowed by group cams (both are members)" in body["reasons"]
    run(t, tmp_path)


def test_events_stream_registry_changes_without_secrets(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        headers = {"Authorization": f"Bearer {api.tokens['read']}"}
        async with api.client.get("/api/v1/events", headers=headers) as res:
            assert res.status == 200
            assert await res.content.readline() == b": edgesec events\n"
            await res.content.readline()
            api.ctx.registry.accept_mac(A, 1)
            api.ctx.registry.assign_psk(A, "hidden-psk-9")
            lines = [await asyncio.wait_for(res.content.readline(), 10) for _ in range(4)]
        events = [json.loads(x[6:]) for x in lines if x.startswith(b"data: ")]
        assert [e["kind"] for e in events] == ["device", "device"]
        assert events[0]["mac"] == A and events[0]["ts"].endswith("+00:00")
        assert b"hidden-psk-9" not in b"".join(lines)
    run(t, tmp_path)


def test_dashboard_login_session_and_csrf(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        c = api.client
        async with c.get("/") as res:
            assert res.status == 200 and "API token" in await res.text()
            assert "default-src 'self'" in res.headers["Content-Security-Policy"]
        async with c.post("/login", data={"token": "est_x_y"}, allow_redirects=False) as res:
            assert res.status == 401
        async with c.post("/login", data={"token": api.tokens["operator"]},
                          allow_redirects=False) as res:
            assert res.status == 303
        async with c.get("/") as res:
            page = await res.text()
        csrf = page.split('name="csrf" content="')[1].split('"')[0]
        api.ctx.registry.accept_mac(A, 1)
        async with c.patch(f"/api/v1/devices/{A}", json={"nat": True}) as res:
            assert res.status == 403  # the cookie alone is not enough
        async with c.patch(f"/api/v1/devices/{A}", json={"nat": True},
                           headers={"X-CSRF-Token": csrf}) as res:
            assert res.status == 200
        assert api.ctx.registry.get(A).nat is True  # type: ignore[union-attr]
        async with c.get("/static/app.js") as res:
            assert res.status == 200 and "X-CSRF-Token" in await res.text()
    run(t, tmp_path)


def test_openapi_document_is_served_without_a_token(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        status, spec = await api.call("GET", "/api/v1/openapi.json", None)
        assert status == 200 and spec["openapi"].startswith("3.")
        assert "/api/v1/devices/{mac}" in spec["paths"]
    run(t, tmp_path)


def test_tokens_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    token, record = store.create("read", "grafana")
    assert token.split("_", 2)[2] not in (tmp_path / "t.json").read_text()
    assert (tmp_path / "t.json").stat().st_mode & 0o777 == 0o600
    assert TokenStore(tmp_path / "t.json").verify(token) == record
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.revoke(record.id) and store.verify(token) is None


def test_api_changes_are_audited_like_supervisor_commands(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def t(api: Api) -> None:
        events: list[Any] = []
        api.ctx.registry.bus.subscribe(events.append)
        api.ctx.registry.accept_mac(A, 1)
        with caplog.at_level("INFO", logger="edgesec.audit"):
            status, _ = await api.call("PATCH", f"/api/v1/devices/{A}", "operator",
                                       json={"nat": True, "psk": ""})
            assert status == 403  # PSK needs admin: nothing applied, nothing audited
            status, _ = await api.call("PATCH", f"/api/v1/devices/{A}", "operator",
                                       json={"nat": True})
        assert status == 200
        policy = [e for e in events if e.kind == "policy"]
        assert [(e.data["command"], e.data["args"]) for e in policy] == [("ADD_NAT", [A])]
        token_id = api.tokens["operator"].split("_")[1]
        assert policy[0].data["source"] == f"api:token={token_id}"
        assert any("audit: ADD_NAT" in r.getMessage() for r in caplog.records)
    run(t, tmp_path)


def test_the_device_list_follows_bridges_and_devices(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        reg = api.accept_pair()
        first = (await api.call("GET", "/api/v1/devices"))[1]
        assert all(d["bridges"] == [] for d in first)
        reg.add_bridge(A, B)
        second = {d["mac"]: d for d in (await api.call("GET", "/api/v1/devices"))[1]}
        assert second[A]["bridges"] == [B]
        reg.set_nat(B, True)
        third = {d["mac"]: d for d in (await api.call("GET", "/api/v1/devices"))[1]}
        assert third[B]["nat"] is True
    run(t, tmp_path)


def test_drop_counters_are_parsed_and_summed_per_path() -> None:
    from edgesec.api.explain import dropped_on_path
    from edgesec.net import drops
    from edgesec.net.policy import PolicyConfig

    listing = {"nftables": [{"metainfo": {}}, {"set": {"name": "drops", "elem": [
        {"elem": {"val": {"concat": ["10.0.1.5", "10.0.2.5"]}, "expires": 3590,
                  "counter": {"packets": 47, "bytes": 2820}}},
        {"elem": {"val": {"concat": ["10.0.1.5", "198.51.100.7"]},
                  "counter": {"packets": 3, "bytes": 180}}},
        {"elem": {"val": {"concat": ["10.0.1.5", "203.0.113.9"]},
                  "counter": {"packets": 2, "bytes": 120}}},
        {"elem": {"val": "not-a-pair"}}, "junk"]}}]}
    counts = drops.parse(listing)
    assert counts[("10.0.1.5", "10.0.2.5")] == (47, 2820) and len(counts) == 3
    cfg = PolicyConfig.from_settings(parse_settings(CONFIG, "t.ini"))
    assert dropped_on_path(cfg, counts, ["10.0.1.5"], "10.0.2.5", False) == (47, 2820)
    assert dropped_on_path(cfg, counts, ["10.0.1.5"], "192.0.2.1", True) == (5, 300)
    assert dropped_on_path(cfg, counts, ["10.0.1.6"], "10.0.2.5", False) == (0, 0)
    assert drops.parse({"nftables": "nonsense"}) == {}


def test_groups_and_access_rules_through_the_api(tmp_path: Path) -> None:
    async def t(api: Api) -> None:
        reg = api.accept_pair()
        path = f"/api/v1/groups/cams/members/{A}"
        assert (await api.call("PUT", path, "read"))[0] == 403
        status, body = await api.call("PUT", path, "operator")
        assert status == 201 and body == {"group": "cams", "members": [A]}
        assert (await api.call("PUT", path, "operator"))[0] == 409
        assert (await api.call("PUT", f"/api/v1/groups/Bad!/members/{A}"))[0] == 400
        assert (await api.call("PUT", "/api/v1/groups/cams/members/02:00:00:00:00:99"))[0] == 400
        assert (await api.call("GET", "/api/v1/groups", "read"))[1] == [
            {"group": "cams", "members": [A]}]
        rule = {"from": B, "to": A, "service": "tcp/80"}
        status, body = await api.call("POST", "/api/v1/access", json=rule)
        assert status == 201 and body == rule
        assert (await api.call("POST", "/api/v1/access", json=rule))[0] == 409
        status, body = await api.call("POST", "/api/v1/access",
                                      json={**rule, "service": "tcp/70000"})
        assert status == 400 and "port" in body["detail"]
        assert (await api.call("GET", "/api/v1/access", "read"))[1] == [rule]
        q = f"/api/v1/access?from={B}&to={A}&service=tcp/80"
        assert (await api.call("DELETE", q))[0] == 204
        assert (await api.call("DELETE", q))[0] == 404
        assert (await api.call("DELETE", path))[0] == 204
        assert reg.groups.memberships() == [] and reg.groups.rules() == []
    run(t, tmp_path)
