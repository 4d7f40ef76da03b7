"""The HTTP routes of the management API (aiohttp), on the daemon's own loop.

Every change goes through the :class:`~edgesec.registry.Registry` methods the
supervisor commands use, so validation and "durable before acknowledged" are
the same: a 2xx reply means the change was committed. Errors are JSON
``{"error": ..., "detail": ...}`` with a status code, never a traceback.

Who may do what is decided per request by :mod:`edgesec.api.auth` (token,
dashboard session, or the UNIX peer's credentials) against the scope each
route declares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from edgesec.api import auth, openapi
from edgesec.api.explain import ExplainError, explain
from edgesec.api.traffic import TrafficCache
from edgesec.api.views import (
    BadRequest,
    check_patch,
    device_json,
    iso,
    parse_mac,
    require_str,
    sse_message,
)
from edgesec.config import Settings
from edgesec.events import Event
from edgesec.net import drops
from edgesec.net.policy import PolicyConfig
from edgesec.registry import Registry, RegistryError
from edgesec.supervisor.audit import Audit, Peer
from edgesec.supervisor.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
SSE_QUEUE = 1000  # events buffered per subscriber before the oldest are dropped
SSE_KEEPALIVE_S = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ApiContext:
    """What the routes need from the gateway (no second copy of any state)."""

    settings: Settings
    registry: Registry
    status_lines: Callable[[], list[str]]
    counters: Callable[[], dict[str, dict[str, float]]]
    tokens: auth.TokenStore
    sessions: auth.Sessions = field(default_factory=auth.Sessions)
    started: float = field(default_factory=time.time)
    sse_clients: int = 0
    sse_dropped: int = 0
    audit: Audit | None = None
    traffic: TrafficCache | None = None
    # (registry generation, bridges, JSON body) of the last device list
    devices_cache: tuple[int, list[tuple[str, str]], bytes] | None = None

    def __post_init__(self) -> None:
        if self.audit is None:
            self.audit = Audit(self.registry.bus)
        if self.traffic is None:
            capture = self.settings.system.exec_capture
            self.traffic = TrafficCache(self.settings.capture.capture_db_path if capture
                                        else None)


CTX = web.AppKey("ctx", ApiContext)
WHO = web.RequestKey("who", auth.Who)


def error(status: int, message: str, detail: str = "") -> web.Response:
    return web.json_response({"error": message, "detail": detail}, status=status)


def scope(need: str) -> Callable[[Handler], Handler]:
    """Declare the scope a route needs (read, operator or admin)."""
    def mark(handler: Handler) -> Handler:
        handler.scope = need  # type: ignore[attr-defined]
        return handler
    return mark


_errors_log = RateLimitedLog(log, "API errors", logging.ERROR)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, check the route's scope, turn every failure into JSON."""
    ctx = request.app[CTX]
    need = getattr(getattr(request.match_info, "handler", None), "scope", "read")
    try:
        if need != "public":
            who = auth.identify(request, ctx.tokens, ctx.sessions)
            if who is None:
                reply = error(401, "unauthorized", "send 'Authorization: Bearer <token>'")
                reply.headers["WWW-Authenticate"] = 'Bearer realm="edgesec"'
                return reply
            if not auth.scope_allows(who.scope, need):
                return error(403, "forbidden", f"needs scope {need}, you have {who.scope}")
            if who.via == "session" and request.method not in ("GET", "HEAD") and \
                    not auth.csrf_ok(request, who):
                return error(403, "forbidden", "missing or wrong X-CSRF-Token")
            request[WHO] = who
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reply = error(exc.status, exc.reason, exc.text or "")
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):  # e.g. 405 must say Allow
            if name in exc.headers:
                reply.headers[name] = exc.headers[name]
        auth.security_headers(reply)
        return reply
    except BadRequest as exc:
        return error(400, "bad request", str(exc))
    except (RegistryError, ExplainError) as exc:
        return error(400, "bad request", str(exc))
    except Exception as exc:
        _errors_log.log("%s %s failed: %s", request.method, request.path, exc)
        return error(500, "internal error", "see the daemon log")
    auth.security_headers(response)
    return response


