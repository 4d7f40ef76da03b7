"""The web dashboard: one server-rendered page, a small script and a style sheet.

No build step and nothing from a CDN: the page is rendered here, ``app.js``
talks to ``/api/v1`` with the session cookie plus the CSRF token the page
carries, and follows ``/api/v1/events`` for live updates. Logging in takes an
API token (``edgesec api token create``); the session keeps its scope.
"""

from __future__ import annotations

import html
from importlib import resources

import segno
from aiohttp import web

from edgesec.api import auth
from edgesec.api.app import CTX, _json_body, scope
from edgesec.api.views import BadRequest, require_str

STATIC = {"app.js": "text/javascript", "app.css": "text/css"}


def _asset(name: str) -> bytes:
    return resources.files("edgesec.api").joinpath("static", name).read_bytes()


def _page(title: str, body: str, meta: str = "") -> web.Response:
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>{meta}
<link rel="stylesheet" href="/static/app.css"></head>
<body>{body}</body></html>"""
    response = web.Response(text=text, content_type="text/html")
    auth.security_headers(response)
    return response


LOGIN = """<main class="login"><h1>edgesec</h1>
<form method="post" action="/login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>{error}</form>
<p class="hint">Create one on the gateway:
<code>edgesec api token create --scope operator</code></p>
</main>"""

SHELL = """<header><h1>edgesec</h1><nav>
<a href="#devices">Devices</a><a href="#bridges">Bridges</a><a href="#events">Events</a>
<a href="#groups">Groups</a><a href="#onboard">Onboarding</a><a href="#status">Status</a>
<a href="#explain">Explain</a>
</nav><span id="who">{who}</span>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{csrf}">
<button type="submit">Log out</button></form></header>
<main>
<section id="devices"><h2>Devices <small id="count"></small></h2>
<input id="filter" placeholder="filter by MAC, label, IP" aria-label="filter">
<div class="scroll"><table><thead><tr><th>Device</th><th>MAC</th><th>VLAN</th><th>IP</th>
<th>Status</th><th>Allowed</th><th>NAT</th><th>Bridges</th><th>Traffic (1 h)</th>
<th>Last seen</th></tr></thead>
<tbody id="device-rows"></tbody></table></div></section>
<section id="bridges"><h2>Bridges</h2><svg id="graph" viewBox="0 0 600 400"
role="img" aria-label="bridge graph"></svg><ul id="bridge-list"></ul></section>
<section id="groups"><h2>Groups and one-way access</h2>
<ul id="group-list"></ul><form id="member-form">
<label>Group <input name="group" required pattern="[a-z0-9_-]{{1,32}}"></label>
<label>Device (MAC) <input name="mac" required></label>
<button type="submit">Add to group</button></form>
<ul id="access-list"></ul><form id="access-form">
<label>From (MAC) <input name="from" required></label>
<label>To (MAC) <input name="to" required></label>
<label>Service <input name="service" value="any" pattern="any|(tcp|udp)/[0-9]{{1,5}}"></label>
<button type="submit">Allow one way</button></form><p id="group-error" class="error"></p>
</section>
<section id="events"><h2>Live events</h2><ol id="event-list"></ol></section>
<section id="onboard"><h2>Onboarding</h2><form id="ticket-form">
<label>Label <input name="label" required maxlength="64"></label>
<label>VLAN <input name="vlan" type="number" min="0" max="4094" required></label>
<button type="submit">Create ticket</button></form><div id="ticket"></div></section>
<section id="status"><h2>Services</h2><table><tbody id="service-rows"></tbody></table></section>
<section id="explain"><h2>Why is it blocked?</h2><form id="explain-form">
<label>From (MAC) <input name="src" required></label>
<label>To (MAC or IPv4) <input name="dst" required></label>
<button type="submit">Explain</button></form><div id="explanation"></div></section>
</main><script src="/static/app.js"></script>"""


@scope("public")
async def index(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = ctx.sessions.get(request.cookies.get(auth.SESSION_COOKIE, ""))
    if who is None:
        return _page("edgesec — log in", LOGIN.format(error=""))
    meta = f'<meta name="csrf" content="{html.escape(who.csrf)}">' \
           f'<meta name="scope" content="{html.escape(who.scope)}">'
    return _page("edgesec", SHELL.format(who=html.escape(who.describe()),
                                         csrf=html.escape(who.csrf)), meta)


@scope("public")
async def login(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    form = await request.post()
    token = str(form.get("token", ""))
    record = ctx.tokens.verify(token)
    if record is None:
        page = _page("edgesec — log in",
                     LOGIN.format(error='<p class="error">Unknown token.</p>'))
        page.set_status(401)
        return page
    sid, _who = ctx.sessions.open(record.scope, record.id)
    response = web.HTTPSeeOther("/")
    response.set_cookie(auth.SESSION_COOKIE, sid, httponly=True, samesite="Strict",
                        secure=request.secure, max_age=auth.SESSION_LIFETIME_S, path="/")
    raise response


@scope("public")
async def logout(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    sid = request.cookies.get(auth.SESSION_COOKIE, "")
    who = ctx.sessions.get(sid)
    form = await request.post()
    if who is not None and form.get("csrf") == who.csrf:
        ctx.sessions.close(sid)
    response = web.HTTPSeeOther("/")
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    raise response


@scope("public")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound(reason="not found", text=name)
    response = web.Response(body=_asset(name), content_type=STATIC[name])
    auth.security_headers(response)
    return response


@scope("operator")
async def qr(request: web.Request) -> web.Response:
    """An SVG QR code of a WiFi payload (POSTed, so the passphrase is never in a URL)."""
    data = require_str(await _json_body(request), "data")
    if len(data) > 512:
        raise BadRequest("data: at most 512 characters")
    svg = segno.make(data, error="m").svg_inline(scale=5, border=2)
    return web.Response(text=svg, content_type="image/svg+xml")


def install(app: web.Application) -> None:
    """The page, its log-in/out, its static files and the QR helper."""
    app.router.add_routes([web.get("/", index), web.post("/login", login),
                           web.post("/logout", logout), web.get("/static/{name}", static),
                           web.post("/ui/qr", qr)])