async def _json_body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest(f"body larger than {MAX_BODY} bytes")
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body is not valid JSON") from None


def _mac(request: web.Request, name: str = "mac") -> str:
    return parse_mac(request.match_info[name], name)


def _audit(request: web.Request, command: str, *args: str) -> None:
    """The same audit line and POLICY event as the supervisor command would give."""
    who = request.get(WHO)
    peer = who.peer() if who is not None else Peer("api")
    audit = request.app[CTX].audit
    assert audit is not None
    audit.record(command, tuple(args), peer, "OK\n")


# -- devices -----------------------------------------------------------------------
def _device(ctx: ApiContext, mac: str) -> dict[str, Any]:
    dev = ctx.registry.get(mac)
    if dev is None:
        raise web.HTTPNotFound(reason="not found", text=f"no device {mac}")
    return device_json(dev, ctx.registry.bridge_partners(mac))


@scope("read")
async def list_devices(request: web.Request) -> web.Response:
    """Every device; the body is rebuilt only after the registry changed."""
    ctx = request.app[CTX]
    reg = ctx.registry
    generation, bridges = reg.generation, reg.bridges()
    cached = ctx.devices_cache
    if cached is None or cached[0] != generation or cached[1] != bridges:
        partners: dict[str, list[str]] = {}
        for a, b in bridges:
            partners.setdefault(a, []).append(b)
            partners.setdefault(b, []).append(a)
        body = json.dumps([device_json(d, partners.get(d.mac, []))
                           for d in reg.devices()]).encode()
        cached = ctx.devices_cache = (generation, bridges, body)
    return web.Response(body=cached[2], content_type="application/json")


@scope("read")
async def get_device(request: web.Request) -> web.Response:
    return web.json_response(_device(request.app[CTX], _mac(request)))


@scope("operator")
async def patch_device(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    mac = _mac(request)
    changes = check_patch(await _json_body(request))
    dev = ctx.registry.get(mac)
    if dev is None:
        raise web.HTTPNotFound(reason="not found", text=f"no device {mac}")
    if "psk" in changes and not auth.scope_allows(request[WHO].scope, "admin"):
        raise web.HTTPForbidden(reason="forbidden", text="setting a PSK needs scope admin")
    vlan = changes.get("vlan", dev.vlanid)
    if "vlan" in changes and ctx.settings.interfaces.subnet_for_vlan(vlan) is None:
        raise BadRequest(f"vlan: VLAN {vlan} is not configured")
    reg = ctx.registry
    if changes.get("allowed") is False:
        reg.deny_mac(mac)
        _audit(request, "DENY_MAC", mac)
    if changes.get("allowed") is True or ("vlan" in changes and vlan != dev.vlanid):
        reg.accept_mac(mac, vlan)
        _audit(request, "ACCEPT_MAC", mac, str(vlan))
    if "nat" in changes:
        reg.set_nat(mac, changes["nat"])
        _audit(request, "ADD_NAT" if changes["nat"] else "REMOVE_NAT", mac)
    if "label" in changes:
        reg.set_label(mac, changes["label"])
        _audit(request, "SET_LABEL", mac, changes["label"])
    if "psk" in changes:
        if changes["psk"]:
            reg.assign_psk(mac, changes["psk"])
            _audit(request, "ASSIGN_PSK", mac, changes["psk"])
        else:
            reg.clear_psk(mac)
            _audit(request, "CLEAR_PSK", mac)
    return web.json_response(_device(ctx, mac))


@scope("operator")
async def create_device(request: web.Request) -> web.Response:
    """Admit a MAC on a VLAN (ACCEPT_MAC); 409 if the device exists."""
    ctx = request.app[CTX]
    body = await _json_body(request)
    mac = parse_mac(require_str(body, "mac"))
    vlan = body.get("vlan")
    if type(vlan) is not int or ctx.settings.interfaces.subnet_for_vlan(vlan) is None:
        raise BadRequest("vlan: expected the id of a configured VLAN")
    if ctx.registry.get(mac) is not None:
        return error(409, "conflict", f"device {mac} exists; PATCH it instead")
    ctx.registry.accept_mac(mac, vlan)
    _audit(request, "ACCEPT_MAC", mac, str(vlan))
    return web.json_response(_device(ctx, mac), status=201)


# -- bridges -------------------------------------------------------------------------
@scope("read")
async def list_bridges(request: web.Request) -> web.Response:
    records = request.app[CTX].registry.bridge_records()
    return web.json_response([
        {"a": b.a, "b": b.b, "reason": b.reason,
         "created": iso(b.created) if b.created else None,
         "expires": iso(b.expires) if b.expires else None} for b in records])


@scope("operator")
async def add_bridge(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await _json_body(request)
    a, b = parse_mac(require_str(body, "a"), "a"), parse_mac(require_str(body, "b"), "b")
    for mac in (a, b):
        if ctx.registry.get(mac) is None:
            raise web.HTTPNotFound(reason="not found", text=f"no device {mac}")
    if ctx.registry.has_bridge(a, b):
        return error(409, "conflict", f"bridge {a} {b} exists")
    ctx.registry.add_bridge(a, b)
    _audit(request, "ADD_BRIDGE", a, b)
    return web.json_response({"a": min(a, b), "b": max(a, b)}, status=201)


@scope("operator")
async def remove_bridge(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    a, b = _mac(request, "a"), _mac(request, "b")
    if not ctx.registry.has_bridge(a, b):
        raise web.HTTPNotFound(reason="not found", text=f"no bridge {a} {b}")
    ctx.registry.remove_bridge(a, b)
    _audit(request, "REMOVE_BRIDGE", a, b)
    return web.Response(status=204)


# -- groups and one-way access --------------------------------------------------------
def _groups(ctx: ApiContext) -> Any:
    groups = getattr(ctx.registry, "groups", None)
    if groups is None:
        raise web.HTTPNotFound(reason="not found", text="this registry has no groups")
    return groups


def _group_name(request: web.Request) -> str:
    from edgesec.groups import check_group_name

    try:
        return check_group_name(request.match_info["group"])
    except RegistryError as exc:
        raise BadRequest(str(exc)) from None


@scope("read")
async def list_groups(request: web.Request) -> web.Response:
    by_group: dict[str, list[str]] = {}
    for group, mac in _groups(request.app[CTX]).memberships():
        by_group.setdefault(group, []).append(mac)
    return web.json_response([{"group": g, "members": sorted(m)}
                              for g, m in sorted(by_group.items())])


@scope("operator")
async def add_member(request: web.Request) -> web.Response:
    groups = _groups(request.app[CTX])
    group, mac = _group_name(request), _mac(request)
    if mac in groups.members(group):
        return error(409, "conflict", f"{mac} is already a member of {group}")
    groups.add_member(group, mac)
    _audit(request, "ADD_GROUP_MEMBER", group, mac)
    return web.json_response({"group": group, "members": sorted(groups.members(group))},
                             status=201)


@scope("operator")
async def remove_member(request: web.Request) -> web.Response:
    groups = _groups(request.app[CTX])
    group, mac = _group_name(request), _mac(request)
    if mac not in groups.members(group):
        raise web.HTTPNotFound(reason="not found", text=f"{mac} is not a member of {group}")
    groups.remove_member(group, mac)
    _audit(request, "REMOVE_GROUP_MEMBER", group, mac)
    return web.Response(status=204)


def _rule_json(rule: Any) -> dict[str, str]:
    return {"from": rule.src, "to": rule.dst, "service": rule.service}


def _rule(fields: Any) -> tuple[str, str, str, int, str]:
    from edgesec.groups import parse_service

    src = parse_mac(fields.get("from", "") if isinstance(fields.get("from"), str) else "",
                    "from")
    dst = parse_mac(fields.get("to", "") if isinstance(fields.get("to"), str) else "", "to")
    service = fields.get("service", "any")
    if not isinstance(service, str):
        raise BadRequest("service: expected tcp/<port>, udp/<port> or any")
    try:
        proto, port = parse_service(service)
    except RegistryError as exc:
        raise BadRequest(str(exc)) from None
    return src, dst, proto, port, service


@scope("read")
async def list_access(request: web.Request) -> web.Response:
    return web.json_response([_rule_json(r) for r in _groups(request.app[CTX]).rules()])


@scope("operator")
async def add_access(request: web.Request) -> web.Response:
    from edgesec.groups import Access

    groups = _groups(request.app[CTX])
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    src, dst, proto, port, service = _rule(body)
    if Access(src, dst, proto, port) in groups.rules():
        return error(409, "conflict", f"rule {src} -> {dst} {service} exists")
    rule = groups.add_access(src, dst, proto, port)
    _audit(request, "ADD_ACCESS", src, dst, *([service] if proto else []))
    return web.json_response(_rule_json(rule), status=201)


@scope("operator")
async def remove_access(request: web.Request) -> web.Response:
    from edgesec.groups import Access

    groups = _groups(request.app[CTX])
    src, dst, proto, port, service = _rule(request.query)
    if Access(src, dst, proto, port) not in groups.rules():
        raise web.HTTPNotFound(reason="not found", text=f"no rule {src} -> {dst} {service}")
    groups.remove_access(src, dst, proto, port)
    _audit(request, "REMOVE_ACCESS", src, dst, *([service] if proto else []))
    return web.Response(status=204)


# -- tickets -------------------------------------------------------------------------
@scope("operator")
async def create_ticket(request: web.Request) -> web.Response:
    """A single-use onboarding passphrase, returned once, with a WiFi QR payload."""
    ctx = request.app[CTX]
    body = await _json_body(request)
    label = require_str(body, "label")
    vlan = body.get("vlan")
    if type(vlan) is not int:
        raise BadRequest("vlan: expected an integer")
    issuer = body.get("issuer", "00:00:00:00:00:00")
    issuer = parse_mac(issuer if isinstance(issuer, str) else "", "issuer")
    ticket = ctx.registry.register_ticket(issuer, label, vlan)
    ssid = ctx.settings.ap.ssid
    _audit(request, "REGISTER_TICKET", issuer, label, str(vlan))
    return web.json_response({
        "passphrase": ticket.passphrase, "label": ticket.label, "vlan": ticket.vlanid,
        "expires": iso(ticket.expires), "ssid": ssid,
        "wifi_qr": f"WIFI:T:WPA;S:{_qr_escape(ssid)};P:{ticket.passphrase};;"}, status=201)


def _qr_escape(text: str) -> str:
    """The WIFI: URI escapes ``\\ ; , : "`` with a backslash."""
    return "".join("\\" + c if c in '\\;,:"' else c for c in text)


# -- status, events, explain, metrics ---------------------------------------------------
STATES = ("ok", "degraded", "failed")


def parse_status(lines: list[str]) -> list[dict[str, str]]:
    """``name state detail`` lines (STATUS) as records; a line without state is ok."""
    out = []
    for line in lines:
        name, _, rest = line.partition(" ")
        state, _, detail = rest.partition(" ")
        if state not in STATES:
            state, detail = "ok", rest
        out.append({"name": name, "state": state, "detail": detail.strip()})
    return out


@scope("read")
async def status(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    counters = ctx.counters()
    parsed = parse_status(ctx.status_lines())
    services = [{**svc, "counters": counters.get(svc["name"], {})} for svc in parsed]
    devices = ctx.registry.devices()
    return web.json_response({
        "state": max((s["state"] for s in parsed), key=STATES.index, default="ok"),
        "uptime_seconds": int(time.time() - ctx.started),
        "devices": {"total": len(devices), "allowed": sum(d.allow for d in devices),
                    "nat": sum(d.nat for d in devices)},
        "bridges": len(ctx.registry.bridges()),
        "services": services,
    })


@scope("read")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: every registry change and service event, as JSON."""
    ctx = request.app[CTX]
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=SSE_QUEUE)

    def forward(event: Event) -> None:
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            ctx.sse_dropped += 1
        queue.put_nowait(event)

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    auth.security_headers(response)
    await response.prepare(request)
    unsubscribe = ctx.registry.bus.subscribe(forward)
    ctx.sse_clients += 1
    try:
        await response.write(b": edgesec events\n\n")
        while True:
            try:
                async with asyncio.timeout(SSE_KEEPALIVE_S):  # never loses a cancel
                    event = await queue.get()
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            await response.write(sse_message(event, time.time()))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
        ctx.sse_clients -= 1
    return response


@scope("read")
async def explain_route(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    src, dst = request.query.get("src", ""), request.query.get("dst", "")
    if not src or not dst:
        raise BadRequest("give src (a device MAC) and dst (a MAC or an IPv4 address)")
    src = parse_mac(src, "src")
    cfg = PolicyConfig.from_settings(ctx.settings)
    return web.json_response(explain(cfg, ctx.registry, src, dst, _drops(ctx, cfg)).as_json())


def _drops(ctx: ApiContext, cfg: PolicyConfig) -> drops.Counts:
    """What the kernel dropped per path (nothing when the firewall is not ours to read)."""
    if not ctx.settings.system.exec_firewall:
        return {}
    try:
        from edgesec.net.nftbackend import backend_for

        return drops.read(backend_for(ctx.settings), cfg.table)
    except Exception:  # no nftables here: explain from policy alone
        return {}


@scope("read")
async def traffic(request: web.Request) -> web.Response:
    """Per device, the last hour of traffic seen by capture, and when it last sent."""
    cache = request.app[CTX].traffic
    assert cache is not None
    return web.json_response({mac: {
        "sent_packets": t.sent_packets, "sent_bytes": t.sent_bytes,
        "received_packets": t.received_packets, "received_bytes": t.received_bytes,
        "last_seen": iso(t.last_seen_us / 1e6) if t.last_seen_us else None}
        for mac, t in (await cache.get()).items()})


@scope("read")
async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    from edgesec.api.metrics import render_metrics  # prometheus_client: loaded on first scrape

    body = render_metrics(ctx.registry, parse_status(ctx.status_lines()), ctx.counters(),
                          {"sse_clients": ctx.sse_clients, "sse_dropped": ctx.sse_dropped})
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


@scope("public")
async def openapi_json(_request: web.Request) -> web.Response:
    return web.json_response(openapi.SPEC)


def build_app(ctx: ApiContext) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
    app[CTX] = ctx
    r = app.router
    r.add_get("/api/v1/devices", list_devices)
    r.add_post("/api/v1/devices", create_device)
    r.add_get("/api/v1/devices/{mac}", get_device)
    r.add_patch("/api/v1/devices/{mac}", patch_device)
    r.add_get("/api/v1/bridges", list_bridges)
    r.add_post("/api/v1/bridges", add_bridge)
    r.add_delete("/api/v1/bridges/{a}/{b}", remove_bridge)
    r.add_post("/api/v1/tickets", create_ticket)
    r.add_get("/api/v1/groups", list_groups)
    r.add_put("/api/v1/groups/{group}/members/{mac}", add_member)
    r.add_delete("/api/v1/groups/{group}/members/{mac}", remove_member)
    r.add_get("/api/v1/access", list_access)
    r.add_post("/api/v1/access", add_access)
    r.add_delete("/api/v1/access", remove_access)
    r.add_get("/api/v1/status", status)
    r.add_get("/api/v1/events", events)
    r.add_get("/api/v1/explain", explain_route)
    r.add_get("/api/v1/traffic", traffic)
    r.add_get("/api/v1/openapi.json", openapi_json)
    r.add_get("/metrics", metrics)
    from edgesec.api import dashboard

    dashboard.install(app)
    return app
